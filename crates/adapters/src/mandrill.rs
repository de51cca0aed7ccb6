//! Mandrill's (Mailchimp Transactional's) message-event webhooks: the signature check and the
//! events read into the domain's [`NewMailEvent`]s. Mandrill's wire format stays here.
//!
//! Mandrill posts a form (`application/x-www-form-urlencoded`) whose `mandrill_events` field is
//! a JSON array of events, and signs it in `X-Mandrill-Signature`: the base64 of the HMAC-SHA1,
//! keyed with the webhook's key, of the webhook's URL exactly as registered followed by each
//! POST field's name and value, the fields sorted by name ([`signature`]).
//!
//! Message events (`send`, `deferral`, `hard_bounce`, `soft_bounce`, `open`, `click`, `spam`,
//! `unsub`, `reject`) carry the mail as `msg`, with the metadata the connector gave it in
//! `X-MC-Metadata` (`shipment_id`, `message_id`). `send` means the recipient's server took the
//! mail (delivered). Sync events (`type` `whitelist` or `blacklist`, no `msg`) and any event this
//! module does not know say nothing about a mail: they are kept and ignored.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::DateTime;
use domain::model::{MailState, NewMailEvent};
use mandrill_hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;

/// The provider's name in the mail events.
pub const PROVIDER: &str = "mandrill";

/// The form field that holds the events.
pub const EVENTS_FIELD: &str = "mandrill_events";

/// The header that holds the signature.
pub const SIGNATURE_HEADER: &str = "x-mandrill-signature";

type HmacSha1 = Hmac<sha1::Sha1>;

fn signed(key: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut mac = HmacSha1::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature Mandrill sends for a POST of `params` to `url` with the webhook key `key`.
#[must_use]
pub fn signature(key: &str, url: &str, params: &[(String, String)]) -> String {
    BASE64.encode(signed(key, url, params).finalize().into_bytes())
}

/// Whether `presented` is the signature of `params` posted to `url` (compared in constant time).
#[must_use]
pub fn verify(key: &str, url: &str, params: &[(String, String)], presented: &str) -> bool {
    let Ok(presented) = BASE64.decode(presented.trim()) else {
        return false;
    };
    signed(key, url, params).verify_slice(&presented).is_ok()
}

/// What a Mandrill event means for its mail; `None` for an event that says nothing about
/// delivery (a click, an unsubscribe, one unknown here).
#[must_use]
pub fn state_of(event: &str) -> Option<MailState> {
    match event {
        "send" => Some(MailState::Delivered),
        "deferral" => Some(MailState::Deferred),
        "hard_bounce" | "soft_bounce" => Some(MailState::Bounced),
        "open" => Some(MailState::Opened),
        "spam" => Some(MailState::Spam),
        "reject" => Some(MailState::Rejected),
        _ => None,
    }
}

/// The events Mandrill reports with the mail as `msg`.
const MESSAGE_EVENTS: [&str; 9] = [
    "send",
    "deferral",
    "hard_bounce",
    "soft_bounce",
    "open",
    "click",
    "spam",
    "unsub",
    "reject",
];

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The mail's `Message-ID` among the headers Mandrill echoes, if it does.
fn header_message_id(msg: &Value) -> Option<String> {
    msg.get("headers")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("message-id"))
        .and_then(|(_, v)| text(Some(v)))
}

/// One event of the array, at `index`.
fn event_of(index: usize, v: &Value) -> Result<NewMailEvent, String> {
    let raw = v.to_string();
    let Some(object) = v.as_object() else {
        return Err(format!("event {index} is not an object"));
    };
    let name = match (text(object.get("event")), text(object.get("type"))) {
        (Some(event), _) => event,
        // A sync event (whitelist or blacklist changes): no mail.
        (None, Some(kind)) => {
            let mut e = NewMailEvent::new(PROVIDER, &format!("sync:{kind}"), raw);
            e.occurred_at = object
                .get("ts")
                .and_then(Value::as_i64)
                .and_then(|ts| DateTime::from_timestamp(ts, 0));
            return Ok(e);
        }
        (None, None) => return Err(format!("event {index} has no \"event\"")),
    };
    let mut e = NewMailEvent::new(PROVIDER, &name, raw);
    e.occurred_at = object
        .get("ts")
        .and_then(Value::as_i64)
        .and_then(|ts| DateTime::from_timestamp(ts, 0));
    if !MESSAGE_EVENTS.contains(&name.as_str()) {
        return Ok(e);
    }
    let Some(msg) = object.get("msg").filter(|m| m.is_object()) else {
        return Err(format!("event {index} ({name}) has no \"msg\" object"));
    };
    e.state = state_of(&name);
    e.email = text(msg.get("email"));
    e.provider_id = text(msg.get("_id")).or_else(|| text(object.get("_id")));
    let metadata = msg.get("metadata");
    e.shipment_id = metadata
        .and_then(|m| text(m.get("shipment_id")))
        .and_then(|s| s.parse().ok());
    e.message_id = metadata
        .and_then(|m| text(m.get("message_id")))
        .or_else(|| header_message_id(msg));
    let reject_reason = msg
        .get("reject")
        .and_then(|r| text(r.get("reason")))
        .or_else(|| text(msg.get("reject_reason")));
    let detail: Vec<String> = [
        text(msg.get("bounce_description")),
        text(msg.get("diag")),
        reject_reason,
    ]
    .into_iter()
    .flatten()
    .collect();
    e.detail = (!detail.is_empty()).then(|| detail.join(": "));
    e.dedupe_key = e.provider_id.as_ref().map(|id| {
        let ts = object.get("ts").map_or_else(String::new, Value::to_string);
        format!("{id}:{name}:{ts}")
    });
    Ok(e)
}

