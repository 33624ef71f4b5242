//! Named API tokens, each with a role: `read` sees error messages and host
//! names, `operate` may also act. Read from `CTSYNC_API_TOKENS_FILE` (one
//! `<name> <role> <token>` per line) and from `CTSYNC_API_TOKEN`, which is
//! one `operate` token; a token is compared in constant time, never shown.

use std::fmt;

/// What a caller may do and see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Tables, states and error messages.
    Read,
    /// Everything `read` sees, and actions (enable, disable, force, verify).
    Operate,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Operate => "operate",
        }
    }
}

/// The name `CTSYNC_API_TOKEN` (or its file) goes by in the log and the
/// audit trail.
pub const SINGLE_TOKEN_NAME: &str = "CTSYNC_API_TOKEN";

/// The shortest token the token file accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// One token.
#[derive(Clone)]
struct Named {
    name: String,
    role: Role,
    secret: String,
}

/// Every configured token.
#[derive(Clone, Default)]
pub struct Tokens(Vec<Named>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.0
                    .iter()
                    .map(|t| format!("{} ({})", t.name, t.role.as_str())),
            )
            .finish()
    }
}

/// Why the token file cannot be used (never with a token in it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokensError {
    #[error(
        "line {line}: expected `<name> <read|operate> <token>` (three fields separated by spaces)"
    )]
    Shape { line: usize },
    #[error("line {line}: the name {name:?} may hold only letters, digits, `_`, `-` and `.`")]
    Name { line: usize, name: String },
    #[error("line {line}: the role {role:?} of {name} is neither `read` nor `operate`")]
    Role {
        line: usize,
        name: String,
        role: String,
    },
    #[error("line {line}: the name {name} is already used (line {first})")]
    DuplicateName {
        line: usize,
        name: String,
        first: usize,
    },
    #[error(
        "line {line}: the token of {name} is also the token of {other}: give every name its own"
    )]
    DuplicateToken {
        line: usize,
        name: String,
        other: String,
    },
    #[error("line {line}: the token of {name} has {len} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 32`)")]
    Short {
        line: usize,
        name: String,
        len: usize,
    },
}

impl Tokens {
    /// No token at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// `CTSYNC_API_TOKEN`: one `operate` token (an empty one is none).
    pub fn single(secret: Option<String>) -> Self {
        Self(
            secret
                .filter(|s| !s.is_empty())
                .map(|secret| Named {
                    name: SINGLE_TOKEN_NAME.into(),
                    role: Role::Operate,
                    secret,
                })
                .into_iter()
                .collect(),
        )
    }

