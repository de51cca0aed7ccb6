//! The audit log's contract on memory, SQLite and (with `TEST_DATABASE_URL`) Postgres: every
//! action kept with its actor, listed newest first, filtered by actor, action, subject and time.

use crate::helpers::open;
use adapters::db::SqlAuditLog;
use adapters::memory::MemoryAuditLog;
use adapters::testing::TestDb;
use chrono::{TimeDelta, Utc};
use domain::model::audit::subject;
use domain::model::{Actor, AuditAction, AuditFilter, NewAuditEntry};
use domain::ports::AuditLog;

async fn contract_holds(name: &str, log: &dyn AuditLog) {
    let earlier = Utc::now() - TimeDelta::hours(2);
    let mut old = NewAuditEntry::now(
        Actor::cli("maria@caixa"),
        AuditAction::Replay,
        subject::webhook(4),
    );
    old.at = earlier;
    let first = log.record(&old).await.expect("record");
    let forced = NewAuditEntry::now(
        Actor::token(3, "ops-bot"),
        AuditAction::Retry,
        subject::shipment(7),
    )
    .forced(true)
    .detail("job 12 enqueued");
    let second = log.record(&forced).await.expect("record");
    assert!(second > first, "{name}: ids increase");

    let all = log.list(&AuditFilter::default()).await.expect("list");
    assert_eq!(all.len(), 2, "{name}");
    assert_eq!(
        all[0].data.actor,
        Actor::token(3, "ops-bot"),
        "{name}: newest first, actor kept"
    );
    assert!(all[0].data.forced, "{name}");
    assert_eq!(
        all[0].data.detail.as_deref(),
        Some("job 12 enqueued"),
        "{name}"
    );
    assert_eq!(all[1].data.actor, Actor::cli("maria@caixa"), "{name}");
    assert_eq!(
        all[1].data.at.timestamp_millis(),
        earlier.timestamp_millis(),
        "{name}: its time kept"
    );

    let only = |f: AuditFilter| async move {
        log.list(&f)
            .await
            .expect("list")
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        only(AuditFilter {
            actor: Some("ops-bot".into()),
            ..Default::default()
        })
        .await,
        vec![second],
        "{name}"
    );
    assert_eq!(
        only(AuditFilter {
            action: Some(AuditAction::Replay),
            ..Default::default()
        })
        .await,
        vec![first],
        "{name}"
    );
    assert_eq!(
        only(AuditFilter {
            subject: Some(subject::shipment(7)),
            ..Default::default()
        })
        .await,
        vec![second],
        "{name}"
    );
    assert_eq!(
        only(AuditFilter {
            since: Some(Utc::now() - TimeDelta::hours(1)),
            ..Default::default()
        })
        .await,
        vec![second],
        "{name}"
    );
    assert_eq!(
        only(AuditFilter {
            before_id: Some(second),
            ..Default::default()
        })
        .await,
        vec![first],
        "{name}"
    );
    assert_eq!(
        only(AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![second],
        "{name}"
    );
}

#[tokio::test]
async fn every_action_is_kept_with_its_actor_on_every_backend() {
    contract_holds("memory", &MemoryAuditLog::new()).await;
    for (name, db) in TestDb::all().await {
        let (database, ..) = open(&db).await;
        contract_holds(name, &SqlAuditLog::new(database)).await;
    }
}
