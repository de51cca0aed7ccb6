//! Tracing set-up shared by the binaries.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Whether `format` (`log.format`: `LOG_FORMAT` or `LAZONA_LOG__FORMAT`) asks for JSON lines.
pub fn is_json(format: &str) -> bool {
    format.trim().eq_ignore_ascii_case("json")
}

/// Whether text logs are coloured: only on a terminal, and never when `NO_COLOR` is set to
/// anything but an empty string (<https://no-color.org>).
pub fn colour(terminal: bool, no_color: Option<&OsStr>) -> bool {
    terminal && no_color.is_none_or(OsStr::is_empty)
}

/// The subscriber the binaries install, writing to `writer`: one JSON object per line (the
/// event's fields flattened beside `timestamp`, `level`, `target` and `message`, and the
/// current spans) when `format` is `json`, compact text otherwise, with ANSI colours only when
/// `ansi`.
pub fn subscriber<W>(
    format: &str,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    if is_json(format) {
        Box::new(builder.json().flatten_event(true).finish())
    } else {
        Box::new(builder.compact().finish())
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `format` is `json` or
/// anything else for compact text, on standard error, coloured only when standard error is a
/// terminal and `NO_COLOR` is not set. Call once, from `main`.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let _ =
        tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr, ansi));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(format: &str) -> String {
        logged_with(format, false)
    }

    fn logged_with(format: &str, ansi: bool) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let sub = subscriber(format, EnvFilter::new("info"), move || writer.clone(), ansi);
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("job", job_id = 7);
            let _entered = span.enter();
            tracing::info!(webhook_id = 42, "webhook stored");
        });
        let bytes = buffer.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn json_format_writes_one_json_object_per_line_with_the_fields() {
        for format in ["json", "JSON", " json "] {
            let out = logged(format);
            let lines: Vec<&str> = out.lines().collect();
            assert_eq!(lines.len(), 1, "{out}");
            let line: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
            assert_eq!(line["message"], "webhook stored");
            assert_eq!(line["webhook_id"], 42);
            assert_eq!(line["level"], "INFO");
            assert_eq!(line["span"]["job_id"], 7, "{line}");
        }
    }

    #[test]
    fn other_formats_write_text() {
        let out = logged("text");
        assert!(out.contains("webhook stored"), "{out}");
        assert!(serde_json::from_str::<serde_json::Value>(out.trim()).is_err());
    }

    #[test]
    fn text_is_coloured_only_when_asked() {
        assert!(!logged_with("text", false).contains('\x1b'));
        assert!(logged_with("text", true).contains('\x1b'));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = OsStr::new("1");
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is not set"
        );
        assert!(!colour(true, Some(set)));
        assert!(!colour(false, None));
        assert!(!colour(false, Some(set)));
    }
}
