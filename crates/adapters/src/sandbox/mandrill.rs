//! The fake Mandrill: what Mandrill's relay would report about the sandbox's label mails,
//! posted, signed, to the connector's `/api/mail-events/mandrill` (at the connector's URL,
//! [`super::Sandbox::set_connector_url`]) with [`super::MANDRILL_KEY`].
//!
//! Every label mail the SMTP sink receives (one with `X-MC-Metadata`) is reported `send`
//! (delivered), but the first one to vendor 7, which is reported `hard_bounce`: a newcomer sees
//! the alert arrive, and a resend (`lazona labels resend`) then delivered. A delivery the
//! connector does not take (it is not up yet, 5xx) is posted again on the next round.

use super::{Fakes, MANDRILL_KEY, bump, vendor_email};
use crate::mandrill;
use crate::smtp_sink::{ReceivedMail, SmtpSink};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the fake looks for new mails and posts.
const ROUND: Duration = Duration::from_millis(500);

/// The connector's path for Mandrill's events.
pub(super) const EVENTS_PATH: &str = "/api/mail-events/mandrill";

/// The vendor whose first label mail bounces.
const BOUNCING_VENDOR: i64 = 7;

/// The Mandrill event reporting `mail`, the `index`-th received; `None` for a mail that is not
/// a label mail.
fn event_for(mail: &ReceivedMail, index: usize, bounced: &AtomicBool) -> Option<Value> {
    let metadata: Value = serde_json::from_str(&mail.header("X-MC-Metadata")?).ok()?;
    let email = mail.to.first().cloned().unwrap_or_default();
    let bounce = email == vendor_email(BOUNCING_VENDOR) && !bounced.swap(true, Ordering::SeqCst);
    let ts = chrono::Utc::now().timestamp();
    let id = format!("sandbox{index:08}");
    let mut msg = json!({
        "_id": id,
        "ts": ts,
        "email": email,
        "sender": mail.from,
        "subject": mail.header("Subject").unwrap_or_default(),
        "metadata": metadata,
        "state": if bounce { "bounced" } else { "sent" },
    });
    if bounce {
        msg["bounce_description"] = json!("bad_mailbox");
        msg["diag"] = json!(
            "smtp;550 5.1.1 The email account that you tried to reach does not exist (sandbox)"
        );
    }
    Some(json!({
        "event": if bounce { "hard_bounce" } else { "send" },
        "_id": id,
        "ts": ts,
        "msg": msg,
    }))
}

/// Posts the events of the sandbox's label mails until `stop`.
pub(super) async fn run(fakes: Arc<Fakes>, smtp: Arc<SmtpSink>, stop: CancellationToken) {
    let client = match crate::http::http_client(Duration::from_secs(10)) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the fake Mandrill has no HTTP client");
            return;
        }
    };
    let bounced = AtomicBool::new(false);
    let mut seen = 0;
    let mut pending: Vec<Value> = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(ROUND) => {}
        }
        let messages = smtp.messages();
        for (i, mail) in messages.iter().enumerate().skip(seen) {
            pending.extend(event_for(mail, i + 1, &bounced));
        }
        seen = messages.len();
        if pending.is_empty() {
            continue;
        }
        let url = format!("{}{EVENTS_PATH}", fakes.woo().connector_url());
        let params = vec![(
            mandrill::EVENTS_FIELD.to_owned(),
            Value::Array(pending.clone()).to_string(),
        )];
        let signature = mandrill::signature(MANDRILL_KEY, &url, &params);
        let answer = client
            .post(&url)
            .header("X-Mandrill-Signature", signature)
            .form(&params)
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => {
                for _ in 0..pending.len() {
                    bump(&fakes.calls.mandrill_events);
                }
                pending.clear();
            }
            // Refused for good (a wrong key or URL): dropped, counted.
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(status = %r.status(), %url, "the connector refused the fake Mandrill's events");
                bump(&fakes.calls.mandrill_refused);
                pending.clear();
            }
            Ok(r) => tracing::debug!(status = %r.status(), "mail events not taken yet"),
            Err(e) => tracing::debug!(error = %e, "connector not reachable yet"),
        }
    }
}
