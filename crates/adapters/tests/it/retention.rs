//! Retention and erasure of personal data on SQLite and (with `TEST_DATABASE_URL`) Postgres:
//! expired webhook bodies, labels and dead jobs pruned in batches and fresh ones kept, lists and
//! counts unchanged, a pruned webhook's replay refused; one customer's erasure leaving the others
//! intact, a dry run changing nothing; on SQLite, the erased data gone from the file itself.

use crate::helpers::{open, webhook};
use adapters::db::{Database, SqlAlertStore, SqlAuditLog, SqlShipmentStore};
use adapters::testing::TestDb;
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use domain::model::{
    Actor, AlertKind, AuditAction, AuditFilter, BookingOutcome, JobKind, NewAlert, NewJob,
    NewWebhook, PruneReason, PruneReport, Resource, RetentionSettings, ShipmentMethod,
    ShipmentStatus, WebhookFilter, WebhookStatus,
};
use domain::ports::{AlertStore, AuditLog, JobQueue, ShipmentStore, WebhookInbox};
use domain::service::operations::{self, OperationError, Refusal};
use domain::service::retention::{Erasure, Retention, email_hash};
use sea_orm::ConnectionTrait as _;
use std::sync::Arc;

fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - TimeDelta::days(days)
}

fn order(delivery: &str, order_id: i64, email: &str, name: &str, at: DateTime<Utc>) -> NewWebhook {
    let mut w = webhook(Some(delivery), WebhookStatus::Processed);
    w.subject_id = Some(order_id);
    w.received_at = at;
    w.headers
        .push(("x-wc-webhook-delivery-id".into(), delivery.into()));
    w.body = Bytes::from(format!(
        r#"{{"id": {order_id}, "billing": {{"first_name": "{name}", "email": "{email}", "phone": "600111222"}}, "shipping": {{"first_name": "{name}", "address_1": "Carrer {name} 1"}}}}"#
    ));
    w
}

