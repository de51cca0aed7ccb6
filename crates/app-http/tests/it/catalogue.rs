//! The bad-input catalogue: what a hostile or broken client can send to the webhook endpoints
//! (and a few to the operations API), each through the real server, with the answer it must get.
//! For every case: the status; the JSON error shape with its code where the application answers
//! (the HTTP layer's own refusals of malformed framing carry no body); that a signed but invalid
//! body is kept as `rejected` (and anything else refused is not stored); and that the server
//! still answers afterwards.

use crate::helpers::{TestApp, TestDb, settings, sign};
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ORDERS: &str = "/api/deliveries/";
const CUSTOMERS: &str = "/api/customers/";
const ORDER: &str = r#"{"id":700,"status":"processing","line_items":[]}"#;

/// How a case's request is signed.
#[derive(Clone, Copy)]
enum Sig {
    /// With the test secret, over the body.
    Good,
    /// No signature header.
    Missing,
    /// This header value.
    Header(&'static str),
}

/// What a case sends.
enum Send {
    /// An HTTP request through a client.
    Http {
        method: &'static str,
        path: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        sig: Sig,
    },
    /// Bytes written as they are on a new connection (framing the client library would not
    /// send).
    Raw(Vec<u8>),
}

/// What must become of it in the inbox.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kept {
    /// Nothing stored.
    Nothing,
    /// Stored with this status (the answer names its `webhook_id`).
    As(&'static str),
}

struct Case {
    name: &'static str,
    send: Send,
    status: u16,
    /// The JSON error code, when the answer is an application error.
    code: Option<&'static str>,
    /// The `status` of a 2xx answer (`queued`, `duplicate`, `ignored`).
    answer: Option<&'static str>,
    kept: Kept,
}

fn post(path: &'static str, topic: &str, body: impl Into<Vec<u8>>, sig: Sig) -> Send {
    Send::Http {
        method: "POST",
        path,
        headers: vec![("x-wc-webhook-topic", topic.to_owned())],
        body: body.into(),
        sig,
    }
}

fn order(body: impl Into<Vec<u8>>) -> Send {
    post(ORDERS, "order.created", body, Sig::Good)
}

fn customer(body: impl Into<Vec<u8>>) -> Send {
    post(CUSTOMERS, "customer.created", body, Sig::Good)
}

fn refused(name: &'static str, send: Send, status: u16, code: &'static str) -> Case {
    Case {
        name,
        send,
        status,
        code: Some(code),
        answer: None,
        kept: Kept::Nothing,
    }
}

fn rejected(name: &'static str, send: Send) -> Case {
    Case {
        name,
        send,
        status: 400,
        code: Some("invalid_payload"),
        answer: None,
        kept: Kept::As("rejected"),
    }
}

fn accepted(name: &'static str, send: Send, status: u16, answer: &'static str) -> Case {
    Case {
        name,
        send,
        status,
        code: None,
        answer: Some(answer),
        kept: Kept::As(match answer {
            "ignored" => "ignored",
            _ => "queued",
        }),
    }
}

/// Refused by the HTTP layer before the application sees it: a status, no JSON required.
fn framing(name: &'static str, raw: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        name,
        send: Send::Raw(raw.into()),
        status,
        code: None,
        answer: None,
        kept: Kept::Nothing,
    }
}

fn raw_post(extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /api/deliveries/ HTTP/1.1\r\nhost: x\r\nx-wc-webhook-signature: {}\r\n\
         x-wc-webhook-topic: order.created\r\n{extra_headers}connection: close\r\n\r\n{body}",
        sign(body.as_bytes())
    )
    .into_bytes()
}

