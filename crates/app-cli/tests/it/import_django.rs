//! `lazona import-django`: the original deployment's `api_shipment` rows (spec §7), from its
//! SQLite or Postgres database, become shipments here; a second run imports nothing, and an
//! imported (order, vendor) is never booked again.

use crate::support::{database, run, stdout_json};
use adapters::db::SqlShipmentStore;
use adapters::testing::{TestDb, postgres_admin_url, replace_db_name, unique};
use domain::model::{Claim, ShipmentMethod, ShipmentStatus};
use domain::ports::ShipmentStore;
use sea_orm::ConnectionTrait;

const SQLITE_SCHEMA: &str = "CREATE TABLE api_shipment (id integer NOT NULL PRIMARY KEY \
    AUTOINCREMENT, delivery_id varchar(100) NOT NULL, order_id integer NOT NULL, vendor_id \
    integer NOT NULL, label_url varchar(200) NOT NULL, status varchar(20) NOT NULL, method \
    varchar(20) NOT NULL, updated_at datetime NOT NULL, tracking_updated_at datetime NOT NULL, \
    tracking_status_created_at datetime NULL, req_body varchar(2000) NOT NULL, \
    delivery_message varchar(1000) NOT NULL, delivery_notes varchar(1000) NOT NULL)";

const POSTGRES_SCHEMA: &str = "CREATE TABLE api_shipment (id serial PRIMARY KEY, delivery_id \
    varchar(100) NOT NULL, order_id integer NOT NULL, vendor_id integer NOT NULL, label_url \
    varchar(200) NOT NULL, status varchar(20) NOT NULL, method varchar(20) NOT NULL, updated_at \
    timestamptz NOT NULL, tracking_updated_at timestamptz NOT NULL, tracking_status_created_at \
    timestamptz NULL, req_body varchar(2000) NOT NULL, delivery_message varchar(1000) NOT NULL, \
    delivery_notes varchar(1000) NOT NULL)";

/// Five rows as the original leaves them: a label, a local pickup, the same (order, vendor)
/// shipped twice by a repeated webhook, a crash right after `get_or_create`, a refused booking.
const ROWS: &str = "INSERT INTO api_shipment (delivery_id, order_id, vendor_id, label_url, \
    status, method, updated_at, tracking_updated_at, tracking_status_created_at, req_body, \
    delivery_message, delivery_notes) VALUES \
    ('BAR1', 33, 6, 'pdf_barcodes/123.pdf', 'IN_PROCESS', 'KOIKI', '2021-07-26 09:49:37.5+00:00', \
     '2021-07-26 09:49:37.5+00:00', '2021-07-26 07:09:21+00:00', '{''numPedido'': ''123''}', \
     'Envio en Reparto', 'Sin notas'), \
    ('', 33, 7, '', 'DELIVERED', 'LOCAL_PICKUP', '2021-07-26 09:00:00+00:00', \
     '2021-07-26 09:00:00+00:00', NULL, '', '', ''), \
    ('BAR2', 33, 6, 'pdf_barcodes/124.pdf', 'LABEL_SENT', 'KOIKI', '2021-07-26 10:00:00+00:00', \
     '2021-07-26 10:00:00+00:00', NULL, '', 'OK', ''), \
    ('', 34, 6, '', '', 'KOIKI', '2021-07-27 08:00:00+00:00', '2021-07-27 08:00:00+00:00', NULL, \
     '', '', ''), \
    ('', 35, 6, '', 'ERROR_FROM_BODY', 'KOIKI', '2021-07-28 08:00:00+00:00', \
     '2021-07-28 08:00:00+00:00', NULL, '{}', 'Falta el campo X', '')";

