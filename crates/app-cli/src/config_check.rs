//! `lazona config check`: the resolved configuration, where each value comes from, secrets
//! redacted, and a test of every connection the connector makes.

use adapters::config::{LEGACY_ENV, Settings};
use adapters::db::{ConnectError, Database};
use adapters::queue::Queue;
use adapters::redact::redact;
use clap::Subcommand;
use figment::value::{Dict, Value};
use secrecy::ExposeSecret;
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// `lazona config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved configuration (secrets redacted) with the source of each value, then
    /// test the database, the queue, the SMTP server and the third-party hosts.
    Check {
        /// Only print the configuration; test nothing.
        #[arg(long)]
        no_connect: bool,
        /// Seconds each connection test may take.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

/// Keys whose values are never printed.
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    matches!(
        last,
        "password" | "secret" | "auth_token" | "tracking_auth_token" | "token" | "dsn"
    ) || last.ends_with("_key")
        || last.ends_with("_secret")
}

fn shown(key: &str, value: &Value) -> serde_json::Value {
    let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    match &json {
        serde_json::Value::String(s) if is_secret(key) && !s.is_empty() => "***".into(),
        serde_json::Value::String(s) if key.ends_with("url") => redact(s).into(),
        _ => json,
    }
}

/// Where a key's value comes from: an environment variable, the file, or the defaults.
fn source(figment: &figment::Figment, key: &str) -> String {
    let Some(meta) = figment.find_metadata(key) else {
        return "default".into();
    };
    let name = meta.name.to_string();
    if name.contains("environment") {
        return format!("env LAZONA_{}", key.replace('.', "__").to_ascii_uppercase());
    }
    if let Some(figment::Source::File(path)) = &meta.source {
        return format!("file {}", path.display());
    }
    if name.starts_with("TOML") {
        return "default".into();
    }
    // The original deployment's variables are merged one by one as serialized strings.
    LEGACY_ENV
        .iter()
        .rev()
        .find(|(var, k)| *k == key && std::env::var_os(var).is_some())
        .map_or_else(|| "default".into(), |(var, _)| format!("env {var}"))
}

fn leaves(prefix: &str, dict: &Dict, out: &mut Vec<(String, Value)>) {
    for (k, v) in dict {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Dict(_, inner) => leaves(&key, inner, out),
            other => out.push((key, other.clone())),
        }
    }
}

#[derive(Debug, Serialize)]
struct Entry {
    key: String,
    value: serde_json::Value,
    source: String,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    target: String,
    ok: bool,
    detail: String,
}

/// Runs `lazona config check`.
pub(crate) async fn check(
    file: Option<&Path>,
    cmd: ConfigCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ConfigCommand::Check {
        no_connect,
        timeout,
    } = cmd;
    let figment = Settings::figment(file)?;
    let mut flat = Vec::new();
    let dict: Dict = figment.extract()?;
    leaves("", &dict, &mut flat);
    let entries: Vec<Entry> = flat
        .iter()
        .map(|(key, value)| Entry {
            key: key.clone(),
            value: shown(key, value),
            source: source(&figment, key),
        })
        .collect();
    let settings = match Settings::load(file) {
        Ok(s) => s,
        Err(e) => {
            print_entries(&entries, json, &[], &[])?;
            eprintln!("the configuration is invalid: {}", redact(&e.to_string()));
            return Ok(ExitCode::FAILURE);
        }
    };
    let checks = if no_connect {
        Vec::new()
    } else {
        connections(&settings, Duration::from_secs(timeout)).await
    };
    let policy = retention_policy(&settings);
    print_entries(&entries, json, &checks, &policy)?;
    Ok(if checks.iter().all(|c| c.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The personal data retention policy in words (README, "Personal data").
fn retention_policy(settings: &Settings) -> Vec<String> {
    let r = &settings.retention;
    let mut lines = r.settings().describe();
    lines.push(if r.settings().keeps_everything() {
        "no pruning runs".to_owned()
    } else {
        format!(
            "pruned every {} s by a worker, {} rows per transaction; `lazona purge --customer \
             EMAIL` erases one customer at once",
            r.interval_secs.as_secs(),
            r.batch
        )
    });
    lines
}

fn print_entries(
    entries: &[Entry],
    json: bool,
    checks: &[Check],
    policy: &[String],
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "settings": entries,
                "checks": checks,
                "retention": policy,
            }))?
        );
        return Ok(());
    }
    let width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    for e in entries {
        let value = match &e.value {
            serde_json::Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        println!("{:<width$}  {:<40}  ({})", e.key, value, e.source);
    }
    if !policy.is_empty() {
        println!("\npersonal data:");
        for line in policy {
            println!("  {line}");
        }
    }
    if !checks.is_empty() {
        println!();
        for c in checks {
            println!(
                "{}  {:<10} {:<40} {}",
                if c.ok { "ok  " } else { "FAIL" },
                c.name,
                c.target,
                c.detail
            );
        }
    }
    Ok(())
}