fn nested(depth: usize) -> String {
    format!(
        r#"{{"id":701,"meta":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn cases(max_body: usize) -> Vec<Case> {
    let mut invalid_utf8 = br#"{"id":702,"billing":{"email":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let mut in_ignored_field = br#"{"id":703,"line_items":[{""#.to_vec();
    in_ignored_field.push(0xff);
    in_ignored_field.extend_from_slice(br#"":1}]}"#);
    let padding = max_body - ORDER.len();
    let at_limit = format!(
        r#"{{"id":704,"customer_note":"{}","line_items":[]}}"#,
        "x".repeat(padding - 24)
    );
    let over_limit = format!(r#"{{"id":705,"customer_note":"{}"}}"#, "x".repeat(max_body));
    let many_headers: String = (0..200).map(|i| format!("x-h{i}: {i}\r\n")).collect();
    vec![
        // Framing and methods.
        refused(
            "GET on the order endpoint",
            Send::Http {
                method: "GET",
                path: ORDERS,
                headers: vec![],
                body: vec![],
                sig: Sig::Missing,
            },
            405,
            "method_not_allowed",
        ),
        refused(
            "PUT on the customer endpoint",
            Send::Http {
                method: "PUT",
                path: CUSTOMERS,
                headers: vec![],
                body: ORDER.into(),
                sig: Sig::Good,
            },
            405,
            "method_not_allowed",
        ),
        refused(
            "an unknown path",
            post("/api/orders/", "order.created", ORDER, Sig::Good),
            404,
            "not_found",
        ),
        refused(
            "a body over the limit",
            order(over_limit),
            413,
            "body_too_large",
        ),
        accepted(
            "a body exactly at the limit",
            order(at_limit),
            201,
            "queued",
        ),
        framing("a request line that is not HTTP", "HELLO\r\n\r\n", 400),
        framing(
            "a non-numeric Content-Length",
            raw_post("content-length: abc\r\n", ""),
            400,
        ),
        // Read as chunked, as RFC 9112 says (hyper drops the Content-Length): what was signed
        // is not what was read, so it is refused and nothing is stored.
        framing(
            "Content-Length and chunked together",
            raw_post(
                "content-length: 3\r\ntransfer-encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            401,
        ),
        framing(
            "a chunk size that is not hexadecimal",
            raw_post("transfer-encoding: chunked\r\n", "zz\r\n{}\r\n0\r\n\r\n"),
            400,
        ),
        framing("two hundred headers", raw_post(&many_headers, ""), 431),
        // Signatures.
        refused(
            "no signature",
            post(ORDERS, "order.created", ORDER, Sig::Missing),
            401,
            "missing_signature",
        ),
        refused(
            "an empty signature",
            post(ORDERS, "order.created", ORDER, Sig::Header("")),
            401,
            "missing_signature",
        ),
        refused(
            "a signature that is not base64",
            post(ORDERS, "order.created", ORDER, Sig::Header("not base64!")),
            401,
            "invalid_signature",
        ),
        refused(
            "another body's signature",
            post(
                ORDERS,
                "order.created",
                ORDER,
                Sig::Header("UyKdg7msIA67rxmmf7JcLMUkzMKGLvfptk2NaSuyRQM="),
            ),
            401,
            "invalid_signature",
        ),
        refused(
            "a truncated signature",
            post(ORDERS, "order.created", ORDER, Sig::Header("UyKdg7ms")),
            401,
            "invalid_signature",
        ),
        refused(
            "a ping with a topic but no signature",
            post(ORDERS, "order.created", "webhook_id=3", Sig::Missing),
            401,
            "missing_signature",
        ),
        Case {
            name: "WooCommerce's unsigned creation ping",
            send: Send::Http {
                method: "POST",
                path: ORDERS,
                headers: vec![],
                body: b"webhook_id=3".to_vec(),
                sig: Sig::Missing,
            },
            status: 200,
            code: None,
            answer: Some("pong"),
            kept: Kept::Nothing,
        },
        // Body shapes, signed: kept as rejected.
        rejected("an empty body", order("")),
        rejected("only whitespace", order("  \n ")),
        rejected("not JSON", order("id=5&x=1")),
        rejected("a JSON array", order("[1,2]")),
        rejected("a JSON string", order(r#""order""#)),
        rejected("a JSON number", order("42")),
        rejected("truncated JSON", order(r#"{"id": 7"#)),
        rejected("trailing bytes after the object", order(r#"{"id":706} {}"#)),
        rejected("a byte-order mark", order("\u{feff}{\"id\":707}")),
        rejected(
            "invalid UTF-8 in a field processing reads",
            order(invalid_utf8),
        ),
        rejected(
            "invalid UTF-8 in a field nobody reads",
            order(in_ignored_field),
        ),
        // Skipped without recursion by intake and processing alike: no stack to overflow.
        accepted(
            "JSON nested 10,000 deep in a field nobody reads",
            order(nested(10_000)),
            201,
            "queued",
        ),
        rejected(
            "a meta value nested past the parser's depth limit",
            order(format!(
                r#"{{"id":726,"line_items":[{{"meta_data":[{{"value":{}{}}}]}}]}}"#,
                "[".repeat(200),
                "]".repeat(200)
            )),
        ),
        rejected("the id twice", order(r#"{"id":708,"id":709}"#)),
        rejected("no id", order(r#"{"order_key":"wc_order_1"}"#)),
        rejected("a null id", order(r#"{"id":null}"#)),
        rejected("a word for an id", order(r#"{"id":"abc"}"#)),
        rejected("a fractional id", order(r#"{"id":1.5}"#)),
        rejected(
            "an id past 64 bits",
            order(r#"{"id":100000000000000000000}"#),
        ),
        rejected("an id as an object", order(r#"{"id":{"n":1}}"#)),
        rejected(
            "line items that are not a list",
            order(r#"{"id":710,"line_items":"x"}"#),
        ),
        rejected(
            "a quantity that is a word",
            order(r#"{"id":711,"line_items":[{"quantity":"two"}]}"#),
        ),
        rejected(
            "a shipping address that is a word",
            order(r#"{"id":712,"shipping":"x"}"#),
        ),
        // PHP encodes an empty associative array as `[]`.
        accepted(
            "an empty address as PHP sends it",
            order(r#"{"id":725,"shipping":[],"billing":[]}"#),
            201,
            "queued",
        ),
        rejected(
            "a city that is a list",
            order(r#"{"id":713,"shipping":{"city":["B"]}}"#),
        ),
        rejected("a customer without e-mail", customer(r#"{"id":714}"#)),
        rejected(
            "a customer with an empty e-mail",
            customer(r#"{"id":715,"email":"  "}"#),
        ),
        rejected(
            "a customer e-mail that is a list",
            customer(r#"{"id":716,"email":["a@b.c"]}"#),
        ),
        // Accepted as they are meant.
        accepted(
            "a numeric string id",
            order(r#"{"id":"717","line_items":[]}"#),
            201,
            "queued",
        ),
        accepted(
            "nulls where the shop sends them",
            order(r#"{"id":718,"shipping":null,"line_items":null,"customer_note":null}"#),
            201,
            "queued",
        ),
        accepted(
            "a long note and odd postcode",
            order(format!(
                r#"{{"id":719,"customer_note":"{}","shipping":{{"postcode":"SW1A 1AA"}}}}"#,
                "n".repeat(5000)
            )),
            201,
            "queued",
        ),
        accepted(
            "a customer",
            customer(r#"{"id":720,"email":"a@b.c"}"#),
            200,
            "queued",
        ),
        accepted(
            "another resource's topic",
            post(ORDERS, "product.updated", r#"{"id":721}"#, Sig::Good),
            201,
            "ignored",
        ),
        accepted(
            "a deletion",
            post(ORDERS, "order.deleted", r#"{"id":722}"#, Sig::Good),
            201,
            "ignored",
        ),
        accepted(
            "a customer topic at the order endpoint",
            post(
                ORDERS,
                "customer.created",
                r#"{"id":723,"email":"a@b.c"}"#,
                Sig::Good,
            ),
            201,
            "ignored",
        ),
        // The operations API, beside the webhooks.
        refused(
            "the API without a token",
            Send::Http {
                method: "GET",
                path: "/api/v1/webhooks",
                headers: vec![],
                body: vec![],
                sig: Sig::Missing,
            },
            401,
            "unauthorized",
        ),
    ]
}

/// Sends one case; the status, the headers' content type and the body.
async fn send(app: &TestApp, case: &Case, n: usize) -> (u16, Option<String>, Vec<u8>) {
    match &case.send {
        Send::Http {
            method,
            path,
            headers,
            body,
            sig,
        } => {
            let mut req = app
                .client
                .request(method.parse().expect("method"), app.url(path))
                .header("x-wc-webhook-delivery-id", format!("catalogue-{n}"))
                .body(body.clone());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            match sig {
                Sig::Good => req = req.header("x-wc-webhook-signature", sign(body)),
                Sig::Missing => {}
                Sig::Header(h) => req = req.header("x-wc-webhook-signature", *h),
            }
            let resp = req.send().await.expect("sent");
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            (
                status,
                content_type,
                resp.bytes().await.expect("body").to_vec(),
            )
        }
        Send::Raw(bytes) => {
            let mut conn = tokio::net::TcpStream::connect(app.addr)
                .await
                .expect("connect");
            conn.write_all(bytes).await.expect("write");
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
                .await
                .unwrap_or_else(|_| panic!("{}: no answer", case.name))
                .expect("read");
            let text = String::from_utf8_lossy(&answer);
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{}: not an HTTP answer: {text:?}", case.name));
            (status, None, Vec::new())
        }
    }
}

/// Sends a case and checks its answer and what was stored.
async fn check(app: &TestApp, case: &Case, n: usize) -> Result<(), String> {
    let before = app.count("SELECT COUNT(*) FROM webhooks").await;
    let (status, content_type, body) = send(app, case, n).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    if status != case.status {
        return Err(format!("status {status}, expected {}: {text}", case.status));
    }
    if let Some(code) = case.code {
        if content_type.as_deref() != Some("application/json") {
            return Err(format!("content type {content_type:?}: {text}"));
        }
        let error = json.as_ref().map(|j| &j["error"]);
        if error.is_none_or(|e| e["code"] != code || !e["message"].is_string()) {
            return Err(format!("error code {code} expected: {text}"));
        }
    }
    if let Some(answer) = case.answer
        && json.as_ref().is_none_or(|j| j["status"] != answer)
    {
        return Err(format!("answer {answer} expected: {text}"));
    }
    let after = app.count("SELECT COUNT(*) FROM webhooks").await;
    match case.kept {
        Kept::Nothing if after != before => Err("something was stored".into()),
        Kept::Nothing => Ok(()),
        Kept::As(kept) => {
            let id = json
                .as_ref()
                .and_then(|j| {
                    j["webhook_id"]
                        .as_i64()
                        .or(j["error"]["webhook_id"].as_i64())
                })
                .ok_or_else(|| format!("no webhook id in {text}"))?;
            let sql =
                format!("SELECT COUNT(*) FROM webhooks WHERE id = {id} AND status = '{kept}'");
            if app.count(&sql).await == 1 {
                Ok(())
            } else {
                Err(format!("webhook {id} not kept as {kept}"))
            }
        }
    }
}

#[tokio::test]
async fn every_kind_of_bad_input_gets_its_answer_and_the_server_goes_on() {
    for (backend, db) in TestDb::all().await {
        let s = settings(&db.url, &[("worker.embedded", "false")]);
        let cases = cases(s.webhook.max_body_bytes);
        assert!(cases.len() >= 40, "{} cases", cases.len());
        let app = TestApp::spawn(&s).await;
        let mut failures = Vec::new();
        for (n, case) in cases.iter().enumerate() {
            let name = format!("{backend}: {}", case.name);
            if let Err(why) = check(&app, case, n).await {
                failures.push(format!("{name}: {why}"));
            }
            let health = app
                .client
                .get(app.url("/healthz"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{name}: the server stopped answering: {e}"));
            assert_eq!(health.status(), 200, "{name}");
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // The same delivery again, byte for byte, is a duplicate; with another body it is not.
        let again = app
            .post_signed(
                ORDERS,
                r#"{"id":"717","line_items":[]}"#,
                Some("catalogue-repeat"),
            )
            .await;
        assert_eq!(again.status(), 201, "{backend}");
        let repeat = app
            .post_signed(
                ORDERS,
                r#"{"id":"717","line_items":[]}"#,
                Some("catalogue-repeat"),
            )
            .await;
        let repeat: Value = repeat.json().await.expect("json");
        assert_eq!(repeat["status"], "duplicate", "{backend}");
        let other = app
            .post_signed(
                ORDERS,
                r#"{"id":"724","line_items":[]}"#,
                Some("catalogue-repeat"),
            )
            .await;
        let other: Value = other.json().await.expect("json");
        assert_eq!(other["status"], "queued", "{backend}");
        app.stop().await;
    }
}
