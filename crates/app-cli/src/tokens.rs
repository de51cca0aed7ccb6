//! `lazona tokens ...`: the operations API's tokens. A secret is printed once, at creation; only
//! its hash is stored, so a lost secret is revoked and replaced, never recovered.

use crate::NOT_FOUND;
use clap::Subcommand;
use connector::Connector;
use domain::model::{ApiToken, Principal};
use domain::service::operations::{self, OperationError, Operator};
use std::process::ExitCode;

/// `lazona tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print its secret (once: it is not stored).
    Create {
        /// An admin token: sees and operates everything.
        #[arg(long, conflicts_with = "vendor", required_unless_present = "vendor")]
        admin: bool,
        /// A vendor's token: sees only this vendor's shipments and labels.
        #[arg(long, value_name = "VENDOR_ID")]
        vendor: Option<i64>,
        /// What the token is for (shown in `tokens list`).
        #[arg(long)]
        name: String,
    },
    /// List the tokens (never their secrets).
    List,
    /// Revoke a token: it is refused from now on.
    Revoke {
        /// The token's id.
        id: i64,
    },
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Runs `lazona tokens ...`.
pub(crate) async fn tokens(
    connector: &Connector,
    op: &Operator<'_>,
    cmd: TokensCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let store = connector.tokens();
    match cmd {
        TokensCommand::Create {
            admin,
            vendor,
            name,
        } => {
            let principal = match (admin, vendor) {
                (true, _) => Principal::Admin,
                (false, Some(vendor_id)) => Principal::Vendor { vendor_id },
                (false, None) => anyhow::bail!("name the token's scope: --admin or --vendor ID"),
            };
            let (token, secret) =
                operations::create_token(op, store.as_ref(), &name, principal).await?;
            if json {
                let mut out = serde_json::to_value(&token)?;
                out["secret"] = secret.expose().into();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                eprintln!(
                    "created token {} ({}) {:?}; its secret, shown this once (only its hash is \
                     stored):",
                    token.id, token.principal, token.name
                );
                println!("{}", secret.expose());
                eprintln!("Use it as `Authorization: Bearer <secret>` on /api/v1/.");
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::List => {
            let tokens = store.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
            } else {
                print_table(&tokens);
            }
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::Revoke { id } => {
            match operations::revoke_token(op, store.as_ref(), id).await {
                Ok(token) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&token)?);
                    } else {
                        println!("token {id} ({:?}) is revoked", token.name);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(OperationError::NoToken(_)) => {
                    eprintln!("no token {id}");
                    Ok(ExitCode::from(NOT_FOUND))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

fn print_table(tokens: &[ApiToken]) {
    println!(
        "{:>5}  {:<6}  {:>7}  {:<19}  {:<19}  {:<19}  name",
        "id", "scope", "vendor", "created", "last used", "revoked"
    );
    for t in tokens {
        println!(
            "{:>5}  {:<6}  {:>7}  {:<19}  {:<19}  {:<19}  {}",
            t.id,
            t.principal.scope(),
            t.principal
                .vendor_id()
                .map_or_else(|| "-".into(), |v| v.to_string()),
            time(Some(t.created_at)),
            time(t.last_used_at),
            time(t.revoked_at),
            t.name
        );
    }
}
