//! Log output: text (colour only on a terminal) or JSON lines
//! (`CTSYNC_LOG_FORMAT=json`). In text, fields follow logfmt (a value with a
//! space, `=` or quote is quoted) and control and bidirectional characters
//! are made visible (`\n`, `\u{1b}`, `\u{202e}`), so a name from the primary
//! can forge neither a line nor a field, nor reorder or colour what is shown.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Characters that reorder how text is shown (bidirectional embeddings,
/// overrides and isolates): a name holding one can make a log line or a
/// table row read as something else.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn push_escaped(out: &mut String, c: char) {
    if is_bidi_control(c) {
        let _ = write!(out, "\\u{{{:x}}}", c as u32);
    } else {
        let _ = write!(out, "{}", c.escape_default());
    }
}

/// `s` with every control character and bidirectional control escaped
/// (`\n`, `\t`, `\u{1b}`, `\u{202e}`, …).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A field's value as logfmt writes it: bare when it has no space, `=`,
/// quote or other whitespace (control characters escaped), else quoted
/// with `\` and `"` escaped, so a value can never end early and forge a
/// field of its own (`table=x error=forged`).
pub fn logfmt_value(s: &str) -> Cow<'_, str> {
    let quote = s.is_empty() || s.chars().any(|c| c == '=' || c == '"' || c.is_whitespace());
    if !quote {
        return escape_controls(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if needs_escape(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// Installs the process-wide subscriber writing to stdout (colour only
/// when stdout is a terminal).
pub fn init(filter: &str, format: LogFormat) {
    let ansi = std::io::stdout().is_terminal();
    let _ =
        tracing::subscriber::set_global_default(subscriber(filter, format, std::io::stdout, ansi));
}

/// The text format's fields: the message with its control characters made
/// visible, every other field `name=value` by logfmt's rules.
struct SafeFields;

impl<'w> FormatFields<'w> for SafeFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = SafeVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct SafeVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl SafeVisitor<'_> {
    fn put(&mut self, field: &Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let sep = if std::mem::take(&mut self.first) {
            ""
        } else {
            " "
        };
        self.result = if field.name() == "message" {
            write!(self.writer, "{sep}{}", escape_controls(text))
        } else {
            write!(self.writer, "{sep}{}={}", field.name(), logfmt_value(text))
        };
    }
}

impl Visit for SafeVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, &format!("{value:?}"));
    }
}

/// A writer that turns the bidirectional controls in JSON lines into
/// `\u202e`-style escapes (they only occur inside JSON strings, where the escape
/// means the same character); serde leaves them raw.
struct BidiEscaping<W>(W);

impl<W: std::io::Write> std::io::Write for BidiEscaping<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Ok(text) = std::str::from_utf8(buf) else {
            return self.0.write(buf);
        };
        if !text.chars().any(is_bidi_control) {
            return self.0.write(buf);
        }
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            if is_bidi_control(c) {
                let _ = write!(out, "\\u{:04x}", c as u32);
            } else {
                out.push(c);
            }
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

struct MakeBidiEscaping<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for MakeBidiEscaping<M> {
    type Writer = BidiEscaping<M::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        BidiEscaping(self.0.make_writer())
    }
}

/// The subscriber `init` installs, writing to `writer` (tests capture it).
pub fn subscriber<W>(
    filter: &str,
    format: LogFormat,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => Box::new(
            builder
                .with_writer(MakeBidiEscaping(writer))
                .json()
                .finish(),
        ),
        LogFormat::Text => Box::new(
            builder
                .with_writer(writer)
                .with_ansi(ansi)
                .fmt_fields(SafeFields)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible() {
        assert_eq!(escape_controls("User"), "User");
        assert_eq!(
            escape_controls("a\nb\u{1b}[31mc\r\t"),
            "a\\nb\\u{1b}[31mc\\r\\t"
        );
        assert_eq!(escape_controls("Zoë 李"), "Zoë 李");
        assert_eq!(
            escape_controls("a\u{202e}b\u{2066}"),
            "a\\u{202e}b\\u{2066}"
        );
    }

    #[test]
    fn logfmt_values_are_quoted_when_they_could_end_early() {
        assert_eq!(logfmt_value("dbo.User"), "dbo.User");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("x error=forged"), "\"x error=forged\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(logfmt_value("a\\b c"), "\"a\\\\b c\"");
        assert_eq!(logfmt_value("a\tb"), "\"a\\tb\"");
        assert_eq!(logfmt_value("C:\\dir"), "C:\\dir");
    }
}
