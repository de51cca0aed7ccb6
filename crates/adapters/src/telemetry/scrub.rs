//! What never leaves for Sentry: the `before_send` and `before_breadcrumb` filters of the
//! client [`super::init`] builds.
//!
//! - An event's request and user are dropped, and so is any context but the tracing layer's
//!   generic ones (`Rust Tracing Fields`, `Rust Tracing Location`) and the trace ids.
//! - A field (an extra, a tag, a context's or a breadcrumb's key) whose name looks like a body,
//!   payload, secret, password, token, authorization, signature, email, address, phone, cookie,
//!   credential or DSN ([`is_sensitive`]) keeps its name; its value becomes [`FILTERED`].
//! - Every text left (the message, exception values, string values, breadcrumbs' messages):
//!   whatever follows `body=`, `args=`, `params=` or `payload=` is replaced by [`FILTERED`] (the
//!   Koiki, SugarCRM and shop clients log third parties' bodies so), and a URL's password is
//!   masked ([`crate::redact::redact`]).

use crate::redact::redact;
use sentry::protocol::{Breadcrumb, Context, Event, Map, Value};

/// What a filtered value is replaced by.
pub const FILTERED: &str = "[Filtered]";

/// The words that make a field's name sensitive, wherever they stand in it (`webhook_secret`,
/// `billing.address_1`, `X-WC-Webhook-Signature`).
const SENSITIVE: &[&str] = &[
    "body",
    "payload",
    "secret",
    "password",
    "passwd",
    "token",
    "authorization",
    "signature",
    "email",
    "address",
    "phone",
    "cookie",
    "credential",
    "dsn",
];

/// The markers in a text after which everything is dropped: the clients log bodies as
/// `body={...}` and arguments as `args={...}`.
const CUT_AFTER: &[&str] = &["body=", "args=", "params=", "payload="];

/// The contexts the tracing layer fills (the event's fields, where it was logged).
const KEPT_CONTEXTS: &[&str] = &["Rust Tracing Fields", "Rust Tracing Location"];

/// Whether a field called `name` may hold a body, a secret or personal data.
pub fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE.iter().any(|word| name.contains(word))
}

/// `text` with whatever follows a body marker dropped and URL passwords masked.
pub fn scrub_text(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let cut = CUT_AFTER
        .iter()
        .filter_map(|marker| lower.find(marker).map(|at| at + marker.len()))
        .min();
    match cut {
        Some(at) => format!("{}{FILTERED}", redact(&text[..at])),
        None => redact(text),
    }
}

