//! `lazona sandbox`: starts the fake third parties of `adapters::sandbox` (Koiki, WCFM,
//! WordPress, WooCommerce, an SMTP sink writing each mail to a folder, and a fake Mandrill
//! reporting the label mails to the server, one of them bounced), prints the
//! environment that points `lazona-http` at them and a `curl` command that posts a signed
//! sample order, then reports what the fakes see until ctrl-c.
//!
//! It never touches the connector's database: the printed environment gives `lazona-http` a
//! SQLite file of its own in the sandbox folder.

use adapters::sandbox::{self, Calls, Sandbox, SandboxOptions};
use anyhow::Context as _;
use domain::service::signature::WebhookSecret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `lazona sandbox` options.
#[derive(Debug, clap::Args)]
pub struct SandboxArgs {
    /// The folder for the mails (`mails/`), the sample order (`order.json`), the environment
    /// (`sandbox.env`) and the server's own database (`sandbox.db`).
    #[arg(long, default_value = "lazona-sandbox")]
    pub dir: PathBuf,
    /// The fakes' HTTP port on 127.0.0.1 (0: any free port). Not the connector's: that is
    /// --listen.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Where lazona-http is to listen: the printed environment's LAZONA_LISTEN, and where the
    /// printed curl posts the sample order.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// Runs the sandbox until ctrl-c.
pub(crate) async fn run(args: &SandboxArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let mail_dir = dir.join("mails");
    let fakes = Sandbox::start(SandboxOptions {
        port: args.port,
        mail_dir: Some(mail_dir.clone()),
        count_mails_only: false,
        mail_events: true,
    })
    .await
    .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;

    // A new order id on every start, so that a server keeping its database books it again.
    let order_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() % 100_000_000);
    let order = sandbox::sample_order(i64::try_from(order_id).unwrap_or(1));
    let order_path = dir.join("order.json");
    std::fs::write(&order_path, &order)
        .with_context(|| format!("cannot write {}", order_path.display()))?;
    let signature = WebhookSecret::new(sandbox::WEBHOOK_SECRET).sign(order.as_bytes());
    // The shop's side: an order WooCommerce never delivered (the reconciliation takes it in when
    // the server starts), and the connector's webhooks delivering to the server (order.updated
    // disabled: the admins are told).
    let missed_id = i64::try_from(order_id).unwrap_or(1) + 1;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    fakes.add_shop_order(Sandbox::sample_order(missed_id, "processing", &now));
    fakes.set_connector_url(&format!("http://{}", args.listen));

    let mut env = fakes.env();
    env.push((
        "LAZONA_DATABASE__URL".into(),
        format!("sqlite://{}?mode=rwc", dir.join("sandbox.db").display()),
    ));
    env.push(("LAZONA_LISTEN".into(), args.listen.to_string()));
    env.push(("LAZONA_WORKER__EMBEDDED".into(), "true".into()));
    let exports: String = env
        .iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
        .collect();
    let env_path = dir.join("sandbox.env");
    std::fs::write(&env_path, &exports)
        .with_context(|| format!("cannot write {}", env_path.display()))?;

    let rule = "=".repeat(78);
    println!("{rule}");
    println!("SANDBOX — fake third parties, nothing real is called");
    println!("{rule}");
    println!(
        "Fake Koiki, WCFM, WordPress and WooCommerce: {}",
        fakes.url()
    );
    println!(
        "SMTP sink: 127.0.0.1:{} (each mail is written to {})",
        fakes.smtp().port(),
        mail_dir.display()
    );
    println!();
    println!(
        "1. Point lazona-http at the sandbox (also in {}):",
        env_path.display()
    );
    println!();
    print!("{exports}");
    println!();
    println!(
        "2. Start the server in that shell (it listens on {}):",
        args.listen
    );
    println!();
    println!("cargo run --release --bin lazona-http");
    println!();
    println!(
        "3. Post a signed sample order (order {order_id}, two Koiki vendors; {}):",
        order_path.display()
    );
    println!();
    println!("{}", curl(args.listen, &order_path, &signature));
    println!();
    println!(
        "Each vendor's label mail lands in {}. The shop also lists order {missed_id}, which \
         WooCommerce never delivered: the server's first reconciliation pass (at start-up) books \
         it, and tells the admins ({}) that the shop's order.updated webhook is disabled.",
        mail_dir.display(),
        sandbox::ADMIN_EMAIL
    );
    println!();
    println!(
        "A fake Mandrill then reports each label mail to the server \
         (http://{}/api/mail-events/mandrill, signed with LAZONA_MAIL__EVENTS_KEY): delivered, \
         but the first one to vendor 7 ({}) bounced. The admins get an alert mail; `lazona \
         shipments show ID` shows the mail's state and events; `lazona labels resend ID` (or \
         `--to EMAIL`) mails the label again, and the fake reports it delivered. Ctrl-C stops \
         the sandbox.",
        args.listen,
        sandbox::vendor_email(7)
    );
    println!("{rule}");

