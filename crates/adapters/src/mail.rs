//! The SMTP mailer: [`SmtpMailer`] implements the domain's [`Mailer`] with lettre's async
//! SMTP client on tokio, over rustls (the `ring` provider, the platform's certificate verifier).
//!
//! Security follows upstream's Django settings: `use_ssl` is implicit TLS (SMTPS, usually port
//! 465), `use_tls` is STARTTLS (required: a server that does not offer it is an error), neither is
//! plain SMTP. Credentials are sent (AUTH PLAIN or LOGIN) when `user` is not empty.
//!
//! Connections are opened here rather than by lettre's pooled transport, so that the socket has
//! `TCP_NODELAY`: lettre writes the message and its terminating `.` line in two small writes, and
//! with Nagle's algorithm on the second one waits for the server's delayed ACK (~40 ms per mail).
//! Implicit TLS is the exception: lettre wraps the socket it opens itself, so those connections
//! keep Nagle on.
//!
//! At most `mail.max_connections` connections are open at once: a send beyond them waits for one
//! to be free (within its timeout), and every connection is kept open between sends, checked with
//! a `NOOP` when it has been idle for more than a second. So a burst of label mails reuses a few
//! connections instead of opening one per mail (keeping only 4 of them open, a benchmark at 1,000
//! orders/s opened a new connection for every other mail), and the mail server never sees more
//! connections from the connector than it was told.
//!
//! A message carries the [`Email`]'s extra headers (the label mails' `X-MC-Metadata`) and its
//! `Message-ID` when it has one (the label mails' own, recorded on their shipment); otherwise
//! lettre makes one up.
//!
//! Errors: a permanent SMTP reply (5xx, including a refused login), an address that does not
//! parse, or a message the server cannot take (e.g. no `8BITMIME` for a non-ASCII body) is
//! [`MailError::Rejected`]; everything else (connection, TLS, a server without STARTTLS when it
//! is required, timeout, 4xx) is [`MailError::Unavailable`].

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use domain::{
    error::MailError,
    ports::{Email, Mailer},
};
use lettre::{
    Message,
    address::Envelope,
    message::{
        Attachment as LettreAttachment, Mailbox, MultiPart, SinglePart,
        header::{ContentType, HeaderName, HeaderValue},
    },
    transport::smtp::{
        authentication::{Credentials, Mechanism},
        client::{AsyncSmtpConnection, TlsParameters},
        extension::ClientId,
    },
};
use secrecy::ExposeSecret;
use tokio::{net::TcpStream, sync::Semaphore};

use crate::config::MailConfig;

/// Idle time after which a kept connection is checked with `NOOP` before reuse.
const CHECK_AFTER: Duration = Duration::from_secs(1);

/// Why an [`SmtpMailer`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailSetupError {
    /// `from` is not a valid mailbox.
    #[error("invalid sender address {from:?}: {reason}")]
    From {
        /// The configured address.
        from: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS parameters could not be built.
    #[error("SMTP TLS set-up failed: {0}")]
    Tls(String),
}

#[derive(Clone)]
enum Security {
    Plain,
    StartTls(TlsParameters),
    Implicit(TlsParameters),
}

/// Sends e-mail over SMTP (see the module docs).
pub struct SmtpMailer {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    from: Mailbox,
    hello: ClientId,
    timeout: Duration,
    nodelay: bool,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// One permit per connection that may be open (`max_connections` of them).
    open: Semaphore,
    max_connections: usize,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let security = match self.security {
            Security::Plain => "plain",
            Security::StartTls(_) => "starttls",
            Security::Implicit(_) => "implicit-tls",
        };
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &security)
            .field("authenticated", &self.credentials.is_some())
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

/// What went wrong in one send, before it becomes a [`MailError`].
enum SendFailure {
    Smtp(lettre::transport::smtp::Error),
    Io(std::io::Error),
    /// The server lacks what the settings need (STARTTLS, a shared AUTH mechanism).
    Setup(String),
}

impl From<lettre::transport::smtp::Error> for SendFailure {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        SendFailure::Smtp(e)
    }
}

impl From<SendFailure> for MailError {
    fn from(f: SendFailure) -> Self {
        match f {
            SendFailure::Smtp(e) if e.is_permanent() || e.is_client() => MailError::Rejected {
                reason: e.to_string(),
            },
            SendFailure::Smtp(e) => MailError::Unavailable {
                reason: e.to_string(),
            },
            SendFailure::Io(e) => MailError::Unavailable {
                reason: format!("cannot connect to the SMTP server: {e}"),
            },
            SendFailure::Setup(reason) => MailError::Unavailable { reason },
        }
    }
}