fn customer(delivery: &str, customer_id: i64, email: &str) -> NewWebhook {
    let mut w = webhook(Some(delivery), WebhookStatus::Processed);
    w.resource = Resource::Customer;
    w.topic = Some("customer.updated".into());
    w.subject_id = Some(customer_id);
    w.received_at = Utc::now();
    w.body = Bytes::from(format!(r#"{{"id": {customer_id}, "email": "{email}"}}"#));
    w
}

async fn exec(db: &Database, sql: &str) {
    db.conn().execute_unprepared(sql).await.expect(sql);
}

/// A shipment of `order_id` booked with a label and a request naming `name`.
async fn booked(store: &SqlShipmentStore, order_id: i64, name: &str) -> i64 {
    let claimed = match store
        .claim(order_id, 7, ShipmentMethod::Koiki)
        .await
        .expect("claim")
    {
        domain::model::Claim::Claimed(s) => s,
        domain::model::Claim::Exists(s) => s,
    };
    store
        .record_booking(
            claimed.id,
            0,
            &BookingOutcome {
                status: ShipmentStatus::LabelSent,
                delivery_id: format!("BAR{order_id}"),
                request: format!(r#"{{"nombreDestinatario": "{name}", "telefono": "600111222"}}"#),
                message: "OK".into(),
                label_pdf: Some(format!("%PDF label for {name}").into_bytes()),
            },
        )
        .await
        .expect("booked");
    claimed.id
}

#[tokio::test]
async fn expired_bodies_labels_and_dead_jobs_are_pruned_in_batches_and_fresh_ones_kept() {
    for (backend, db) in TestDb::all().await {
        let (database, inbox, queue, _) = open(&db).await;
        let inbox = Arc::new(inbox);
        let store = Arc::new(SqlShipmentStore::new(database.clone()));
        let queue = Arc::new(queue);

        let mut old = Vec::new();
        for i in 0..5 {
            let w = order(
                &format!("old-{i}"),
                100 + i,
                "ana@example.coop",
                "Ana",
                days_ago(100),
            );
            old.push(inbox.record(w).await.expect("record").id);
        }
        let fresh = inbox
            .record(order("fresh", 200, "ana@example.coop", "Ana", days_ago(10)))
            .await
            .expect("record")
            .id;
        assert!(
            inbox
                .transition(
                    old[0],
                    WebhookStatus::Processed,
                    WebhookStatus::Failed,
                    Some("boom".into())
                )
                .await
                .expect("transition"),
            "{backend}"
        );

        // Labels: delivered 100 days ago (pruned), delivered 10 days ago (kept), never
        // delivered and booked 200 days ago (pruned) or 100 days ago (kept).
        let delivered_old = booked(&store, 100, "Ana").await;
        let delivered_fresh = booked(&store, 101, "Ana").await;
        let undelivered_old = booked(&store, 102, "Ana").await;
        let undelivered_fresh = booked(&store, 103, "Ana").await;
        let ms = |d: DateTime<Utc>| d.timestamp_millis();
        exec(
            &database,
            &format!(
                "UPDATE shipments SET status = 'DELIVERED', updated_at = {} WHERE id = {delivered_old}",
                ms(days_ago(100))
            ),
        )
        .await;
        exec(
            &database,
            &format!(
                "UPDATE shipments SET status = 'DELIVERED', updated_at = {} WHERE id = {delivered_fresh}",
                ms(days_ago(10))
            ),
        )
        .await;
        for (id, age) in [(undelivered_old, 200), (undelivered_fresh, 100)] {
            exec(
                &database,
                &format!(
                    "UPDATE shipments SET created_at = {} WHERE id = {id}",
                    ms(days_ago(age))
                ),
            )
            .await;
        }

        // Dead jobs: one given up 40 days ago (deleted), one yesterday (kept).
        let mut dead = Vec::new();
        for tag in [1, 2] {
            let id = queue
                .enqueue(NewJob {
                    kind: JobKind::Noop { tag },
                    run_at: None,
                })
                .await
                .expect("enqueue");
            dead.push(id);
        }
        exec(
            &database,
            &format!(
                "UPDATE jobs SET status = 'dead', updated_at = {} WHERE id = {}",
                ms(days_ago(40)),
                dead[0].0
            ),
        )
        .await;
        exec(
            &database,
            &format!(
                "UPDATE jobs SET status = 'dead', updated_at = {} WHERE id = {}",
                ms(days_ago(1)),
                dead[1].0
            ),
        )
        .await;

        // Two refused bookings' alerts quoting the carrier request: one last seen 100 days ago.
        let alerts = Arc::new(SqlAlertStore::new(database.clone()));
        for subject in ["shipment:901", "shipment:902"] {
            alerts
                .raise(&domain::model::NewAlert {
                    kind: domain::model::AlertKind::BookingRefused,
                    subject: subject.into(),
                    summary: "Error enviament Koiki".into(),
                    detail: "nombreDesti: Ana, direccionDesti: Carrer Major 1".into(),
                })
                .await
                .expect("raised");
        }
        exec(
            &database,
            &format!(
                "UPDATE alerts SET last_seen = {} WHERE subject = 'shipment:901'",
                days_ago(100).timestamp_millis()
            ),
        )
        .await;

        let history = inbox.history(old[0]).await.expect("history").len();
        let retention = Retention {
            inbox: inbox.clone(),
            shipments: store.clone(),
            queue: queue.clone(),
            alerts: alerts.clone(),
            settings: RetentionSettings {
                batch: 2,
                ..RetentionSettings::default()
            },
        };
        let report = retention.prune_once(Utc::now()).await.expect("prune");
        assert_eq!(
            report,
            PruneReport {
                webhook_bodies: 5,
                labels: 2,
                dead_jobs: 1,
                alert_details: 1,
                more: false,
            },
            "{backend}"
        );
        let details: Vec<(String, String)> = alerts
            .list(&domain::model::AlertFilter::default())
            .await
            .expect("alerts")
            .into_iter()
            .map(|a| (a.subject, a.detail))
            .collect();
        assert!(
            details.contains(&(
                "shipment:901".into(),
                domain::service::retention::ALERT_DETAIL_PRUNED.into()
            )) && details.contains(&(
                "shipment:902".into(),
                "nombreDesti: Ana, direccionDesti: Carrer Major 1".into()
            )),
            "{backend}: the old detail cleared, the fresh one kept: {details:?}"
        );
        assert!(
            retention
                .prune_once(Utc::now())
                .await
                .expect("again")
                .is_empty(),
            "{backend}: nothing left to prune"
        );

        // The pruned webhooks keep their rows, statuses, topics, order ids and histories.
        for &id in &old {
            let w = inbox.get(id).await.expect("get").expect("kept");
            assert!(w.data.body.is_empty(), "{backend}: body cleared");
            assert!(w.data.headers.is_empty(), "{backend}: headers cleared");
            let pruned = w.pruned.expect("pruned");
            assert_eq!(pruned.why, PruneReason::Retention, "{backend}");
            assert_eq!(w.data.topic.as_deref(), Some("order.created"), "{backend}");
            assert!(w.data.subject_id.is_some(), "{backend}");
        }
        let failed = inbox.get(old[0]).await.expect("get").expect("kept");
        assert_eq!(failed.data.status, WebhookStatus::Failed, "{backend}");
        assert_eq!(
            inbox.history(old[0]).await.expect("history").len(),
            history,
            "{backend}: the history stays"
        );
        let kept = inbox.get(fresh).await.expect("get").expect("kept");
        assert!(
            kept.pruned.is_none() && !kept.data.body.is_empty(),
            "{backend}"
        );
        // Lists and counts still work.
        assert_eq!(inbox.count().await.expect("count"), 6, "{backend}");
        let listed = inbox.list(&WebhookFilter::default()).await.expect("list");
        assert_eq!(listed.len(), 6, "{backend}");
        assert_eq!(
            listed.iter().filter(|w| w.pruned.is_some()).count(),
            5,
            "{backend}"
        );
        let failed_only = inbox
            .list(&WebhookFilter {
                status: Some(WebhookStatus::Failed),
                ..WebhookFilter::default()
            })
            .await
            .expect("list");
        assert_eq!(failed_only.len(), 1, "{backend}");

        // A pruned webhook's replay is refused, saying when and why.
        let actor = domain::model::Actor::cli("ana@caixa");
        let audit = adapters::memory::MemoryAuditLog::new();
        let events = adapters::db::SqlEventLog::new(database.clone());
        let op = operations::Operator {
            actor: &actor,
            audit: &audit,
            events: &events,
        };
        let refused = operations::replay_webhook_by_id(
            &op,
            inbox.as_ref(),
            queue.as_ref(),
            store.as_ref(),
            old[0],
            false,
        )
        .await;
        let Err(OperationError::Refused(refusal @ Refusal::BodyPruned { .. })) = refused else {
            panic!("{backend}: {refused:?}")
        };
        let message = refusal.to_string();
        assert!(
            message.contains("after 100 days (retention.webhook_body_days)")
                && message.ends_with("there is nothing to replay"),
            "{backend}: {message}"
        );

        // Labels: the barcode and statuses stay.
        for (id, pruned) in [
            (delivered_old, true),
            (delivered_fresh, false),
            (undelivered_old, true),
            (undelivered_fresh, false),
        ] {
            let s = store.get(id).await.expect("get").expect("kept");
            assert_eq!(s.label_pruned.is_some(), pruned, "{backend}: shipment {id}");
            assert_eq!(s.has_label, !pruned, "{backend}: shipment {id}");
            assert_eq!(s.request.is_empty(), pruned, "{backend}: shipment {id}");
            assert_eq!(s.delivery_id, format!("BAR{}", s.order_id), "{backend}");
            assert_eq!(
                store.label(id).await.expect("label").is_none(),
                pruned,
                "{backend}"
            );
        }
        assert_eq!(
            store
                .get(delivered_old)
                .await
                .expect("get")
                .expect("kept")
                .status,
            ShipmentStatus::Delivered,
            "{backend}"
        );
        // A label pruned cannot be mailed again, and says so.
        let refused =
            operations::resend_label(&op, store.as_ref(), queue.as_ref(), delivered_old, None)
                .await;
        let Err(OperationError::Refused(refusal @ Refusal::LabelPruned { .. })) = refused else {
            panic!("{backend}: {refused:?}")
        };
        assert!(refusal.to_string().contains("pruned"), "{backend}");

        let left: Vec<_> = queue
            .dead_jobs(10)
            .await
            .expect("dead")
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(left, vec![dead[1]], "{backend}: the fresh dead job stays");
    }
}

#[tokio::test]
async fn zero_days_keeps_everything() {
    let db = TestDb::sqlite();
    let (database, inbox, queue, _) = open(&db).await;
    let inbox = Arc::new(inbox);
    inbox
        .record(order("old", 1, "ana@example.coop", "Ana", days_ago(1000)))
        .await
        .expect("record");
    let retention = Retention {
        inbox: inbox.clone(),
        shipments: Arc::new(SqlShipmentStore::new(database.clone())),
        queue: Arc::new(queue),
        alerts: Arc::new(SqlAlertStore::new(database)),
        settings: RetentionSettings {
            webhook_body_days: 0,
            label_days: 0,
            label_undelivered_days: 0,
            dead_job_days: 0,
            batch: 10,
        },
    };
    assert!(
        retention
            .prune_once(Utc::now())
            .await
            .expect("prune")
            .is_empty()
    );
}

struct Stores {
    inbox: Arc<adapters::db::SqlInbox>,
    store: Arc<SqlShipmentStore>,
    alerts: Arc<SqlAlertStore>,
    audit: Arc<SqlAuditLog>,
    erasure: Erasure,
}

async fn stores(database: &Database, inbox: adapters::db::SqlInbox) -> Stores {
    let inbox = Arc::new(inbox);
    let store = Arc::new(SqlShipmentStore::new(database.clone()));
    let alerts = Arc::new(SqlAlertStore::new(database.clone()));
    let audit = Arc::new(SqlAuditLog::new(database.clone()));
    let erasure = Erasure {
        inbox: inbox.clone(),
        shipments: store.clone(),
        alerts: alerts.clone(),
        audit: audit.clone(),
    };
    Stores {
        inbox,
        store,
        alerts,
        audit,
        erasure,
    }
}

#[tokio::test]
async fn a_purge_erases_one_customer_and_leaves_the_others_intact() {
    for (backend, db) in TestDb::all().await {
        let (database, inbox, _, _) = open(&db).await;
        let s = stores(&database, inbox).await;
        let rec = |w: NewWebhook| {
            let inbox = s.inbox.clone();
            async move { inbox.record(w).await.expect("record").id }
        };
        // Ana's order (created, then updated with her e-mail in capitals), her customer webhook,
        // and an order of hers whose update no longer names her; Bob's order and customer.
        let ana = [
            rec(order("a1", 1, "ana@example.coop", "Ana", Utc::now())).await,
            rec(order("a2", 1, "ANA@Example.coop", "Ana", Utc::now())).await,
            rec(customer("a3", 50, "ana@example.coop")).await,
            rec(order("a4", 3, "ana@example.coop", "Ana", Utc::now())).await,
            rec(order("a5", 3, "other@example.coop", "Ana", Utc::now())).await,
        ];
        let bob = [
            rec(order("b1", 2, "bob@example.coop", "Bob", Utc::now())).await,
            rec(customer("b2", 51, "bob@example.coop")).await,
            // Mentions Ana's address, but not as its customer's: kept.
            rec({
                let mut w = order("b3", 4, "bob@example.coop", "Bob", Utc::now());
                w.body = Bytes::from(
                    r#"{"id": 4, "billing": {"email": "bob@example.coop"}, "customer_note": "gift for ana@example.coop"}"#,
                );
                w
            })
            .await,
        ];
        let ana_shipment = booked(&s.store, 1, "Ana").await;
        let bob_shipment = booked(&s.store, 2, "Bob").await;
        for id in [ana_shipment, bob_shipment] {
            s.alerts
                .raise(&NewAlert {
                    kind: AlertKind::BookingRefused,
                    subject: domain::model::alert::subject::shipment(id),
                    summary: "refused".into(),
                    detail: format!("request of shipment {id}: Carrer 1"),
                })
                .await
                .expect("raise");
        }

        let dry = s
            .erasure
            .purge(" Ana@Example.coop ", true, Actor::cli("maria@caixa"))
            .await
            .expect("dry run");
        let mut expected_ids: Vec<i64> = ana.iter().map(|id| id.0).collect();
        expected_ids.sort_unstable();
        assert_eq!(dry.webhook_ids, expected_ids, "{backend}");
        assert_eq!(
            (
                dry.webhooks_cleared,
                dry.order_ids.clone(),
                dry.shipments_cleared
            ),
            (5, vec![1, 3], 1),
            "{backend}"
        );
        assert_eq!(dry.shipment_ids, vec![ana_shipment], "{backend}");
        for id in ana {
            assert!(
                s.inbox
                    .get(id)
                    .await
                    .expect("get")
                    .expect("kept")
                    .pruned
                    .is_none(),
                "{backend}: a dry run changes nothing"
            );
        }
        assert!(
            s.audit
                .list(&AuditFilter::default())
                .await
                .expect("audit")
                .is_empty(),
            "{backend}: a dry run is not an erasure"
        );

        let done = s
            .erasure
            .purge("ana@example.coop", false, Actor::cli("maria@caixa"))
            .await
            .expect("purge");
        assert_eq!(
            (done.webhooks_cleared, done.shipments_cleared),
            (5, 1),
            "{backend}"
        );
        for id in ana {
            let w = s.inbox.get(id).await.expect("get").expect("kept");
            assert!(
                w.data.body.is_empty() && w.data.headers.is_empty(),
                "{backend}"
            );
            assert_eq!(
                w.pruned.map(|p| p.why),
                Some(PruneReason::Erasure),
                "{backend}"
            );
            assert_eq!(w.data.status, WebhookStatus::Processed, "{backend}");
        }
        for id in bob {
            let w = s.inbox.get(id).await.expect("get").expect("kept");
            assert!(w.pruned.is_none() && !w.data.body.is_empty(), "{backend}");
        }
        let erased = s.store.get(ana_shipment).await.expect("get").expect("kept");
        assert!(
            !erased.has_label && erased.request.is_empty() && erased.delivery_id == "BAR1",
            "{backend}: {erased:?}"
        );
        let kept = s.store.get(bob_shipment).await.expect("get").expect("kept");
        assert!(kept.has_label && kept.request.contains("Bob"), "{backend}");
        let alerts = s
            .alerts
            .list(&domain::model::AlertFilter::default())
            .await
            .expect("alerts");
        for a in alerts {
            let erased = a.subject == domain::model::alert::subject::shipment(ana_shipment);
            assert_eq!(
                !a.detail.contains("Carrer"),
                erased,
                "{backend}: {}",
                a.subject
            );
        }

        let audit = s.audit.list(&AuditFilter::default()).await.expect("audit");
        assert_eq!(audit.len(), 1, "{backend}");
        let entry = &audit[0].data;
        assert_eq!(entry.action, AuditAction::Purge, "{backend}");
        assert_eq!(entry.actor, Actor::cli("maria@caixa"), "{backend}");
        assert_eq!(
            entry.subject,
            format!("customer:{}", email_hash("ana@example.coop")),
            "{backend}"
        );
        assert!(!entry.subject.contains("ana"), "{backend}");
        assert_eq!(
            entry.detail.as_deref(),
            Some("5 webhooks, 1 shipments cleared"),
            "{backend}"
        );

        // Again: nothing left to clear.
        let again = s
            .erasure
            .purge("ana@example.coop", false, Actor::cli("maria@caixa"))
            .await
            .expect("again");
        assert_eq!(again.webhooks_cleared, 0, "{backend}");
        assert!(
            matches!(
                s.erasure
                    .purge("not an address", true, Actor::cli("x"))
                    .await,
                Err(domain::service::retention::RetentionError::NotAnEmail(_))
            ),
            "{backend}"
        );
    }
}

/// `needle` appears in the bytes of the database's files (the main file and its WAL).
fn in_files(path: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for suffix in ["", "-wal", "-journal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(bytes) = std::fs::read(&file)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(file.display().to_string());
        }
    }
    found
}

#[tokio::test]
async fn after_a_purge_the_sqlite_file_holds_no_copy_of_the_customer() {
    let db = TestDb::sqlite();
    let path = std::path::PathBuf::from(
        db.url
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .expect("path"),
    );
    let (database, inbox, _, _) = open(&db).await;
    let s = stores(&database, inbox).await;
    let email = "zeferina.quintanilla@example.coop";
    let name = "Zeferina Quintanilla";
    let mut big = order("z1", 9, email, name, Utc::now());
    // A body over a page, kept in overflow pages.
    big.body = Bytes::from(format!(
        r#"{{"id": 9, "billing": {{"email": "{email}", "first_name": "{name}"}}, "customer_note": "{}"}}"#,
        format!("{name} ").repeat(1000)
    ));
    s.inbox.record(big).await.expect("record");
    s.inbox
        .record(order("z2", 9, email, name, Utc::now()))
        .await
        .expect("record");
    s.inbox
        .record(order("o1", 10, "other@example.coop", "Other", Utc::now()))
        .await
        .expect("record");
    booked(&s.store, 9, name).await;
    // Everything in the main file first, as a long-running database would have it.
    database.reclaim(&[]).await.expect("checkpoint");
    assert!(
        !in_files(&path, name.as_bytes()).is_empty(),
        "the test looks where the data is"
    );

    s.erasure
        .purge(email, false, Actor::cli("test"))
        .await
        .expect("purge");
    database.reclaim(&[]).await.expect("reclaim");
    for needle in [email, name, "Zeferina"] {
        assert_eq!(
            in_files(&path, needle.as_bytes()),
            Vec::<String>::new(),
            "{needle:?} is still in the files"
        );
    }
    assert!(
        !in_files(&path, b"other@example.coop").is_empty(),
        "the other customer stays"
    );
}