async fn connections(settings: &Settings, timeout: Duration) -> Vec<Check> {
    let mut checks = Vec::new();
    let db_url = redact(settings.database.url.expose_secret());
    // A look only: a SQLite file that is not there is reported, not created.
    let connect = Database::connect_existing(&settings.database);
    let db = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(db)) => {
            checks.push(Check {
                name: "database",
                target: db_url,
                ok: true,
                detail: "connected".into(),
            });
            Some(db)
        }
        Ok(Err(e @ ConnectError::Missing(_))) => {
            checks.push(fail(
                "database",
                db_url,
                &format!("{e} ({})", crate::CREATE_HINT),
            ));
            None
        }
        Ok(Err(e)) => {
            checks.push(fail("database", db_url, &e.to_string()));
            None
        }
        Err(_) => {
            checks.push(fail("database", db_url, "timed out"));
            None
        }
    };
    if let Some(db) = &db {
        let target = settings.queue.backend.clone();
        let result = tokio::time::timeout(timeout, async {
            let queue = Queue::open(settings, db, None).await?;
            queue.port.stats().await
        })
        .await;
        checks.push(match result {
            Ok(Ok(stats)) => Check {
                name: "queue",
                target,
                ok: true,
                detail: format!("{stats:?}"),
            },
            Ok(Err(e)) if settings.queue.backend == "sql" => {
                fail("queue", target, &format!("{e} (has `lazona migrate` run?)"))
            }
            Ok(Err(e)) => fail("queue", target, &e.to_string()),
            Err(_) => fail("queue", target, "timed out"),
        });
    }
    if !settings.mail.host.is_empty() {
        let target = format!("{}:{}", settings.mail.host, settings.mail.port);
        checks.push(smtp(&target, timeout).await);
    }
    let http = adapters::http::http_client(timeout).ok();
    for (name, url) in [
        ("koiki", &settings.koiki.host),
        ("tracking", &settings.koiki.tracking_host),
        ("shop", &settings.shop.host),
        ("crm", &settings.crm.rest_url),
    ] {
        if url.is_empty() {
            continue;
        }
        let Some(http) = &http else { break };
        checks.push(match http.get(url.as_str()).send().await {
            // Any answer means the host is there; credentials are not sent.
            Ok(resp) => Check {
                name,
                target: redact(url),
                ok: true,
                detail: format!("reachable (HTTP {})", resp.status().as_u16()),
            },
            Err(e) => fail(name, redact(url), &redact(&format!("unreachable: {e}"))),
        });
    }
    if !settings.shop.host.is_empty() {
        checks.extend(shop_webhooks(settings, timeout).await);
    }
    checks
}

/// The shop's WooCommerce webhooks (with the shop's credentials): each one pointing at a
/// connector endpoint, and whether it is active (WooCommerce sends nothing for a paused or
/// disabled one).
async fn shop_webhooks(settings: &Settings, timeout: Duration) -> Vec<Check> {
    use domain::ports::Shop as _;
    let target = redact(&format!("{}/wp-json/wc/v3/webhooks", settings.shop.host));
    let shop = match adapters::wordpress::WordPressShop::new(&settings.shop, timeout) {
        Ok(shop) => shop,
        Err(e) => return vec![fail("webhooks", target, &e.to_string())],
    };
    let hooks = match tokio::time::timeout(timeout, shop.webhooks()).await {
        Ok(Ok(hooks)) => hooks,
        Ok(Err(e)) => return vec![fail("webhooks", target, &redact(&e.to_string()))],
        Err(_) => return vec![fail("webhooks", target, "timed out")],
    };
    let ours: Vec<_> = hooks
        .iter()
        .filter(|h| domain::service::reconcile::points_at_connector(&h.delivery_url))
        .collect();
    if ours.is_empty() {
        return vec![fail(
            "webhooks",
            target,
            &format!(
                "none of the shop's {} webhook(s) points at /api/deliveries/ or /api/customers/",
                hooks.len()
            ),
        )];
    }
    ours.into_iter()
        .map(|h| Check {
            name: "webhook",
            target: format!("{} -> {}", h.topic, redact(&h.delivery_url)),
            ok: h.is_active(),
            detail: format!("id {} \"{}\": {}", h.id, h.name, h.status),
        })
        .collect()
}

async fn smtp(target: &str, timeout: Duration) -> Check {
    use tokio::io::AsyncReadExt;
    let mut stream =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return fail("smtp", target.into(), &e.to_string()),
            Err(_) => return fail("smtp", target.into(), "timed out connecting"),
        };
    let mut greeting = [0u8; 512];
    let ok = |detail: String| Check {
        name: "smtp",
        target: target.into(),
        ok: true,
        detail,
    };
    match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut greeting)).await {
        Ok(Ok(n)) => {
            let text = String::from_utf8_lossy(&greeting[..n]).trim().to_owned();
            if text.starts_with("220") {
                ok(text.lines().next().unwrap_or("").to_owned())
            } else if n == 0 {
                fail(
                    "smtp",
                    target.into(),
                    "closed the connection without a greeting",
                )
            } else {
                fail(
                    "smtp",
                    target.into(),
                    &format!("unexpected greeting {text:?}"),
                )
            }
        }
        Ok(Err(e)) => fail("smtp", target.into(), &e.to_string()),
        // Implicit TLS (port 465) greets only after the handshake.
        Err(_) => ok("connected; no plain-text greeting (implicit TLS?)".into()),
    }
}

fn fail(name: &'static str, target: String, detail: &str) -> Check {
    Check {
        name,
        target,
        ok: false,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keys_are_recognised() {
        assert!(is_secret("webhook.secret"));
        assert!(is_secret("koiki.auth_token"));
        assert!(is_secret("shop.password"));
        assert!(is_secret("sentry.dsn"));
        assert!(is_secret("mail.events_key"));
        assert!(is_secret("alerts.webhook_secret"));
        assert!(!is_secret("shop.user"));
    }
}