impl SmtpMailer {
    /// Builds the mailer from the `mail` settings. Nothing is connected until the first send;
    /// `timeout` bounds every send as a whole (connecting included).
    ///
    /// # Errors
    /// [`MailSetupError`] when `from` is not an address or TLS cannot be set up.
    pub fn new(config: &MailConfig, timeout: Duration) -> Result<Self, MailSetupError> {
        // Fails only when a provider is already installed, which is what we want anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|e| MailSetupError::From {
                from: config.from.clone(),
                reason: e.to_string(),
            })?;
        let tls = || {
            TlsParameters::new_rustls(config.host.clone())
                .map_err(|e| MailSetupError::Tls(e.to_string()))
        };
        let security = if config.use_ssl {
            Security::Implicit(tls()?)
        } else if config.use_tls {
            Security::StartTls(tls()?)
        } else {
            Security::Plain
        };
        let credentials = (!config.user.is_empty()).then(|| {
            Credentials::new(
                config.user.clone(),
                config
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default(),
            )
        });
        Ok(SmtpMailer {
            host: config.host.clone(),
            port: config.port,
            security,
            credentials,
            from,
            hello: ClientId::default(),
            timeout,
            nodelay: true,
            idle: Mutex::new(Vec::new()),
            open: Semaphore::new(config.max_connections.max(1)),
            max_connections: config.max_connections.max(1),
        })
    }

    /// Turns `TCP_NODELAY` off (on by default): only to measure what it saves.
    #[must_use]
    pub fn with_nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Builds the MIME message and its envelope.
    fn message(&self, email: &Email) -> Result<(Envelope, Vec<u8>), MailError> {
        let rejected = |reason: String| MailError::Rejected { reason };
        let breaks = |v: &str| v.contains(['\r', '\n']);
        if let Some(id) = &email.message_id
            && (breaks(id) || !id.starts_with('<') || !id.ends_with('>'))
        {
            return Err(rejected(format!("invalid Message-ID {id:?}")));
        }
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email.subject.clone())
            .message_id(email.message_id.clone());
        for (name, value) in &email.headers {
            let header = HeaderName::new_from_ascii(name.clone())
                .map_err(|_| rejected(format!("invalid header name {name:?}")))?;
            if breaks(value) {
                return Err(rejected(format!("header {name} has a line break")));
            }
            builder = builder.raw_header(HeaderValue::new(header, value.clone()));
        }
        for to in &email.to {
            let mailbox = to
                .parse::<Mailbox>()
                .map_err(|e| rejected(format!("invalid recipient {to:?}: {e}")))?;
            builder = builder.to(mailbox);
        }
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone());
        let message = if email.attachments.is_empty() {
            builder.singlepart(text)
        } else {
            let mut parts = MultiPart::mixed().singlepart(text);
            for a in &email.attachments {
                let content_type = ContentType::parse(&a.content_type).unwrap_or_else(|_| {
                    ContentType::parse("application/octet-stream").expect("valid")
                });
                parts = parts.singlepart(
                    LettreAttachment::new(a.filename.clone()).body(a.content.clone(), content_type),
                );
            }
            builder.multipart(parts)
        }
        .map_err(|e| rejected(format!("cannot build the message: {e}")))?;
        Ok((message.envelope().clone(), message.formatted()))
    }

    /// Opens, greets, secures and authenticates a new connection.
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendFailure> {
        let mut conn = match &self.security {
            Security::Implicit(tls) => {
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello,
                    Some(tls.clone()),
                    None,
                )
                .await?
            }
            Security::Plain | Security::StartTls(_) => {
                let tcp = TcpStream::connect((self.host.as_str(), self.port))
                    .await
                    .map_err(SendFailure::Io)?;
                tcp.set_nodelay(self.nodelay).map_err(SendFailure::Io)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await?
            }
        };
        // lettre reports a missing capability as a client error; here it is the server's
        // set-up (or someone stripping STARTTLS), not the message: retryable.
        let setup = |e: lettre::transport::smtp::Error| {
            if e.is_client() {
                SendFailure::Setup(e.to_string())
            } else {
                SendFailure::Smtp(e)
            }
        };
        if let Security::StartTls(tls) = &self.security {
            conn.starttls(tls.clone(), &self.hello)
                .await
                .map_err(setup)?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(setup)?;
        }
        Ok(conn)
    }

    /// A kept connection that still answers, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, SendFailure> {
        loop {
            let kept = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let Some((mut conn, since)) = kept else {
                return self.connect().await;
            };
            if conn.has_broken() {
                continue;
            }
            if since.elapsed() < CHECK_AFTER || conn.test_connected().await {
                return Ok(conn);
            }
            conn.abort().await;
        }
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        // There are never more kept connections than permits: each was checked in by a send
        // holding one.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((conn, Instant::now()));
    }

    async fn deliver(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendFailure> {
        let _permit = self
            .open
            .acquire()
            .await
            .map_err(|_| SendFailure::Setup("the mailer is closed".into()))?;
        let mut conn = self.checkout().await?;
        match conn.send(envelope, bytes).await {
            Ok(_) => {
                self.checkin(conn);
                Ok(())
            }
            Err(e) => {
                conn.abort().await;
                Err(e.into())
            }
        }
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        let (envelope, bytes) = self.message(email)?;
        match tokio::time::timeout(self.timeout, self.deliver(&envelope, &bytes)).await {
            Ok(result) => result.map_err(MailError::from),
            Err(_) => Err(MailError::Unavailable {
                reason: format!(
                    "SMTP send to {}:{} timed out after {:?}",
                    self.host, self.port, self.timeout
                ),
            }),
        }
    }
}