    watch(&fakes).await;
    println!("sandbox stopped: {}", summary(&fakes.calls()));
    Ok(ExitCode::SUCCESS)
}

/// Reports the fakes' calls and the mails as they come, until ctrl-c.
async fn watch(fakes: &Sandbox) {
    let mut seen = Calls::default();
    let mut mails = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let calls = fakes.calls();
        if calls != seen {
            println!("fakes: {}", summary(&calls));
            seen = calls;
        }
        let messages = fakes.smtp().messages();
        for (i, mail) in messages.iter().enumerate().skip(mails) {
            println!(
                "mail {:06}.eml to {}: {}",
                i + 1,
                mail.to.join(", "),
                mail.header("subject").unwrap_or_default()
            );
        }
        mails = messages.len();
    }
}

fn summary(calls: &Calls) -> String {
    format!(
        "Koiki bookings {} ({} envios), tracking {}; WCFM vendors {}; WordPress users {} \
         (searches {}, role updates {}); WooCommerce orders {} (listings {}, updates {}, \
         notes {}), webhook listings {}; Mandrill events posted {} (refused {}); refused {}",
        calls.koiki_bookings,
        calls.koiki_envios,
        calls.koiki_tracking,
        calls.wcfm_settings,
        calls.wp_users,
        calls.wp_user_searches,
        calls.wp_user_updates,
        calls.wc_orders,
        calls.wc_order_lists,
        calls.wc_order_updates,
        calls.wc_note_writes,
        calls.wc_webhook_lists,
        calls.mandrill_events,
        calls.mandrill_refused,
        calls.refused
    )
}

/// The `curl` command that posts `order` to the connector at `listen` as WooCommerce would
/// (signed, with its headers).
fn curl(listen: SocketAddr, order: &Path, signature: &str) -> String {
    [
        format!("curl -sS -X POST http://{listen}/api/deliveries/"),
        "  -H 'Content-Type: application/json'".to_owned(),
        "  -H 'X-WC-Webhook-Topic: order.created'".to_owned(),
        "  -H 'X-WC-Webhook-Resource: order'".to_owned(),
        "  -H 'X-WC-Webhook-Event: created'".to_owned(),
        "  -H \"X-WC-Webhook-Delivery-ID: sandbox-$(date +%s)\"".to_owned(),
        format!("  -H 'X-WC-Webhook-Signature: {signature}'"),
        format!(
            "  --data-binary @{}",
            shell_quote(&order.display().to_string())
        ),
    ]
    .join(" \\\n")
}

/// `value` as one shell word: as it is when plain, else single-quoted.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_for_the_shell_only_when_needed() {
        assert_eq!(shell_quote("http://127.0.0.1:80"), "http://127.0.0.1:80");
        assert_eq!(
            shell_quote("sqlite:///tmp/a b/s.db?mode=rwc"),
            "'sqlite:///tmp/a b/s.db?mode=rwc'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_curl_command_sends_the_file_byte_for_byte() {
        let listen = SocketAddr::from(([127, 0, 0, 1], 9090));
        let c = curl(listen, Path::new("/tmp/sb/order.json"), "c2ln");
        assert!(c.starts_with("curl -sS -X POST http://127.0.0.1:9090/api/deliveries/"));
        assert!(c.contains("--data-binary @/tmp/sb/order.json"));
        assert!(c.contains("X-WC-Webhook-Signature: c2ln"));
        assert!(c.contains("X-WC-Webhook-Topic: order.created"));
    }
}
