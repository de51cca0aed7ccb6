//! The SMTP mailer against the in-process SMTP sink.

use std::time::{Duration, Instant};

use adapters::{
    config::MailConfig,
    mail::SmtpMailer,
    smtp_sink::{ReceivedMail, SmtpSink},
};
use base64::Engine as _;
use domain::{
    error::MailError,
    ports::{Email, Mailer},
    service::mails::{label_mail, tracking_changed_mail},
};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n\x00\xff\x10";

fn config(port: u16) -> MailConfig {
    MailConfig {
        host: "127.0.0.1".into(),
        port,
        user: String::new(),
        password: None,
        use_tls: false,
        use_ssl: false,
        from: "La Zona <noreply@lazona.coop>".into(),
        admin_recipients: vec!["admin@lazona.coop".into()],
        max_connections: 4,
        events_key: None,
        events_url: String::new(),
    }
}

/// A label mail to one vendor, for the tests that count or time sends.
fn small_label() -> Email {
    label_mail(
        "https://lazona.coop",
        42,
        "v@example.com",
        PDF.to_vec(),
        "l.pdf",
        1,
        "<lazona.shipment.1.1@lazona.coop>",
    )
}

fn mailer(port: u16) -> SmtpMailer {
    SmtpMailer::new(&config(port), Duration::from_secs(5)).expect("mailer")
}

