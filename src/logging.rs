//! Log output: text (colour only on a terminal) or JSON lines
//! (`CTSYNC_LOG_FORMAT=json`). In text, every field and message is written
//! with its control characters made visible (`\n`, `\u{1b}`), so a table or
//! column name from the primary can neither forge a log line nor send
//! terminal escape sequences; JSON escapes them by itself.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::IsTerminal;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// `s` with every control character escaped (`\n`, `\t`, `\u{1b}`, …).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Installs the process-wide subscriber writing to stdout.
pub fn init(filter: &str, format: LogFormat) {
    let ansi = std::io::stdout().is_terminal();
    let _ =
        tracing::subscriber::set_global_default(subscriber(filter, format, std::io::stdout, ansi));
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().finish()),
        LogFormat::Text => Box::new(
            builder
                .with_ansi(ansi)
                .fmt_fields(
                    debug_fn(|w: &mut Writer<'_>, field, value| {
                        let text = format!("{value:?}");
                        let text = escape_controls(&text);
                        if field.name() == "message" {
                            write!(w, "{text}")
                        } else {
                            write!(w, "{field}={text}")
                        }
                    })
                    .delimited(" "),
                )
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
    }
}
