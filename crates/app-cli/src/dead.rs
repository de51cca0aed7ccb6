//! `lazona dead ...`: jobs the workers gave up on, and putting them back in the queue.

use crate::NOT_FOUND;
use clap::Subcommand;
use connector::Connector;
use domain::model::{DeadJob, JobId};
use domain::service::operations::{self, OperationError, Operator};
use std::process::ExitCode;

/// `lazona dead ...`
#[derive(Debug, Subcommand)]
pub enum DeadCommand {
    /// List dead-lettered jobs, most recent first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead job: what it was to do, its attempts and its last error.
    Show {
        /// The job id.
        id: i64,
    },
    /// Put dead jobs back in the queue, due now, with their attempts reset.
    Requeue {
        /// The job ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

fn describe(d: &DeadJob) -> String {
    serde_json::to_string(&d.kind).unwrap_or_else(|_| d.kind.name().to_owned())
}

/// Runs `lazona dead ...`.
pub(crate) async fn dead(
    connector: &Connector,
    op: &Operator<'_>,
    cmd: DeadCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let queue = connector.queue();
    let port = queue.as_ref();
    match cmd {
        DeadCommand::List { limit } => {
            let jobs = port.dead_jobs(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                println!(
                    "{:>8}  {:<24}  {:>8}  {:<20}  error",
                    "id", "job", "attempts", "failed"
                );
                for d in &jobs {
                    println!(
                        "{:>8}  {:<24}  {:>8}  {:<20}  {}",
                        d.id,
                        d.kind.name(),
                        d.attempts,
                        d.failed_at.format("%Y-%m-%d %H:%M:%S"),
                        d.error.lines().next().unwrap_or("")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Show { id } => {
            // The port lists; a dead-letter table stays small, so a scan is fine.
            let found = port
                .dead_jobs(100_000)
                .await?
                .into_iter()
                .find(|d| d.id == JobId(id));
            let Some(d) = found else {
                eprintln!("no dead job {id}");
                return Ok(ExitCode::from(NOT_FOUND));
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!("job       {}", d.id);
                println!("does      {}", describe(&d));
                println!("attempts  {}", d.attempts);
                println!("failed    {}", d.failed_at);
                println!("error     {}", d.error);
                println!("\nput it back with: lazona dead requeue {}", d.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadCommand::Requeue { ids } => {
            let mut requeued = Vec::new();
            let mut missing = Vec::new();
            for id in ids {
                match operations::requeue_dead(op, port, JobId(id)).await {
                    Ok(()) => requeued.push(id),
                    Err(OperationError::NoDeadJob(_)) => missing.push(id),
                    Err(e) => return Err(e.into()),
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "requeued": requeued, "not_found": missing })
                );
            } else {
                for id in &requeued {
                    println!("job {id} is queued again");
                }
                for id in &missing {
                    eprintln!("no dead job {id}");
                }
            }
            Ok(if missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(NOT_FOUND)
            })
        }
    }
}
