//! Tracing set-up shared by the binaries.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Whether `format` (`log.format`: `LOG_FORMAT` or `LAZONA_LOG__FORMAT`) asks for JSON lines.
pub fn is_json(format: &str) -> bool {
    format.trim().eq_ignore_ascii_case("json")
}

/// The subscriber the binaries install, writing to `writer`: one JSON object per line (the
/// event's fields flattened beside `timestamp`, `level`, `target` and `message`, and the
/// current spans) when `format` is `json`, compact text otherwise.
pub fn subscriber<W>(
    format: &str,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if is_json(format) {
        Box::new(builder.json().flatten_event(true).finish())
    } else {
        Box::new(builder.compact().finish())
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `format` is `json` or
/// anything else for compact text, on standard error. Call once, from `main`.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing::subscriber::set_global_default(subscriber(format, filter, std::io::stderr));
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
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let sub = subscriber(format, EnvFilter::new("info"), move || writer.clone());
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
}