/// The event as it may be sent (see the module doc); never `None`.
pub fn event(mut event: Event<'static>) -> Option<Event<'static>> {
    event.request = None;
    event.user = None;
    event.server_name = None;
    event.message = event.message.as_deref().map(scrub_text);
    if let Some(entry) = event.logentry.as_mut() {
        entry.message = scrub_text(&entry.message);
        entry.params.iter_mut().for_each(value);
    }
    for exception in &mut event.exception.values {
        exception.value = exception.value.as_deref().map(scrub_text);
    }
    fields(&mut event.extra);
    for (name, tag) in &mut event.tags {
        *tag = if is_sensitive(name) {
            FILTERED.to_owned()
        } else {
            scrub_text(tag)
        };
    }
    event.contexts.retain(|name, context| match context {
        Context::Other(map) if KEPT_CONTEXTS.contains(&name.as_str()) => {
            fields(map);
            true
        }
        Context::Trace(trace) => {
            trace.data.clear();
            trace.description = None;
            true
        }
        _ => false,
    });
    for crumb in &mut event.breadcrumbs.values {
        scrub_breadcrumb(crumb);
    }
    Some(event)
}

/// The breadcrumb as it may be sent; never `None`.
pub fn breadcrumb(mut crumb: Breadcrumb) -> Option<Breadcrumb> {
    scrub_breadcrumb(&mut crumb);
    Some(crumb)
}

fn scrub_breadcrumb(crumb: &mut Breadcrumb) {
    crumb.message = crumb.message.as_deref().map(scrub_text);
    fields(&mut crumb.data);
}

/// Sensitive names' values filtered, the other values scrubbed.
fn fields(map: &mut Map<String, Value>) {
    for (name, v) in map.iter_mut() {
        field(name, v);
    }
}

fn field(name: &str, v: &mut Value) {
    if is_sensitive(name) {
        *v = Value::String(FILTERED.to_owned());
    } else {
        value(v);
    }
}

fn value(v: &mut Value) {
    match v {
        Value::String(s) => *s = scrub_text(s),
        Value::Array(items) => items.iter_mut().for_each(value),
        Value::Object(map) => map.iter_mut().for_each(|(name, v)| field(name, v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentry::protocol::{Exception, Request, User};

    #[test]
    fn sensitive_names_are_recognised_wherever_the_word_stands() {
        for name in [
            "body",
            "secret",
            "webhook_secret",
            "X-WC-Webhook-Signature",
            "Authorization",
            "billing.address_1",
            "customer_email",
            "phone",
            "auth_token",
            "tags.password",
        ] {
            assert!(is_sensitive(name), "{name}");
        }
        for name in [
            "job_id",
            "kind",
            "reason",
            "webhook_id",
            "resource",
            "status",
        ] {
            assert!(!is_sensitive(name), "{name}");
        }
    }

    #[test]
    fn a_text_loses_what_follows_a_body_and_its_url_passwords() {
        assert_eq!(
            scrub_text("Koiki response. status=400, body={\"envios\": [\"Carrer 1\"]}"),
            "Koiki response. status=400, body=[Filtered]"
        );
        assert_eq!(
            scrub_text("SugarCRM request to https://crm/x, method=get, args={\"a@b.coop\"}"),
            "SugarCRM request to https://crm/x, method=get, args=[Filtered]"
        );
        assert_eq!(
            scrub_text("cannot reach postgres://u:hunter2@db/lazona"),
            "cannot reach postgres://u:***@db/lazona"
        );
        assert_eq!(scrub_text("job dead-lettered"), "job dead-lettered");
    }

    #[test]
    fn an_event_keeps_its_message_and_ids_and_loses_bodies_secrets_and_people() {
        let mut extra = Map::new();
        extra.insert("secret".into(), "s3cr3t".into());
        extra.insert("job_id".into(), 7.into());
        let mut fields_ctx = Map::new();
        fields_ctx.insert("body".into(), "{\"billing\": {}}".into());
        fields_ctx.insert("reason".into(), "status 400, body={\"x\": 1}".into());
        let mut contexts = Map::new();
        contexts.insert("Rust Tracing Fields".into(), Context::Other(fields_ctx));
        contexts.insert("custom".into(), Context::Other(Map::new()));
        let mut tags = Map::new();
        tags.insert("email".into(), "a@b.coop".into());
        tags.insert("kind".into(), "process_webhook".into());
        let crumb = Breadcrumb {
            message: Some("Koiki request to https://k. body={\"dni\": 1}".into()),
            ..Default::default()
        };
        let event = event(Event {
            message: Some("booking refused for order 7".into()),
            request: Some(Request {
                data: Some("{\"billing\": {}}".into()),
                ..Default::default()
            }),
            user: Some(User {
                email: Some("a@b.coop".into()),
                ..Default::default()
            }),
            exception: vec![Exception {
                value: Some("answer: body={\"x\": 1}".into()),
                ..Default::default()
            }]
            .into(),
            breadcrumbs: vec![crumb].into(),
            extra,
            tags,
            contexts,
            ..Default::default()
        })
        .expect("kept");
        let sent = serde_json::to_string(&event).expect("json");
        for gone in ["s3cr3t", "billing", "a@b.coop", "dni", "\"x\"", "custom"] {
            assert!(!sent.contains(gone), "{gone} in {sent}");
        }
        assert_eq!(
            event.message.as_deref(),
            Some("booking refused for order 7")
        );
        assert_eq!(event.extra["job_id"], 7);
        assert_eq!(event.extra["secret"], FILTERED);
        assert_eq!(event.tags["kind"], "process_webhook");
        assert!(sent.contains("status 400, body=[Filtered]"), "{sent}");
    }
}
