//! The alerts' outbound webhook ([`SignedWebhook`]): each alert POSTed as JSON to
//! `alerts.webhook_url`, signed as [Standard Webhooks](https://www.standardwebhooks.com/) does, so
//! a receiver can check it came from the connector and drop replays:
//!
//! - `webhook-id`: the message id (the same on a retry of the same message);
//! - `webhook-timestamp`: seconds since the epoch;
//! - `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` with the
//!   secret (a `whsec_` secret is base64 after the prefix; any other is used as its bytes).
//!
//! Without a secret the headers are sent without the signature.

use crate::http::{cut, retry_after};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::error::HookError;
use domain::ports::AlertHook;
use hmac::{Hmac, Mac as _};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::Sha256;

/// The alerts' outbound webhook.
#[derive(Debug, Clone)]
pub struct SignedWebhook {
    client: reqwest::Client,
    url: String,
    key: Option<Vec<u8>>,
}

/// The signing key of a secret: base64 after `whsec_`, the bytes otherwise.
#[must_use]
pub fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `webhook-signature` value of `body` sent as message `id` at `timestamp`.
#[must_use]
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

impl SignedWebhook {
    /// Posts to `url` with `client`, signing with `secret` if given.
    pub fn new(client: reqwest::Client, url: &str, secret: Option<&SecretString>) -> Self {
        SignedWebhook {
            client,
            url: url.to_owned(),
            key: secret.map(|s| signing_key(s.expose_secret())),
        }
    }
}

#[async_trait]
impl AlertHook for SignedWebhook {
    async fn post(&self, id: &str, message: &serde_json::Value) -> Result<(), HookError> {
        let body = serde_json::to_vec(message).map_err(|e| HookError::Rejected {
            reason: e.to_string(),
        })?;
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", sign(key, id, timestamp, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| HookError::Unavailable {
                reason: domain::error::error_chain(&e),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let wait = retry_after(&response);
        let text = response.text().await.unwrap_or_default();
        let reason = format!(
            "{} answered {status}{}: {}",
            self.url,
            wait.map(|w| format!(" (retry after {}s)", w.as_secs()))
                .unwrap_or_default(),
            cut(&text, 200)
        );
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(HookError::Unavailable { reason })
        } else {
            Err(HookError::Rejected { reason })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(signing_key("plain"), b"plain");
    }
}
