//! A small T-SQL lexer for the session rules: keywords and names, delimited
//! identifiers unescaped, strings and comments skipped, numbers with their
//! value; and dotted names as the rules compare them.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    /// A keyword, a plain identifier, `#temp`, `@var`.
    Word(String),
    /// A delimited identifier (`[…]` or `"…"`), unescaped.
    Ident(String),
    Str,
    Num(u32),
    Sym(char),
}

impl Tok {
    pub(super) fn is(&self, keyword: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
    pub(super) fn name(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Ident(w) => Some(w),
            _ => None,
        }
    }
}

pub(super) fn lex(sql: &str) -> Vec<Tok> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let word_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '#' | '@' | '$');
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && next == Some('-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '\'' || ((c == 'N' || c == 'n') && next == Some('\'')) {
            i += if c == '\'' { 1 } else { 2 };
            while i < chars.len() {
                if chars[i] == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
            out.push(Tok::Str);
        } else if c == '[' || c == '"' {
            let close = if c == '[' { ']' } else { '"' };
            let mut name = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == close {
                    if chars.get(i + 1) == Some(&close) {
                        name.push(close);
                        i += 2;
                        continue;
                    }
                    break;
                }
                name.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Tok::Ident(name));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Tok::Num(text.parse().unwrap_or(u32::MAX)));
        } else if word_char(c) {
            let start = i;
            while i < chars.len() && word_char(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Tok::Sym(c));
            i += 1;
        }
    }
    out
}

/// A dotted name starting at `i` (`[s].[t]`, `#t`, `dbo.t`), lowercased,
/// and the index after it.
pub(super) fn dotted(toks: &[Tok], mut i: usize) -> Option<(String, usize)> {
    let mut parts = vec![toks.get(i)?.name()?.to_lowercase()];
    i += 1;
    while toks.get(i) == Some(&Tok::Sym('.')) {
        parts.push(toks.get(i + 1)?.name()?.to_lowercase());
        i += 2;
    }
    Some((parts.join("."), i))
}

/// Tables are named `[s].[t]` or `t` (= `dbo.t`); temp tables by name.
pub(super) fn object_key(name: &str) -> String {
    if name.starts_with('#') || name.contains('.') {
        name.to_string()
    } else {
        format!("dbo.{name}")
    }
}
