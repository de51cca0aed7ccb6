//! The HTTP toolkit the outbound clients (Koiki, SugarCRM, WordPress) share: the reqwest client
//! they are built on, and the small helpers with which they read answers and quote them in log
//! lines and errors.

use reqwest::Response;
use std::time::Duration;

/// Builds the HTTP client the connector's outbound adapters share: rustls on the `ring`
/// provider, installed as the process default the first time (reqwest's `rustls-no-provider`
/// takes the process default), and a timeout on every request.
///
/// # Errors
/// The [`reqwest::Error`] when the TLS set-up fails.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    // Fails only when a provider is already installed, which is what we want anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("lazona-connector/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The `Retry-After` header, in seconds.
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// The first `max` characters of `text`, with `...` when it was longer.
pub(crate) fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// `host` and `path`, with one slash between them.
pub(crate) fn join(host: &str, path: &str) -> String {
    format!("{}{path}", host.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_texts_and_marks_long_ones() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc...");
        assert_eq!(cut("àèìòù", 2), "àè...");
    }

    #[test]
    fn urls_get_one_slash() {
        assert_eq!(join("https://h/api/", "/v1/x"), "https://h/api/v1/x");
        assert_eq!(join("https://h/api", "/v1/x"), "https://h/api/v1/x");
    }
}