/// Reads the `mandrill_events` field: a JSON array of events.
///
/// # Errors
/// Why it is malformed: not JSON, not an array, or an event that is not an object, names no
/// event, or is a message event without its `msg`.
pub fn events(mandrill_events: &str) -> Result<Vec<NewMailEvent>, String> {
    let value: Value = serde_json::from_str(mandrill_events)
        .map_err(|e| format!("{EVENTS_FIELD} is not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err(format!("{EVENTS_FIELD} is not a JSON array"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| event_of(i, v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://lazona.example/api/mail-events/mandrill";

    fn params(events: &str) -> Vec<(String, String)> {
        vec![
            ("mandrill_events".to_owned(), events.to_owned()),
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ]
    }

    #[test]
    fn the_signature_matches_a_vector_computed_independently() {
        // python3: base64(hmac.new(key, url + "".join(k + v for k, v in sorted(params)),
        // hashlib.sha1).digest())
        let events = r#"[{"event":"send","msg":{"_id":"abc"},"ts":1365109999}]"#;
        let p = params(events);
        assert_eq!(
            signature("sandbox-mandrill-key", URL, &p),
            "V1ula6wrrvs50VX+Yfq4FZqDUtQ="
        );
        assert!(verify(
            "sandbox-mandrill-key",
            URL,
            &p,
            "V1ula6wrrvs50VX+Yfq4FZqDUtQ="
        ));
        // A key longer than SHA-1's block is hashed first, as HMAC says.
        let long = "k".repeat(100);
        let p = vec![("mandrill_events".to_owned(), "[]".to_owned())];
        assert_eq!(signature(&long, URL, &p), "a5y6TIdQLB1spRyC1P9gBWRyqB8=");
    }

    #[test]
    fn another_key_url_field_or_garbage_does_not_verify() {
        let p = params("[]");
        let good = signature("key", URL, &p);
        assert!(verify("key", URL, &p, &good));
        assert!(!verify("other", URL, &p, &good));
        assert!(!verify(
            "key",
            "http://lazona.example/api/mail-events/mandrill",
            &p,
            &good
        ));
        assert!(!verify("key", URL, &params("[ ]"), &good));
        assert!(!verify("key", URL, &p, "not base64!"));
        assert!(!verify("key", URL, &p, ""));
    }

    #[test]
    fn message_events_carry_their_shipment_address_and_why() {
        let raw = r#"[
          {"event":"hard_bounce","_id":"m1","ts":1365109999,
           "msg":{"_id":"m1","email":"v7@example.coop","state":"bounced",
                  "metadata":{"shipment_id":"12","message_id":"<lazona.shipment.12.5@x>"},
                  "bounce_description":"bad_mailbox","diag":"smtp;550 5.1.1 no such user"}},
          {"event":"send","msg":{"_id":"m2","email":"v6@example.coop","metadata":{"shipment_id":11}},"ts":1365110000},
          {"event":"click","msg":{"_id":"m2","email":"v6@example.coop"},"ts":1365110001},
          {"event":"reject","msg":{"_id":"m3","email":"x@example.coop","reject":{"reason":"hard-bounce"},
           "headers":{"Message-Id":"<lazona.shipment.9.1@x>"}},"ts":1},
          {"type":"blacklist","action":"add","reject":{"email":"x@example.coop"}},
          {"event":"inbound","msg":{}}
        ]"#;
        let got = events(raw).expect("read");
        assert_eq!(got.len(), 6);
        let bounce = &got[0];
        assert_eq!(bounce.state, Some(MailState::Bounced));
        assert_eq!(bounce.shipment_id, Some(12));
        assert_eq!(bounce.email.as_deref(), Some("v7@example.coop"));
        assert_eq!(
            bounce.message_id.as_deref(),
            Some("<lazona.shipment.12.5@x>")
        );
        assert_eq!(
            bounce.detail.as_deref(),
            Some("bad_mailbox: smtp;550 5.1.1 no such user")
        );
        assert_eq!(
            bounce.dedupe_key.as_deref(),
            Some("m1:hard_bounce:1365109999")
        );
        assert_eq!(
            bounce.occurred_at.map(|t| t.timestamp()),
            Some(1_365_109_999)
        );
        assert!(bounce.raw.contains("bad_mailbox"));
        assert_eq!(
            (got[1].state, got[1].shipment_id),
            (Some(MailState::Delivered), Some(11))
        );
        assert_eq!(got[2].state, None, "a click says nothing about delivery");
        assert_eq!(got[3].state, Some(MailState::Rejected));
        assert_eq!(
            got[3].message_id.as_deref(),
            Some("<lazona.shipment.9.1@x>")
        );
        assert_eq!(got[3].detail.as_deref(), Some("hard-bounce"));
        assert_eq!(
            (got[4].event.as_str(), got[4].state),
            ("sync:blacklist", None)
        );
        assert_eq!(got[4].dedupe_key, None);
        assert_eq!((got[5].event.as_str(), got[5].state), ("inbound", None));
    }

    #[test]
    fn malformed_deliveries_say_why() {
        for (raw, why) in [
            ("not json", "not JSON"),
            (r#"{"event":"send"}"#, "not a JSON array"),
            ("[1]", "event 0 is not an object"),
            (r#"[{"msg":{}}]"#, "event 0 has no \"event\""),
            (
                r#"[{"event":"send","msg":{}}, {"event":"hard_bounce"}]"#,
                "event 1 (hard_bounce) has no \"msg\"",
            ),
        ] {
            let e = events(raw).expect_err(raw);
            assert!(e.contains(why), "{raw}: {e}");
        }
        assert_eq!(events("[]").expect("empty"), vec![]);
    }
}