async fn django_source(kind: &str, dir: &std::path::Path) -> Option<String> {
    let (url, schema) = if kind == "sqlite" {
        let path = dir.join("django.sqlite3");
        (
            format!("sqlite://{}?mode=rwc", path.display()),
            SQLITE_SCHEMA,
        )
    } else {
        let admin = postgres_admin_url()?;
        let name = format!("django_{}", unique());
        let conn = sea_orm::Database::connect(&admin).await.expect("admin");
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        (replace_db_name(&admin, &name), POSTGRES_SCHEMA)
    };
    let conn = sea_orm::Database::connect(&url).await.expect("django db");
    conn.execute_unprepared(schema).await.expect("schema");
    conn.execute_unprepared(ROWS).await.expect("rows");
    conn.close().await.expect("close");
    Some(url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_originals_shipments_are_imported_once_and_never_booked_again() {
    for source in ["sqlite", "postgres"] {
        let media = tempfile::tempdir().expect("tempdir");
        let Some(from) = django_source(source, media.path()).await else {
            continue;
        };
        std::fs::create_dir_all(media.path().join("pdf_barcodes")).expect("mkdir");
        std::fs::write(media.path().join("pdf_barcodes/123.pdf"), b"%PDF-1.4 BAR1").expect("pdf");
        let labels = media.path().to_str().expect("path").to_owned();

        let db = TestDb::sqlite();
        let target = database(&db.url).await;
        let store = SqlShipmentStore::new(target.clone());

        let dry = stdout_json(
            &run(
                &db.url,
                &[
                    "import-django",
                    "--from",
                    &from,
                    "--labels-dir",
                    &labels,
                    "--dry-run",
                    "--json",
                ],
            )
            .await,
        );
        assert_eq!(dry["imported"], 4, "{source}: {dry}");
        assert!(
            store.of_order(33).await.expect("rows").is_empty(),
            "{source}: dry"
        );

        let report = stdout_json(
            &run(
                &db.url,
                &[
                    "import-django",
                    "--from",
                    &from,
                    "--labels-dir",
                    &labels,
                    "--json",
                ],
            )
            .await,
        );
        assert_eq!(
            report,
            serde_json::json!({"read": 5, "imported": 4, "already_here": 0, "duplicates": 1,
                               "labels": 1, "unknown_status": 1}),
            "{source}"
        );
        let rows = store.of_order(33).await.expect("rows");
        let koiki = rows.iter().find(|s| s.vendor_id == 6).expect("vendor 6");
        assert_eq!(
            koiki.status,
            ShipmentStatus::InProcess,
            "{source}: the first row wins"
        );
        assert_eq!(koiki.delivery_id, "BAR1", "{source}");
        assert_eq!(koiki.message, "Envio en Reparto", "{source}");
        assert_eq!(koiki.notes, "Sin notas", "{source}");
        assert!(
            koiki.mailed_at.is_some(),
            "{source}: the original mailed it"
        );
        assert_eq!(
            koiki.tracking_status_created_at.as_deref(),
            Some("2021-07-26T07:09:21+00:00"),
            "{source}"
        );
        assert_eq!(
            store.label(koiki.id).await.expect("label").as_deref(),
            Some(&b"%PDF-1.4 BAR1"[..]),
            "{source}"
        );
        let pickup = rows.iter().find(|s| s.vendor_id == 7).expect("vendor 7");
        assert_eq!(
            (pickup.method, pickup.status),
            (ShipmentMethod::LocalPickup, ShipmentStatus::Delivered),
            "{source}"
        );
        let crashed = store.of_order(34).await.expect("rows");
        assert_eq!(crashed[0].status, ShipmentStatus::Booking, "{source}");
        assert!(crashed[0].mailed_at.is_none(), "{source}");
        // The tracking poll picks up what the original was following.
        let to_track: Vec<i64> = store
            .to_track()
            .await
            .expect("to track")
            .iter()
            .map(|s| s.order_id)
            .collect();
        assert_eq!(to_track, vec![33], "{source}");

        let again = stdout_json(&run(&db.url, &["import-django", "--from", &from, "--json"]).await);
        assert_eq!(again["imported"], 0, "{source}: idempotent");
        assert_eq!(again["already_here"], 4, "{source}");
        assert!(
            matches!(
                store
                    .claim(33, 6, ShipmentMethod::Koiki)
                    .await
                    .expect("claim"),
                Claim::Exists(_)
            ),
            "{source}: an order the original shipped is never booked again"
        );
    }
}