    /// Reads a token file: one `<name> <role> <token>` per line; blank
    /// lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Self, TokensError> {
        let mut tokens: Vec<(usize, Named)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            let [name, role, secret] = fields[..] else {
                return Err(TokensError::Shape { line });
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(TokensError::Name {
                    line,
                    name: name.into(),
                });
            }
            let role = match role.to_ascii_lowercase().as_str() {
                "read" => Role::Read,
                "operate" => Role::Operate,
                _ => {
                    return Err(TokensError::Role {
                        line,
                        name: name.into(),
                        role: role.into(),
                    })
                }
            };
            let len = secret.chars().count();
            if len < MIN_TOKEN_LEN {
                return Err(TokensError::Short {
                    line,
                    name: name.into(),
                    len,
                });
            }
            let next = Named {
                name: name.into(),
                role,
                secret: secret.into(),
            };
            Self::check_unique(&tokens, line, &next)?;
            tokens.push((line, next));
        }
        Ok(Self(tokens.into_iter().map(|(_, t)| t).collect()))
    }

    fn check_unique(
        earlier: &[(usize, Named)],
        line: usize,
        next: &Named,
    ) -> Result<(), TokensError> {
        for (first, t) in earlier {
            if t.name == next.name {
                return Err(TokensError::DuplicateName {
                    line,
                    name: next.name.clone(),
                    first: *first,
                });
            }
            if t.secret == next.secret {
                return Err(TokensError::DuplicateToken {
                    line,
                    name: next.name.clone(),
                    other: t.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// These tokens and `other`'s; a name both use is refused.
    pub fn with(mut self, other: Tokens) -> Result<Self, String> {
        for t in other.0 {
            if let Some(clash) = self
                .0
                .iter()
                .find(|o| o.name == t.name || o.secret == t.secret)
            {
                return Err(format!(
                    "{} and the token file's {} clash: the token file cannot reuse the name {SINGLE_TOKEN_NAME} or its token",
                    t.name, clash.name
                ));
            }
            self.0.push(t);
        }
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The name and role of `given`, comparing it with every token in time
    /// independent of which one matches, or where it differs.
    pub fn identify(&self, given: &str) -> Option<(&str, Role)> {
        let mut found = None;
        for t in &self.0 {
            if constant_time_eq(given.as_bytes(), t.secret.as_bytes()) && found.is_none() {
                found = Some((t.name.as_str(), t.role));
            }
        }
        found
    }

    /// `name (role)` of each token, for the log at start.
    pub fn names(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|t| format!("{} ({})", t.name, t.role.as_str()))
            .collect()
    }
}

/// Compares in time independent of where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ byte;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef-alice";
    const B: &str = "0123456789abcdef-bob";

    #[test]
    fn a_token_file_names_tokens_and_their_roles() {
        let text = format!("# who\n\nalice operate {A}\n  bob READ {B}  \n");
        let t = Tokens::parse(&text).expect("parse");
        assert_eq!(t.identify(A), Some(("alice", Role::Operate)));
        assert_eq!(t.identify(B), Some(("bob", Role::Read)));
        for bad in ["", "0123456789abcdef", &A[..A.len() - 1], &format!("{A}x")] {
            assert_eq!(t.identify(bad), None, "{bad}");
        }
        assert_eq!(t.names(), ["alice (operate)", "bob (read)"]);
    }

    #[test]
    fn a_bad_token_file_says_which_line_and_never_shows_a_token() {
        let cases = [
            ("alice operate\n".to_string(), "line 1: expected"),
            (format!("alice operate {A} extra\n"), "line 1: expected"),
            (
                format!("al/ice operate {A}\n"),
                "line 1: the name \"al/ice\"",
            ),
            (
                format!("alice admin {A}\n"),
                "line 1: the role \"admin\" of alice",
            ),
            (
                format!("alice read {A}\n# x\nalice operate {B}\n"),
                "line 3: the name alice is already used (line 1)",
            ),
            (
                format!("alice read {A}\nbob operate {A}\n"),
                "line 2: the token of bob is also the token of alice",
            ),
            (
                "carol read short\n".to_string(),
                "line 1: the token of carol has 5 characters",
            ),
        ];
        for (text, want) in cases {
            let e = Tokens::parse(&text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with(want), "{text:?}: {e}");
            assert!(
                !e.contains(A) && !e.contains(B) && !e.contains("short"),
                "{e}"
            );
        }
    }

    #[test]
    fn the_single_token_is_an_operate_token_that_the_file_cannot_reuse() {
        let single = Tokens::single(Some("s3cret".into()));
        assert_eq!(
            single.identify("s3cret"),
            Some((SINGLE_TOKEN_NAME, Role::Operate))
        );
        assert!(Tokens::single(Some(String::new())).is_empty());
        let file = Tokens::parse(&format!("alice read {A}\n")).expect("parse");
        let both = single.clone().with(file).expect("both");
        assert_eq!(both.len(), 2);
        let clash = Tokens::parse(&format!("{SINGLE_TOKEN_NAME} read {A}\n")).expect("parse");
        let e = single.with(clash).err().unwrap_or_default();
        assert!(e.contains("clash") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn tokens_never_show_in_debug() {
        let t = Tokens::parse(&format!("alice read {A}\n")).expect("parse");
        let shown = format!("{t:?}");
        assert!(shown.contains("alice") && !shown.contains(A), "{shown}");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        for bad in [&b"secre"[..], b"secret!", b"", b"Secret"] {
            assert!(!constant_time_eq(bad, b"secret"));
        }
    }
}
