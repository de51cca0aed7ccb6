//! A real SMTP server that keeps what it receives: for the test suites and the sandbox.
//!
//! [`SmtpSink::start`] listens on `127.0.0.1:0` and speaks enough SMTP for a client such as
//! lettre: the `220` greeting, `EHLO`/`HELO` (advertising `8BITMIME`, `SMTPUTF8` and `AUTH
//! PLAIN`, never `STARTTLS`), `AUTH` (any credentials pass), `MAIL FROM`, `RCPT TO`,
//! `DATA` (dot-unstuffed up to the lone `.` line), `RSET`, `NOOP` and `QUIT`. Every message is
//! kept in memory as a [`ReceivedMail`] and, when the sink has a folder, also written there as
//! `NNNNNN.eml`. Accepted sockets have `TCP_NODELAY` set. [`SmtpSink::start_counting`] keeps
//! nothing and only counts (for load benchmarks).
//!
//! Recipients whose address starts with `reject` get a `550` (a permanent refusal) and those
//! starting with `defer` a `451` (a temporary one), so tests can exercise both error paths.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::JoinHandle,
};

/// One message the sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`), without the angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without the angle brackets.
    pub to: Vec<String>,
    /// The message as sent after `DATA`, dot-unstuffed, with CRLF line ends and without the
    /// terminating `.` line.
    pub data: Vec<u8>,
}

impl ReceivedMail {
    /// The message as text (lossy UTF-8).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header called `name` (case-insensitive), unfolded (RFC 5322: the
    /// line breaks go, the white space stays) and with its RFC 2047 encoded words
    /// (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`) decoded.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw_header(name).map(|v| decode_words(&v))
    }

    fn raw_header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(v) = value.as_mut() {
                    v.push_str(line);
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }
}

/// Decodes the RFC 2047 encoded words of a header value; white space between two encoded words
/// is dropped, as the RFC says.
fn decode_words(value: &str) -> String {
    use base64::Engine as _;
    let decode = |word: &str| -> Option<String> {
        let inner = word.strip_prefix("=?")?.strip_suffix("?=")?;
        let mut parts = inner.splitn(3, '?');
        let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
        let bytes = match encoding {
            "b" | "B" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()?,
            "q" | "Q" => {
                let mut out = Vec::new();
                let mut chars = text.bytes();
                while let Some(c) = chars.next() {
                    match c {
                        b'_' => out.push(b' '),
                        b'=' => {
                            let hex = [chars.next()?, chars.next()?];
                            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                        }
                        c => out.push(c),
                    }
                }
                out
            }
            _ => return None,
        };
        Some(String::from_utf8_lossy(&bytes).into_owned())
    };
    let mut out = String::new();
    let mut previous_encoded = false;
    let mut pending_space = String::new();
    for token in value.split_inclusive(char::is_whitespace) {
        let word = token.trim_end();
        let space = &token[word.len()..];
        match decode(word) {
            Some(text) => {
                if !previous_encoded {
                    out.push_str(&pending_space);
                }
                out.push_str(&text);
                previous_encoded = true;
            }
            None => {
                out.push_str(&pending_space);
                out.push_str(word);
                previous_encoded = false;
            }
        }
        pending_space = space.to_owned();
    }
    out.push_str(&pending_space);
    out.trim().to_owned()
}

#[derive(Default)]
struct Shared {
    messages: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
    /// Messages received, kept or not.
    count: AtomicUsize,
    /// Connections accepted.
    connections: AtomicUsize,
    /// Count the messages without keeping them.
    discard: bool,
    /// How many of the next messages to defer (`451` after their data): kept nowhere.
    defer: AtomicUsize,
}