/// A MIME part: its headers (name lower-cased, unfolded) and its decoded body.
struct Part {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Part {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_part(raw: &str) -> Part {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let encoding = headers
        .iter()
        .find(|(n, _)| n == "content-transfer-encoding")
        .map(|(_, v)| v.to_ascii_lowercase());
    let body = match encoding.as_deref() {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(body.replace("\r\n", "").trim())
            .expect("base64 body"),
        Some("quoted-printable") => decode_qp(body),
        _ => body.as_bytes().to_vec(),
    };
    Part { headers, body }
}

fn decode_qp(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "");
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The top-level part's sub-parts (for `multipart/*`) or the message itself.
fn parts(mail: &ReceivedMail) -> Vec<Part> {
    let text = mail.text();
    let top = parse_part(&text);
    let content_type = top.header("content-type").unwrap_or_default().to_owned();
    let Some(boundary) = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
    else {
        // lettre ends a part's body with a CRLF, then sends its own CRLF before the dot.
        let text = text.strip_suffix("\r\n").unwrap_or(&text);
        return vec![parse_part(text.strip_suffix("\r\n").unwrap_or(text))];
    };
    let delimiter = format!("--{boundary}");
    text.split(&delimiter)
        .skip(1)
        .filter(|p| !p.starts_with("--"))
        .map(|p| {
            // The CRLF before each delimiter belongs to the delimiter.
            let p = p.strip_prefix("\r\n").unwrap_or(p);
            parse_part(p.strip_suffix("\r\n").unwrap_or(p))
        })
        .collect()
}

/// Decodes RFC 2047 `=?utf-8?b?...?=` words (what lettre uses for non-ASCII headers).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    for word in value.split_whitespace() {
        let lower = word.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("=?utf-8?b?")
            && rest.ends_with("?=")
        {
            let encoded = &word[10..word.len() - 2];
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("encoded word");
            out.push_str(&String::from_utf8(bytes).expect("utf-8"));
        } else {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

#[tokio::test]
async fn label_mail_reaches_the_server_with_its_attachment() {
    let dir = std::env::temp_dir().join(format!(
        "smtp-sink-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    let sink = SmtpSink::start(Some(dir.clone())).await;
    let email = label_mail(
        "https://lazona.coop",
        42,
        "vendor@example.com",
        PDF.to_vec(),
        "label-42.pdf",
        12,
        "<lazona.shipment.12.1700000000123@lazona.coop>",
    );
    mailer(sink.port()).send(&email).await.expect("sent");

    let mails = sink.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.from, "noreply@lazona.coop");
    assert_eq!(mail.to, vec!["vendor@example.com".to_owned()]);
    assert_eq!(
        decode_words(&mail.header("Subject").expect("subject")),
        "Enviament Koiki per a la comanda: 42"
    );
    assert_eq!(mail.header("To").as_deref(), Some("vendor@example.com"));
    assert!(
        mail.header("From")
            .expect("from")
            .contains("noreply@lazona.coop")
    );
    // The shipment for Mandrill's relay, and the connector's own Message-ID.
    assert_eq!(
        mail.header("Message-ID").as_deref(),
        Some("<lazona.shipment.12.1700000000123@lazona.coop>")
    );
    let metadata: serde_json::Value =
        serde_json::from_str(&mail.header("X-MC-Metadata").expect("metadata")).expect("JSON");
    assert_eq!(metadata["shipment_id"], 12);
    assert_eq!(
        metadata["message_id"],
        "<lazona.shipment.12.1700000000123@lazona.coop>"
    );

    let parts = parts(mail);
    assert_eq!(parts.len(), 2, "{}", mail.text());
    let text = &parts[0];
    assert!(
        text.header("content-type")
            .expect("type")
            .starts_with("text/plain")
    );
    assert_eq!(
        String::from_utf8(text.body.clone()).expect("utf-8"),
        "\r\nHola, la teva tenda ha rebut la comanda: \
         https://lazona.coop/area-privada/orders-details/42\r\n\r\nAdjuntem el PDF per a \
         imprimir i pegar al paquet a enviar.\r\n\r\n"
    );
    let pdf = &parts[1];
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    assert!(
        pdf.header("content-disposition")
            .expect("disposition")
            .contains("label-42.pdf")
    );
    assert_eq!(pdf.header("content-transfer-encoding"), Some("base64"));
    assert_eq!(pdf.body, PDF);
    let raw = mail.text().replace("\r\n", "");
    assert!(raw.contains(&base64::engine::general_purpose::STANDARD.encode(PDF)));

    // The sink keeps a copy on disk.
    let eml = std::fs::read(dir.join("000001.eml")).expect("eml");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(eml, mail.data);
}

#[tokio::test]
async fn utf8_subject_and_body_survive_the_trip() {
    let sink = SmtpSink::start(None).await;
    let admins = vec!["a@lazona.coop".to_owned(), "b@lazona.coop".to_owned()];
    let email = tracking_changed_mail(&admins, "K1", "DELIVERED", None, "Entregat", "");
    let m = mailer(sink.port());
    m.send(&email).await.expect("sent");
    let mail = sink.wait_for(1, Duration::from_secs(5)).await.remove(0);
    assert_eq!(mail.to, admins);
    assert_eq!(
        decode_words(&mail.header("Subject").expect("subject")),
        "Actualització estat Koiki per l'enviament: K1"
    );
    let parts = parts(&mail);
    assert_eq!(parts.len(), 1);
    let body = String::from_utf8(parts[0].body.clone()).expect("utf-8");
    assert_eq!(body.replace("\r\n", "\n"), email.body);
}

#[tokio::test]
async fn credentials_are_sent_when_a_user_is_configured() {
    let sink = SmtpSink::start(None).await;
    let mut config = config(sink.port());
    config.user = "mailer".into();
    config.password = Some("s3cret".to_owned().into());
    let m = SmtpMailer::new(&config, Duration::from_secs(5)).expect("mailer");
    m.send(&label_mail(
        "https://x",
        1,
        "v@example.com",
        vec![1],
        "l.pdf",
        1,
        "<lazona.shipment.1.1@x>",
    ))
    .await
    .expect("sent");
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).await.len(), 1);
}

fn simple(to: &str) -> Email {
    Email {
        to: vec![to.to_owned()],
        subject: "s".into(),
        body: "b".into(),
        ..Email::default()
    }
}

#[tokio::test]
async fn a_message_without_its_own_id_gets_one_and_a_header_with_a_line_break_is_refused() {
    let sink = SmtpSink::start(None).await;
    let m = mailer(sink.port());
    m.send(&simple("v@example.com")).await.expect("sent");
    let mail = &sink.wait_for(1, Duration::from_secs(5)).await[0];
    assert!(
        mail.header("Message-ID")
            .is_some_and(|id| id.starts_with('<'))
    );
    let mut bad = simple("v@example.com");
    bad.headers = vec![("X-Bad".into(), "a\r\nBcc: x@example.com".into())];
    let e = m.send(&bad).await.unwrap_err();
    assert!(matches!(e, MailError::Rejected { .. }), "{e:?}");
    let mut bad = simple("v@example.com");
    bad.message_id = Some("no-brackets@x".into());
    assert!(matches!(
        m.send(&bad).await,
        Err(MailError::Rejected { .. })
    ));
}

#[tokio::test]
async fn refusals_map_to_rejected_or_unavailable() {
    let sink = SmtpSink::start(None).await;
    let m = mailer(sink.port());
    let e = m.send(&simple("reject@example.com")).await.unwrap_err();
    assert!(matches!(e, MailError::Rejected { .. }), "{e:?}");
    let e = m.send(&simple("defer@example.com")).await.unwrap_err();
    assert!(matches!(e, MailError::Unavailable { .. }), "{e:?}");
    let e = m.send(&simple("not an address")).await.unwrap_err();
    assert!(matches!(e, MailError::Rejected { .. }), "{e:?}");
    // The mailer recovers after the refusals.
    m.send(&simple("ok@example.com")).await.expect("sent");
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).await.len(), 1);
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_unavailable() {
    let sink = SmtpSink::start(None).await;
    let mut config = config(sink.port());
    config.use_tls = true;
    let m = SmtpMailer::new(&config, Duration::from_secs(5)).expect("mailer");
    let e = m.send(&simple("v@example.com")).await.unwrap_err();
    assert!(
        matches!(&e, MailError::Unavailable { reason } if reason.contains("STARTTLS")),
        "{e:?}"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_against_a_plain_server_is_unavailable() {
    let sink = SmtpSink::start(None).await;
    let mut config = config(sink.port());
    config.use_ssl = true;
    let m = SmtpMailer::new(&config, Duration::from_secs(2)).expect("mailer");
    let e = m.send(&simple("v@example.com")).await.unwrap_err();
    assert!(matches!(e, MailError::Unavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_server_that_is_not_listening_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let e = mailer(port)
        .send(&simple("v@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(e, MailError::Unavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_unavailable() {
    // Accepts the connection but never sends the greeting.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let m = SmtpMailer::new(&config(port), Duration::from_millis(300)).expect("mailer");
    let started = Instant::now();
    let e = m.send(&simple("v@example.com")).await.unwrap_err();
    assert!(matches!(e, MailError::Unavailable { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_burst_of_mails_shares_the_configured_connections() {
    let sink = SmtpSink::start_counting().await;
    let m = std::sync::Arc::new(mailer(sink.port()));
    let email = small_label();
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let (m, email) = (m.clone(), email.clone());
        sends.spawn(async move {
            for _ in 0..10 {
                m.send(&email).await.expect("sent");
            }
        });
    }
    while let Some(done) = sends.join_next().await {
        done.expect("sender");
    }
    assert_eq!(sink.count(), 320);
    // 32 senders at once on `max_connections = 4`: they wait for the four, kept between sends.
    assert!(
        (1..=4).contains(&sink.connections()),
        "{} connections for 320 mails",
        sink.connections()
    );
}

/// Sends `n` mails one after the other on one mailer (one kept connection) and returns the
/// time per mail.
async fn time_sends(nodelay: bool, n: usize) -> Duration {
    let sink = SmtpSink::start(None).await;
    let m = mailer(sink.port()).with_nodelay(nodelay);
    let email = small_label();
    m.send(&email).await.expect("warm-up");
    let started = Instant::now();
    for _ in 0..n {
        m.send(&email).await.expect("sent");
    }
    let elapsed = started.elapsed();
    assert_eq!(
        sink.wait_for(n + 1, Duration::from_secs(5)).await.len(),
        n + 1
    );
    elapsed / u32::try_from(n).expect("small")
}

#[tokio::test]
#[allow(clippy::print_stdout, reason = "the figure is the point of the test")]
async fn two_hundred_mails_on_one_connection() {
    let with = time_sends(true, 200).await;
    let without = time_sends(false, 50).await;
    println!(
        "SMTP send time per mail on one connection: {with:?} with TCP_NODELAY (200 mails), \
         {without:?} without (50 mails)"
    );
    // Not asserted strictly (shared CI machines); a sanity bound only.
    assert!(with < Duration::from_millis(200), "{with:?} per mail");
}