/// A running SMTP sink. Dropping it stops accepting connections.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl SmtpSink {
    /// Starts a sink on `127.0.0.1:0`. With `dir`, each message is also written there as
    /// `NNNNNN.eml` (the folder is created if needed).
    ///
    /// # Panics
    /// When the loopback port cannot be bound or the folder cannot be created (test set-up).
    pub async fn start(dir: Option<PathBuf>) -> SmtpSink {
        Self::start_with(dir, false).await
    }

    /// Starts a sink on `127.0.0.1:0` that only counts what it receives ([`SmtpSink::count`]):
    /// nothing is kept or written, so a load benchmark measures the sender, not the sink.
    ///
    /// # Panics
    /// When the loopback port cannot be bound.
    pub async fn start_counting() -> SmtpSink {
        Self::start_with(None, true).await
    }

    async fn start_with(dir: Option<PathBuf>, discard: bool) -> SmtpSink {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).expect("create the SMTP sink folder");
        }
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the SMTP sink");
        let addr = listener.local_addr().expect("SMTP sink address");
        let shared = Arc::new(Shared {
            discard,
            ..Shared::default()
        });
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Ok((socket, _)) = listener.accept().await {
                    shared.connections.fetch_add(1, Ordering::AcqRel);
                    let _ = socket.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let dir = dir.clone();
                    tokio::spawn(async move {
                        if let Err(e) = session(socket, &shared, dir.as_deref()).await {
                            tracing::debug!(error = %e, "SMTP sink session ended");
                        }
                    });
                }
            }
        });
        SmtpSink {
            addr,
            shared,
            accept,
        }
    }

    /// Defers the next `n` messages: each is answered `451 4.3.0` after its data and not kept,
    /// as a mail server in trouble does; the sender is to try again.
    pub fn defer_next(&self, n: usize) {
        self.shared.defer.store(n, Ordering::Release);
    }

    /// The address it listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many messages were received so far (also by a counting sink).
    #[must_use]
    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::Acquire)
    }

    /// How many connections were accepted so far: a sender that keeps its connections opens
    /// few.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// The messages received so far, in arrival order.
    #[must_use]
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared
            .messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `n` messages have arrived, or `timeout` has passed, and returns
    /// the messages received by then.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.arrived.notified();
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.messages();
            }
        }
    }
}

fn strip_path(arg: &str) -> String {
    let arg = arg.trim();
    let arg = arg.split_once(':').map_or(arg, |(_, v)| v).trim();
    let end = arg.find('>').map_or(arg.len(), |i| i + 1);
    arg[..end]
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

async fn session(
    socket: TcpStream,
    shared: &Shared,
    dir: Option<&std::path::Path>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"220 smtp-sink.localhost ESMTP ready\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
        let reply: &[u8] = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                b"250-smtp-sink.localhost\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-AUTH PLAIN\r\n250 PIPELINING\r\n"
            }
            "HELO" => b"250 smtp-sink.localhost\r\n",
            "AUTH" => b"235 2.7.0 Authentication successful\r\n",
            "MAIL" => {
                from = Some(strip_path(arg));
                to.clear();
                b"250 2.1.0 OK\r\n"
            }
            "RCPT" if from.is_none() => b"503 5.5.1 MAIL first\r\n",
            "RCPT" => {
                let rcpt = strip_path(arg);
                if rcpt.starts_with("reject") {
                    b"550 5.1.1 Mailbox unavailable\r\n"
                } else if rcpt.starts_with("defer") {
                    b"451 4.3.0 Try again later\r\n"
                } else {
                    to.push(rcpt);
                    b"250 2.1.5 OK\r\n"
                }
            }
            "DATA" if to.is_empty() => b"503 5.5.1 RCPT first\r\n",
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = Vec::new();
                loop {
                    line.clear();
                    if read.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    let body = if line.starts_with(b".") { &line[1..] } else { &line[..] };
                    data.extend_from_slice(body);
                }
                let deferred = shared
                    .defer
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok();
                if deferred {
                    from = None;
                    to.clear();
                    write
                        .write_all(b"451 4.3.0 Deferred by the sink, try again\r\n")
                        .await?;
                    continue;
                }
                let mail = ReceivedMail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                };
                if shared.discard {
                    shared.count.fetch_add(1, Ordering::AcqRel);
                } else {
                    let mut messages = shared
                        .messages
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(dir) = dir {
                        let path = dir.join(format!("{:06}.eml", messages.len() + 1));
                        if let Err(e) = std::fs::write(&path, &mail.data) {
                            tracing::warn!(error = %e, path = %path.display(), "SMTP sink could not write the message");
                        }
                    }
                    messages.push(mail);
                    shared.count.fetch_add(1, Ordering::AcqRel);
                }
                shared.arrived.notify_waiters();
                b"250 2.0.0 OK queued\r\n"
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded_and_their_encoded_words_decoded() {
        let mail = ReceivedMail {
            from: String::new(),
            to: Vec::new(),
            data:
                b"Subject: Webhook de WooCommerce =?utf-8?b?wqtvcmRlci51cGRhdGVkwrs6?=\r\n \
                    disabled\r\nX-Q: =?utf-8?q?cancel=C2=B7lar_ara?= =?utf-8?q?_ja?= fi\r\n\r\nbody"
                    .to_vec(),
        };
        assert_eq!(
            mail.header("subject").as_deref(),
            Some("Webhook de WooCommerce «order.updated»: disabled")
        );
        assert_eq!(mail.header("x-q").as_deref(), Some("cancel·lar ara ja fi"));
        assert_eq!(mail.header("missing"), None);
    }
}
