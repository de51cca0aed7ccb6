//! The operations API (`/api/v1/`) through real HTTP on SQLite and Postgres: every endpoint
//! refuses a missing, wrong or revoked token and keeps vendors apart; admins list, filter and
//! page through webhooks, shipments and dead jobs; actions enqueue the right job or are refused
//! 409; the OpenAPI document is valid and matches the routes.

use crate::helpers::{TestApp, TestDb, settings, sign};
use adapters::db::{SqlJobQueue, SqlShipmentStore, SqlTokenStore};
use domain::model::{
    BookingOutcome, Claim, HeldBooking, JobKind, NewJob, Principal, ShipmentMethod, ShipmentStatus,
    WebhookId, WebhookStatus,
};
use domain::ports::{JobQueue, ShipmentStore, TokenStore, WebhookInbox};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// A server without a worker (jobs stay where the API put them), with tokens.
struct Api {
    app: TestApp,
    admin: String,
    vendor6: String,
    vendor7: String,
    revoked: String,
    store: SqlShipmentStore,
}

impl Api {
    async fn start(db: &TestDb) -> Self {
        let app = TestApp::spawn(&settings(&db.url, &[("worker.embedded", "false")])).await;
        let tokens = SqlTokenStore::new(app.running.db.clone());
        let secret = |p: Principal, name: &'static str| {
            let tokens = tokens.clone();
            async move {
                let (_, s) = tokens.create(name, p).await.expect("token");
                s.expose().to_owned()
            }
        };
        let admin = secret(Principal::Admin, "admin").await;
        let vendor6 = secret(Principal::Vendor { vendor_id: 6 }, "six").await;
        let vendor7 = secret(Principal::Vendor { vendor_id: 7 }, "seven").await;
        let (gone, revoked) = tokens
            .create("gone", Principal::Admin)
            .await
            .expect("token");
        tokens.revoke(gone.id).await.expect("revoke");
        let store = SqlShipmentStore::new(app.running.db.clone());
        Api {
            app,
            admin,
            vendor6,
            vendor7,
            revoked: revoked.expose().to_owned(),
            store,
        }
    }

    async fn call(&self, method: Method, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self.app.client.request(method, self.app.url(path));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.send().await.expect("request sent")
    }

    /// Status and JSON body of a call with a bearer token.
    async fn json(&self, method: Method, path: &str, token: &str) -> (u16, Value) {
        let resp = self
            .call(method, path, Some(&format!("Bearer {token}")))
            .await;
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.expect("JSON body");
        (status, body)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.json(Method::GET, path, &self.admin).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn shipment(
        &self,
        order: i64,
        vendor: i64,
        method: ShipmentMethod,
        status: ShipmentStatus,
        barcode: &str,
        label: Option<&[u8]>,
    ) -> i64 {
        let Claim::Claimed(s) = self
            .store
            .claim(order, vendor, method)
            .await
            .expect("claim")
        else {
            panic!("a new shipment")
        };
        self.store
            .record_booking(
                s.id,
                0,
                &BookingOutcome {
                    status,
                    delivery_id: barcode.into(),
                    request: "{\"numPedido\": \"x\"}".into(),
                    message: "answer".into(),
                    label_pdf: label.map(<[u8]>::to_vec),
                },
            )
            .await
            .expect("record");
        s.id
    }

    /// Posts a signed webhook with a topic; returns its inbox id.
    async fn webhook(&self, path: &str, body: &str, topic: &str) -> i64 {
        let resp = self
            .app
            .client
            .post(self.app.url(path))
            .header("content-type", "application/json")
            .header("x-wc-webhook-signature", sign(body.as_bytes()))
            .header("x-wc-webhook-topic", topic)
            .header(
                "x-wc-webhook-delivery-id",
                adapters::testing::unique().as_str(),
            )
            .body(body.to_owned())
            .send()
            .await
            .expect("sent");
        let answer: Value = resp.json().await.expect("json");
        answer["webhook_id"]
            .as_i64()
            .or_else(|| answer["error"]["webhook_id"].as_i64())
            .unwrap_or_else(|| panic!("a webhook id in {answer}"))
    }

    /// Marks the queued webhook `id` processed, as its worker would.
    async fn processed(&self, id: i64) {
        let moved = self
            .app
            .running
            .inbox
            .transition(
                WebhookId(id),
                WebhookStatus::Queued,
                WebhookStatus::Processed,
                None,
            )
            .await
            .expect("processed");
        assert!(moved, "webhook {id} was queued");
    }

    /// Dead-letters `n` no-op jobs (call before anything else is queued); their ids.
    async fn dead_jobs(&self, n: u64) -> Vec<i64> {
        let queue = SqlJobQueue::new(self.app.running.db.clone());
        for tag in 0..n {
            queue
                .enqueue(NewJob {
                    kind: JobKind::Noop { tag },
                    run_at: None,
                })
                .await
                .expect("enqueue");
        }
        let jobs = queue
            .reserve(100, Duration::from_secs(60), Duration::ZERO)
            .await
            .expect("reserve");
        assert_eq!(jobs.len() as u64, n, "only the no-ops are queued");
        let mut ids = Vec::new();
        for job in &jobs {
            queue.dead_letter(job, "gave up").await.expect("dead");
            ids.push(job.id.0);
        }
        ids.sort_unstable();
        ids
    }

    /// The job with this id, as enqueued.
    async fn job(&self, id: i64) -> JobKind {
        let row = sea_orm::ConnectionTrait::query_one_raw(
            self.app.running.db.conn(),
            sea_orm::Statement::from_string(
                self.app.running.db.backend(),
                format!("SELECT payload FROM jobs WHERE id = {id}"),
            ),
        )
        .await
        .expect("query")
        .unwrap_or_else(|| panic!("job {id} exists"));
        let payload: String = row.try_get_by_index(0).expect("payload");
        serde_json::from_str(&payload).expect("a job")
    }

    async fn jobs(&self) -> i64 {
        self.app.count("SELECT COUNT(*) FROM jobs").await
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_i64().expect("id"))
        .collect()
}

/// Follows `next_cursor` from `first` (a path with `?`) to the end; every id seen, in order.
async fn all_pages(api: &Api, first: &str) -> (Vec<i64>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut page = api.get(first).await;
    loop {
        pages += 1;
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => page = api.get(&format!("{first}&cursor={cursor}")).await,
            None => break,
        }
    }
    (seen, pages)
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, context: &str) {
    assert_eq!(status, want_status, "{context}: {body}");
    assert_eq!(body["error"]["code"], code, "{context}: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{context}: a message in {body}"
    );
}

#[tokio::test]
async fn every_endpoint_refuses_missing_wrong_and_revoked_tokens_and_keeps_vendors_apart() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let dead = api.dead_jobs(1).await[0];
        let own = api
            .shipment(
                33,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::ErrorFromBody,
                "BAR6",
                Some(b"%PDF-1.4 six"),
            )
            .await;
        let webhook = api
            .webhook("/api/deliveries/", &helpers_order(33), "order.created")
            .await;
        api.processed(webhook).await;

        // (method, path, who else than the admin sees it: vendor-visible or admin-only)
        let endpoints: Vec<(Method, String, bool)> = vec![
            (Method::GET, "/api/v1/webhooks".into(), false),
            (Method::GET, format!("/api/v1/webhooks/{webhook}"), false),
            (
                Method::POST,
                format!("/api/v1/webhooks/{webhook}/replay"),
                false,
            ),
            (Method::GET, "/api/v1/shipments".into(), true),
            (Method::GET, format!("/api/v1/shipments/{own}"), true),
            (Method::GET, format!("/api/v1/shipments/{own}/label"), true),
            (
                Method::POST,
                format!("/api/v1/shipments/{own}/retry"),
                false,
            ),
            (
                Method::POST,
                format!("/api/v1/shipments/{own}/track"),
                false,
            ),
            (Method::GET, "/api/v1/dead".into(), false),
            (Method::POST, format!("/api/v1/dead/{dead}/requeue"), false),
            (Method::GET, "/api/v1/audit".into(), false),
            (Method::POST, "/api/v1/purge".into(), false),
        ];
        let jobs_before = api.jobs().await;
        for (method, path, vendor_visible) in &endpoints {
            let context = format!("{backend} {method} {path}");
            for auth in [
                None,
                Some("Bearer lzn_not-a-token".to_owned()),
                Some(format!("Basic {}", api.admin)),
                Some("Bearer".to_owned()),
                Some(format!("Bearer {}", api.revoked)),
            ] {
                let resp = api.call(method.clone(), path, auth.as_deref()).await;
                let status = resp.status().as_u16();
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap_or_default().to_owned());
                let body: Value = resp.json().await.expect("json");
                assert_error(
                    status,
                    &body,
                    401,
                    "unauthorized",
                    &format!("{context} {auth:?}"),
                );
                assert!(
                    challenge.is_some_and(|c| c.starts_with("Bearer")),
                    "{context}: a Bearer challenge"
                );
            }
            let (status, body) = api.json(method.clone(), path, &api.vendor7).await;
            if !vendor_visible {
                assert_error(
                    status,
                    &body,
                    403,
                    "forbidden",
                    &format!("{context} vendor 7"),
                );
                let (status, body) = api.json(method.clone(), path, &api.vendor6).await;
                assert_error(
                    status,
                    &body,
                    403,
                    "forbidden",
                    &format!("{context} vendor 6"),
                );
            } else if path == "/api/v1/shipments" {
                assert_eq!(status, 200, "{context}");
                assert_eq!(
                    ids(&body),
                    Vec::<i64>::new(),
                    "{context}: none of vendor 7's"
                );
            } else {
                assert_error(
                    status,
                    &body,
                    404,
                    "not_found",
                    &format!("{context} vendor 7"),
                );
                // Exactly as for a shipment that does not exist.
                let missing = path.replace(&format!("/{own}"), "/999999");
                let (_, nothing) = api.json(method.clone(), &missing, &api.vendor7).await;
                assert_eq!(
                    body["error"]["message"]
                        .as_str()
                        .map(|m| m.replace(&own.to_string(), "N")),
                    nothing["error"]["message"]
                        .as_str()
                        .map(|m| m.replace("999999", "N")),
                    "{context}: another vendor's shipment looks missing"
                );
            }
        }
        assert_eq!(
            api.jobs().await,
            jobs_before,
            "{backend}: nothing refused was enqueued"
        );

        // The owner sees their shipment and label; the admin sees everything.
        let (status, body) = api
            .json(
                Method::GET,
                &format!("/api/v1/shipments/{own}"),
                &api.vendor6,
            )
            .await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert_eq!(body["vendor_id"], 6, "{backend}");
        let label = api
            .call(
                Method::GET,
                &format!("/api/v1/shipments/{own}/label"),
                Some(&format!("Bearer {}", api.vendor6)),
            )
            .await;
        assert_eq!(label.status(), 200, "{backend}");
        assert_eq!(
            label.headers()["content-type"],
            "application/pdf",
            "{backend}"
        );
        assert_eq!(
            label.bytes().await.expect("pdf").as_ref(),
            b"%PDF-1.4 six",
            "{backend}"
        );
        // (The purge needs a body: its own test below.)
        for (method, path, _) in endpoints.iter().filter(|(_, p, _)| p != "/api/v1/purge") {
            let resp = api
                .call(method.clone(), path, Some(&format!("Bearer {}", api.admin)))
                .await;
            assert!(
                resp.status().is_success(),
                "{backend} {method} {path}: the admin gets {}",
                resp.status()
            );
        }
        api.app.stop().await;
    }
}

/// A minimal order body for `id`.
fn helpers_order(id: i64) -> String {
    json!({ "id": id, "status": "processing", "line_items": [], "shipping_lines": [] }).to_string()
}

#[tokio::test]
async fn admins_list_filter_page_and_read_webhooks() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let first = api
            .webhook("/api/deliveries/", &helpers_order(101), "order.created")
            .await;
        let updated = api
            .webhook("/api/deliveries/", &helpers_order(102), "order.updated")
            .await;
        let third = api
            .webhook("/api/deliveries/", &helpers_order(103), "order.created")
            .await;
        let customer = api
            .webhook(
                "/api/customers/",
                &json!({ "id": 9, "email": "a@example.coop" }).to_string(),
                "customer.created",
            )
            .await;
        let rejected = api
            .webhook("/api/deliveries/", "not json at all", "order.created")
            .await;
        let everything = vec![rejected, customer, third, updated, first];

        let (seen, pages) = all_pages(&api, "/api/v1/webhooks?limit=2").await;
        assert_eq!(seen, everything, "{backend}: newest first, each once");
        assert_eq!(pages, 3, "{backend}");
        let (seen, _) = all_pages(&api, &format!("/api/v1/webhooks?limit=2&before={third}")).await;
        assert_eq!(seen, vec![updated, first], "{backend}: before an id");

        for (query, want) in [
            ("resource=customer", vec![customer]),
            ("status=rejected", vec![rejected]),
            ("topic=order.updated", vec![updated]),
            ("subject=103", vec![third]),
            ("resource=order&status=queued", vec![third, updated, first]),
            ("since=2999-01-01T00:00:00Z", vec![]),
            ("until=2999-01-01T00:00:00Z", everything.clone()),
        ] {
            let page = api.get(&format!("/api/v1/webhooks?{query}")).await;
            assert_eq!(ids(&page), want, "{backend}: {query}");
            assert!(page["next_cursor"].is_null(), "{backend}: {query}");
        }
        let row = &api.get("/api/v1/webhooks?subject=102").await["items"][0];
        assert_eq!(row["topic"], "order.updated", "{backend}");
        assert_eq!(row["resource"], "order", "{backend}");
        assert_eq!(row["status"], "queued", "{backend}");

        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=501", "limit"),
            ("limit=ten", "limit"),
            ("status=lost", "status"),
            ("resource=product", "resource"),
            ("subject=abc", "subject"),
            ("since=yesterday", "since"),
            ("cursor=garbage", "cursor"),
            ("before=1&cursor=x", "cursor"),
            ("stauts=queued", "stauts"),
        ] {
            let (status, body) = api
                .json(
                    Method::GET,
                    &format!("/api/v1/webhooks?{query}"),
                    &api.admin,
                )
                .await;
            assert_error(
                status,
                &body,
                400,
                "invalid_parameter",
                &format!("{backend} {query}"),
            );
            assert_eq!(body["error"]["field"], field, "{backend}: {query}");
        }
        // A shipments cursor is not a webhooks cursor.
        let shipments_cursor = {
            let a = api
                .shipment(
                    1,
                    6,
                    ShipmentMethod::Koiki,
                    ShipmentStatus::LabelSent,
                    "",
                    None,
                )
                .await;
            api.shipment(
                2,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::LabelSent,
                "",
                None,
            )
            .await;
            let page = api.get("/api/v1/shipments?limit=1").await;
            assert!(a > 0);
            page["next_cursor"].as_str().expect("a cursor").to_owned()
        };
        let (status, body) = api
            .json(
                Method::GET,
                &format!("/api/v1/webhooks?cursor={shipments_cursor}"),
                &api.admin,
            )
            .await;
        assert_error(status, &body, 400, "invalid_parameter", backend);

        let one = api.get(&format!("/api/v1/webhooks/{updated}")).await;
        assert_eq!(one["id"], updated, "{backend}");
        assert_eq!(one["topic"], "order.updated", "{backend}");
        assert_eq!(one["body_is_json"], true, "{backend}");
        assert_eq!(one["body"]["id"], 102, "{backend}: the body as JSON");
        assert!(
            one["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .any(|h| h["name"] == "x-wc-webhook-topic" && h["value"] == "order.updated"),
            "{backend}: {one}"
        );
        assert!(one["history"].is_array(), "{backend}");
        let bad = api.get(&format!("/api/v1/webhooks/{rejected}")).await;
        assert_eq!(bad["body_is_json"], false, "{backend}");
        assert_eq!(
            bad["body"], "not json at all",
            "{backend}: the body as text"
        );
        assert_eq!(bad["status"], "rejected", "{backend}");

        let (status, body) = api
            .json(Method::GET, "/api/v1/webhooks/999999", &api.admin)
            .await;
        assert_error(status, &body, 404, "not_found", backend);
        let (status, body) = api
            .json(Method::GET, "/api/v1/webhooks/abc", &api.admin)
            .await;
        assert_error(status, &body, 400, "invalid_parameter", backend);
        assert_eq!(body["error"]["field"], "id", "{backend}");
        let (status, body) = api.json(Method::GET, "/api/v1/nothing", &api.admin).await;
        assert_error(status, &body, 404, "not_found", backend);
        api.app.stop().await;
    }
}

#[tokio::test]
async fn shipments_are_listed_filtered_and_paged_and_vendors_see_only_theirs() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let pdf: &[u8] = b"%PDF-1.4 label";
        let a = api
            .shipment(
                33,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::LabelSent,
                "BAR1",
                Some(pdf),
            )
            .await;
        let b = api
            .shipment(
                34,
                7,
                ShipmentMethod::Koiki,
                ShipmentStatus::LabelSent,
                "BAR2",
                Some(pdf),
            )
            .await;
        let c = api
            .shipment(
                35,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::ErrorFromBody,
                "",
                None,
            )
            .await;

        let (seen, pages) = all_pages(&api, "/api/v1/shipments?limit=2").await;
        assert_eq!(seen, vec![c, b, a], "{backend}: newest first");
        assert_eq!(pages, 2, "{backend}");
        for (query, want) in [
            ("vendor=7", vec![b]),
            ("order=33", vec![a]),
            ("status=label_sent", vec![b, a]),
            ("status=ERROR_FROM_BODY", vec![c]),
            ("barcode=BAR2", vec![b]),
            ("vendor=6&status=LABEL_SENT", vec![a]),
        ] {
            let page = api.get(&format!("/api/v1/shipments?{query}")).await;
            assert_eq!(ids(&page), want, "{backend}: {query}");
        }
        let (status, body) = api
            .json(Method::GET, "/api/v1/shipments?status=LOST", &api.admin)
            .await;
        assert_error(status, &body, 400, "invalid_parameter", backend);
        assert_eq!(body["error"]["field"], "status", "{backend}");

        // Vendor 6 sees their two, whatever the filters say.
        let (status, page) = api
            .json(Method::GET, "/api/v1/shipments", &api.vendor6)
            .await;
        assert_eq!(status, 200, "{backend}");
        assert_eq!(ids(&page), vec![c, a], "{backend}");
        let (_, page) = api
            .json(Method::GET, "/api/v1/shipments?vendor=7", &api.vendor6)
            .await;
        assert_eq!(ids(&page), Vec::<i64>::new(), "{backend}");
        let (_, page) = api
            .json(Method::GET, "/api/v1/shipments?barcode=BAR2", &api.vendor6)
            .await;
        assert_eq!(ids(&page), Vec::<i64>::new(), "{backend}");
        let (_, page) = api
            .json(Method::GET, "/api/v1/shipments?limit=1", &api.vendor6)
            .await;
        let cursor = page["next_cursor"].as_str().expect("cursor").to_owned();
        let (_, page) = api
            .json(
                Method::GET,
                &format!("/api/v1/shipments?limit=1&cursor={cursor}"),
                &api.vendor6,
            )
            .await;
        assert_eq!(ids(&page), vec![a], "{backend}: vendors page too");

        let (status, one) = api
            .json(Method::GET, &format!("/api/v1/shipments/{a}"), &api.vendor6)
            .await;
        assert_eq!(status, 200, "{backend}");
        assert_eq!(one["barcode"], "BAR1", "{backend}");
        assert_eq!(one["has_label"], true, "{backend}");
        assert_eq!(one["request"], "{\"numPedido\": \"x\"}", "{backend}");
        let (status, _) = api
            .json(Method::GET, &format!("/api/v1/shipments/{b}"), &api.vendor6)
            .await;
        assert_eq!(status, 404, "{backend}: vendor 7's");

        let label = api
            .call(
                Method::GET,
                &format!("/api/v1/shipments/{a}/label"),
                Some(&format!("Bearer {}", api.vendor6)),
            )
            .await;
        assert_eq!(label.status(), 200, "{backend}");
        assert_eq!(
            label.headers()["content-disposition"],
            "attachment; filename=\"BAR1.pdf\"",
            "{backend}"
        );
        assert_eq!(label.bytes().await.expect("pdf").as_ref(), pdf, "{backend}");
        for (token, id) in [
            (&api.vendor6, b),
            (&api.vendor6, c),
            (&api.admin, c),
            (&api.admin, 999_999),
        ] {
            let (status, body) = api
                .json(Method::GET, &format!("/api/v1/shipments/{id}/label"), token)
                .await;
            assert_error(
                status,
                &body,
                404,
                "not_found",
                &format!("{backend} label {id}"),
            );
        }
        api.app.stop().await;
    }
}

#[tokio::test]
async fn actions_enqueue_their_jobs_and_unsafe_ones_are_refused_409() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let dead = api.dead_jobs(3).await;
        let booked = api
            .shipment(
                41,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::LabelSent,
                "BAR1",
                None,
            )
            .await;
        let refused = api
            .shipment(
                42,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::ErrorFromBody,
                "",
                None,
            )
            .await;
        let pickup = api
            .shipment(
                43,
                6,
                ShipmentMethod::LocalPickup,
                ShipmentStatus::Delivered,
                "",
                None,
            )
            .await;
        let post = |path: String| {
            let api = &api;
            async move { api.json(Method::POST, &path, &api.admin).await }
        };

        // Retry.
        let (status, body) = post(format!("/api/v1/shipments/{booked}/retry")).await;
        assert_error(status, &body, 409, "refused", backend);
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("BAR1") && message.contains("force=true"),
            "{backend}: {message}"
        );
        let (status, body) = post(format!("/api/v1/shipments/{booked}/retry?force=true")).await;
        assert_eq!(status, 202, "{backend}: {body}");
        assert_eq!(body["job"], "retry_shipment", "{backend}");
        assert_eq!(
            api.job(body["job_id"].as_i64().expect("job id")).await,
            JobKind::RetryShipment {
                shipment_id: booked,
                force: true,
                held: Some(HeldBooking {
                    attempt: 1,
                    previous: ShipmentStatus::LabelSent
                }),
            },
            "{backend}"
        );
        // The same again (a double click, a second operator) while that booking is pending:
        // refused, forced or not; one booking in flight per shipment.
        let (status, body) = post(format!("/api/v1/shipments/{booked}/retry?force=true")).await;
        assert_error(
            status,
            &body,
            409,
            "refused",
            &format!("{backend} in flight"),
        );
        let (status, body) = post(format!("/api/v1/shipments/{refused}/retry")).await;
        assert_eq!(status, 202, "{backend}: {body}");
        assert_eq!(
            api.job(body["job_id"].as_i64().expect("job id")).await,
            JobKind::RetryShipment {
                shipment_id: refused,
                force: false,
                held: Some(HeldBooking {
                    attempt: 1,
                    previous: ShipmentStatus::ErrorFromBody
                }),
            },
            "{backend}"
        );
        let (status, body) = post(format!("/api/v1/shipments/{pickup}/retry?force=true")).await;
        assert_error(status, &body, 409, "refused", &format!("{backend} pickup"));
        let (status, body) = post("/api/v1/shipments/999999/retry".into()).await;
        assert_error(status, &body, 404, "not_found", backend);
        let (status, body) = post(format!("/api/v1/shipments/{booked}/retry?force=maybe")).await;
        assert_error(status, &body, 400, "invalid_parameter", backend);
        assert_eq!(body["error"]["field"], "force", "{backend}");

        // Track.
        let (status, body) = post(format!("/api/v1/shipments/{refused}/track")).await;
        assert_error(
            status,
            &body,
            409,
            "refused",
            &format!("{backend} no barcode"),
        );
        let (status, body) = post(format!("/api/v1/shipments/{booked}/track")).await;
        assert_eq!(status, 202, "{backend}: {body}");
        assert_eq!(
            api.job(body["job_id"].as_i64().expect("job id")).await,
            JobKind::TrackShipment {
                shipment_id: booked
            },
            "{backend}"
        );

        // Replay.
        let webhook = api
            .webhook("/api/deliveries/", &helpers_order(41), "order.created")
            .await;
        let (status, body) = post(format!("/api/v1/webhooks/{webhook}/replay")).await;
        assert_error(status, &body, 409, "refused", &format!("{backend} queued"));
        api.processed(webhook).await;
        let (status, body) = post(format!("/api/v1/webhooks/{webhook}/replay")).await;
        assert_eq!(status, 202, "{backend}: {body}");
        assert_eq!(
            api.job(body["job_id"].as_i64().expect("job id")).await,
            JobKind::ProcessWebhook {
                webhook_id: WebhookId(webhook)
            },
            "{backend}"
        );
        assert!(body.get("retry_job_ids").is_none(), "{backend}: {body}");
        let shown = api.get(&format!("/api/v1/webhooks/{webhook}")).await;
        assert_eq!(shown["status"], "queued", "{backend}");
        assert!(
            shown["history"]
                .as_array()
                .expect("history")
                .iter()
                .any(|h| h["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("replayed by token admin (#"))),
            "{backend}: {shown}"
        );
        api.processed(webhook).await;
        // The forced retry above is done (as its worker would leave it, nothing booked): a
        // forced replay books the order's shipment again.
        assert!(
            api.store
                .end_booking(booked, 1, ShipmentStatus::LabelSent)
                .await
                .expect("end"),
            "{backend}"
        );
        let (status, body) = post(format!("/api/v1/webhooks/{webhook}/replay?force=true")).await;
        assert_eq!(status, 202, "{backend}: {body}");
        let retries = body["retry_job_ids"].as_array().expect("retry jobs");
        assert_eq!(retries.len(), 1, "{backend}: order 41's booked shipment");
        assert_eq!(
            api.job(retries[0].as_i64().expect("id")).await,
            JobKind::RetryShipment {
                shipment_id: booked,
                force: true,
                held: Some(HeldBooking {
                    attempt: 2,
                    previous: ShipmentStatus::LabelSent
                }),
            },
            "{backend}"
        );
        let (status, body) = post("/api/v1/webhooks/999999/replay".into()).await;
        assert_error(status, &body, 404, "not_found", backend);

        // Dead jobs.
        let (seen, pages) = all_pages(&api, "/api/v1/dead?limit=2").await;
        let mut newest_first = dead.clone();
        newest_first.reverse();
        assert_eq!(seen, newest_first, "{backend}");
        assert_eq!(pages, 2, "{backend}");
        let page = api.get("/api/v1/dead").await;
        assert_eq!(page["items"][0]["job"], "noop", "{backend}");
        assert_eq!(page["items"][0]["error"], "gave up", "{backend}");
        assert_eq!(page["items"][0]["payload"]["kind"], "noop", "{backend}");
        assert_eq!(
            ids(&api.get("/api/v1/dead?job=retry_shipment").await),
            Vec::<i64>::new(),
            "{backend}"
        );
        let (status, body) = post(format!("/api/v1/dead/{}/requeue", dead[0])).await;
        assert_eq!(status, 202, "{backend}: {body}");
        assert_eq!(body["job_id"], dead[0], "{backend}");
        assert_eq!(body["job"], "noop", "{backend}");
        assert_eq!(
            ids(&api.get("/api/v1/dead").await),
            vec![dead[2], dead[1]],
            "{backend}: requeued"
        );
        let (status, body) = post(format!("/api/v1/dead/{}/requeue", dead[0])).await;
        assert_error(status, &body, 404, "not_found", &format!("{backend} again"));
        let (status, body) = post("/api/v1/dead/x/requeue".into()).await;
        assert_error(status, &body, 400, "invalid_parameter", backend);
        api.app.stop().await;
    }
}

/// Two forced retries of one shipment at the same moment (two operators, a double click on the
/// dashboard): one is accepted, the other refused, and one job is enqueued: the carrier is asked
/// for one parcel.
#[tokio::test]
async fn two_simultaneous_forced_retries_enqueue_one_booking() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let id = api
            .shipment(
                51,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::LabelSent,
                "BAR51",
                Some(b"%PDF"),
            )
            .await;
        let path = format!("/api/v1/shipments/{id}/retry?force=true");
        let mut answers = Vec::new();
        for _ in 0..5 {
            let (a, b) = tokio::join!(
                api.json(Method::POST, &path, &api.admin),
                api.json(Method::POST, &path, &api.admin)
            );
            answers.push(a.0);
            answers.push(b.0);
        }
        answers.sort_unstable();
        assert_eq!(
            answers,
            [202, 409, 409, 409, 409, 409, 409, 409, 409, 409],
            "{backend}"
        );
        assert_eq!(
            api.app
                .count("SELECT COUNT(*) FROM jobs WHERE kind = 'retry_shipment'")
                .await,
            1,
            "{backend}"
        );
        api.app.stop().await;
    }
}

/// A shipment booked again keeps the parcel it replaced: the API lists it among its past
/// bookings (in the shipment, not in listings).
#[tokio::test]
async fn a_shipment_shows_the_bookings_it_no_longer_holds() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let id = api
            .shipment(
                52,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::LabelSent,
                "OLD52",
                Some(b"%PDF-old"),
            )
            .await;
        let taken = api
            .store
            .reserve_booking(id, ShipmentStatus::LabelSent, 0, chrono::Utc::now())
            .await
            .expect("reserve")
            .expect("taken");
        api.store
            .record_booking(
                id,
                taken.booking_attempt,
                &BookingOutcome {
                    status: ShipmentStatus::LabelSent,
                    delivery_id: "NEW52".into(),
                    request: "{}".into(),
                    message: "OK".into(),
                    label_pdf: Some(b"%PDF-new".to_vec()),
                },
            )
            .await
            .expect("record");
        let shown = api.get(&format!("/api/v1/shipments/{id}")).await;
        assert_eq!(shown["barcode"], "NEW52", "{backend}");
        assert_eq!(shown["booking_attempt"], 1, "{backend}");
        let past = &shown["past_bookings"];
        assert_eq!(past.as_array().map(Vec::len), Some(1), "{backend}: {shown}");
        assert_eq!(past[0]["barcode"], "OLD52", "{backend}");
        assert_eq!(past[0]["reason"], "superseded", "{backend}");
        assert_eq!(past[0]["has_label"], true, "{backend}");
        let listed = api.get("/api/v1/shipments").await;
        assert!(
            listed["items"][0].get("past_bookings").is_none(),
            "{backend}"
        );
        api.app.stop().await;
    }
}

/// `POST /api/v1/purge`: a non-email is 400 naming the field, a dry run changes nothing, a purge
/// clears one customer's webhooks (the other's stay), refuses their replay, and is recorded in
/// the audit log under the e-mail's hash.
#[tokio::test]
async fn an_admin_purges_one_customer_through_the_api_and_it_is_recorded() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let order = |id: i64, email: &str| {
            format!(
                r#"{{"id": {id}, "status": "pending", "billing": {{"email": "{email}", "phone": "600"}}, "shipping": {{"first_name": "Nom {id}"}}}}"#
            )
        };
        let ana = api
            .webhook(
                "/api/deliveries/",
                &order(41, "ana@example.coop"),
                "order.created",
            )
            .await;
        let bob = api
            .webhook(
                "/api/deliveries/",
                &order(42, "bob@example.coop"),
                "order.created",
            )
            .await;
        let purge = |body: Value| {
            let req = api
                .app
                .client
                .post(api.app.url("/api/v1/purge"))
                .header("authorization", format!("Bearer {}", api.admin))
                .json(&body);
            async move {
                let resp = req.send().await.expect("sent");
                let status = resp.status().as_u16();
                (status, resp.json::<Value>().await.expect("json"))
            }
        };
        for bad in [
            json!({"email": "not an address"}),
            json!({"email": ""}),
            json!({"email": "ana@example.coop", "extra": 1}),
            json!({"dry_run": true}),
            json!(["ana@example.coop"]),
        ] {
            let (status, body) = purge(bad.clone()).await;
            assert_eq!(status, 400, "{backend} {bad}: {body}");
        }
        let (status, dry) = purge(json!({"email": "ANA@example.coop", "dry_run": true})).await;
        assert_eq!(status, 200, "{backend}: {dry}");
        assert_eq!(dry["webhook_ids"], json!([ana]), "{backend}");
        assert_eq!(dry["webhooks_cleared"], 1, "{backend}");
        let shown = api.get(&format!("/api/v1/webhooks/{ana}")).await;
        assert!(
            shown["pruned"].is_null(),
            "{backend}: a dry run changes nothing"
        );

        let (status, done) = purge(json!({"email": "ana@example.coop"})).await;
        assert_eq!(status, 200, "{backend}: {done}");
        assert_eq!(done["webhooks_cleared"], 1, "{backend}");
        let shown = api.get(&format!("/api/v1/webhooks/{ana}")).await;
        assert!(
            shown["pruned"]
                .as_str()
                .is_some_and(|p| p.contains("erased")),
            "{backend}: {shown}"
        );
        assert_eq!(shown["body"], "", "{backend}");
        let other = api.get(&format!("/api/v1/webhooks/{bob}")).await;
        assert!(other["pruned"].is_null(), "{backend}");
        assert_eq!(
            other["body"]["billing"]["email"], "bob@example.coop",
            "{backend}"
        );
        let listed = api.get("/api/v1/webhooks").await;
        assert_eq!(
            ids(&listed).len(),
            2,
            "{backend}: the list still shows both"
        );

        let (status, body) = api
            .json(
                Method::POST,
                &format!("/api/v1/webhooks/{ana}/replay"),
                &api.admin,
            )
            .await;
        assert_error(status, &body, 409, "refused", &format!("{backend} replay"));
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("nothing to replay")),
            "{backend}: {body}"
        );

        use domain::ports::AuditLog as _;
        let audit = adapters::db::SqlAuditLog::new(api.app.running.db.clone())
            .list(&domain::model::AuditFilter::default())
            .await
            .expect("audit");
        assert_eq!(audit.len(), 1, "{backend}: the dry run is not recorded");
        assert_eq!(
            audit[0].data.subject,
            format!(
                "customer:{}",
                domain::service::retention::email_hash("ana@example.coop")
            ),
            "{backend}"
        );
        assert_eq!(
            audit[0].data.actor.via,
            domain::model::ActorVia::Api,
            "{backend}"
        );
        api.app.stop().await;
    }
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_matches_the_routes() {
    let db = TestDb::sqlite();
    let api = Api::start(&db).await;
    let resp = api.call(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(resp.status(), 200, "the document needs no token");
    let text = resp.text().await.expect("body");
    let raw: Value = serde_json::from_str(&text).expect("JSON");

    // An independent parser accepts it as OpenAPI 3.1.
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    spec.validate_version()
        .expect("a supported OpenAPI version");
    assert!(spec.openapi.starts_with("3."), "{}", spec.openapi);
    assert!(!spec.info.title.is_empty() && !spec.info.version.is_empty());

    let documented: BTreeSet<(String, String)> = spec
        .operations()
        .map(|(path, method, _)| (method.as_str().to_owned(), path))
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/api/v1/webhooks"),
        ("GET", "/api/v1/webhooks/{id}"),
        ("POST", "/api/v1/webhooks/{id}/replay"),
        ("GET", "/api/v1/shipments"),
        ("GET", "/api/v1/shipments/{id}"),
        ("GET", "/api/v1/shipments/{id}/label"),
        ("POST", "/api/v1/shipments/{id}/retry"),
        ("POST", "/api/v1/shipments/{id}/track"),
        ("GET", "/api/v1/dead"),
        ("POST", "/api/v1/dead/{id}/requeue"),
        ("GET", "/api/v1/alerts"),
        ("GET", "/api/v1/alerts/{id}"),
        ("POST", "/api/v1/alerts/{id}/resolve"),
        ("GET", "/api/v1/audit"),
        ("POST", "/api/v1/purge"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/events"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(documented, expected);
    let operation_ids: BTreeSet<String> = spec
        .operations()
        .map(|(_, _, op)| op.operation_id.clone().expect("an operationId"))
        .collect();
    assert_eq!(
        operation_ids.len(),
        expected.len(),
        "operationIds are unique"
    );

    for (path, method, op) in spec.operations() {
        let context = format!("{method} {path}");
        let responses = op.responses.as_ref().expect("responses");
        assert!(!responses.is_empty(), "{context}");
        for response in responses.values() {
            response.resolve(&spec).expect("the response resolves");
        }
        let params: Vec<_> = op
            .parameters
            .iter()
            .map(|p| p.resolve(&spec).expect("the parameter resolves"))
            .collect();
        if path.contains("{id}") {
            assert!(
                params.iter().any(|p| p.name == "id"
                    && matches!(p.location, oas3::spec::ParameterIn::Path)
                    && p.required == Some(true)),
                "{context}: the path parameter is declared"
            );
        }
        let public = path == "/api/v1/openapi.json";
        let secured = op
            .security
            .iter()
            .chain(spec.security.iter())
            .next()
            .is_some_and(|s| s.0.contains_key("bearer"));
        if !public {
            assert!(
                op.security.is_empty() && secured,
                "{context}: under the global bearer requirement"
            );
            assert!(
                responses.contains_key("401"),
                "{context}: documents its 401"
            );
        }
    }
    assert!(
        raw["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer",
        "the bearer scheme is declared"
    );
    // Every $ref points at a schema that exists.
    let mut refs = Vec::new();
    collect_refs(&raw, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            raw["components"]["schemas"].get(name).is_some(),
            "$ref {r} resolves"
        );
    }

    // The router serves every documented operation (no fallback 404, no 405) ...
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let paths: BTreeSet<&String> = expected.iter().map(|(_, p)| p).collect();
    for path in paths {
        let concrete = path.replace("{id}", "1");
        for method in &methods {
            let resp = api.call(method.clone(), &concrete, None).await;
            let status = resp.status().as_u16();
            let is_documented = expected.contains(&(method.as_str().to_owned(), path.clone()));
            if is_documented {
                let want = if path.ends_with("openapi.json") {
                    200
                } else {
                    401
                };
                assert_eq!(status, want, "{method} {path} is routed");
            } else {
                // ... and nothing else on those paths.
                assert_eq!(status, 405, "{method} {path} is not routed");
            }
        }
    }
    // No other route under /api/v1 (a few likely ones).
    for path in [
        "/api/v1",
        "/api/v1/",
        "/api/v1/tokens",
        "/api/v1/jobs",
        "/api/v1/labels/1",
        "/api/v1/shipments/1/labels",
        "/api/v1/webhooks/1/history",
        "/api/v1/dead/1",
    ] {
        for method in [Method::GET, Method::POST] {
            let resp = api.call(method.clone(), path, None).await;
            assert_eq!(resp.status(), 404, "{method} {path}");
        }
    }

    let docs = api.call(Method::GET, "/docs", None).await;
    assert_eq!(docs.status(), 200);
    assert!(
        docs.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/html"))
    );
    let page = docs.text().await.expect("page");
    assert!(page.contains("swagger-ui") && page.contains("/api/v1/openapi.json"));
    api.app.stop().await;
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap_or_default().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

/// Who did what: every action through the API records the token's name and id, shown by
/// `GET /api/v1/audit` (with its filters) and in the webhook's and the shipment's detail, told
/// to the live stream; a vendor's detail does not show them.
#[tokio::test]
async fn every_action_through_the_api_records_its_token() {
    for (backend, db) in TestDb::all().await {
        let api = Api::start(&db).await;
        let admin_id = SqlTokenStore::new(api.app.running.db.clone())
            .list()
            .await
            .expect("tokens")
            .into_iter()
            .find(|t| t.name == "admin")
            .expect("the admin token")
            .id;
        let dead = api.dead_jobs(1).await[0];
        let booked = api
            .shipment(
                51,
                6,
                ShipmentMethod::Koiki,
                ShipmentStatus::LabelSent,
                "BAR5",
                None,
            )
            .await;
        let webhook = api
            .webhook("/api/deliveries/", &helpers_order(52), "order.created")
            .await;
        api.processed(webhook).await;
        let alerts = adapters::db::SqlAlertStore::new(api.app.running.db.clone());
        domain::ports::AlertStore::raise(
            &alerts,
            &domain::model::NewAlert {
                kind: domain::model::AlertKind::JobDead,
                subject: format!("job:{dead}"),
                summary: "dead".into(),
                detail: "requeue it".into(),
            },
        )
        .await
        .expect("raised");
        let alert = api.get("/api/v1/alerts").await["items"][0]["id"]
            .as_i64()
            .expect("an alert");

        for path in [
            format!("/api/v1/shipments/{booked}/retry?force=true"),
            format!("/api/v1/shipments/{booked}/track"),
            format!("/api/v1/webhooks/{webhook}/replay?force=true"),
            format!("/api/v1/dead/{dead}/requeue"),
        ] {
            let (status, body) = api.json(Method::POST, &path, &api.admin).await;
            assert_eq!(status, 202, "{backend} {path}: {body}");
        }
        let (status, body) = api
            .json(
                Method::POST,
                &format!("/api/v1/alerts/{alert}/resolve"),
                &api.admin,
            )
            .await;
        assert_eq!(status, 200, "{backend}: {body}");
        let by = format!("token admin (#{admin_id})");
        assert_eq!(body["resolved_by"], by.as_str(), "{backend}");
        // A refused action records nothing.
        let (status, _) = api
            .json(
                Method::POST,
                &format!("/api/v1/shipments/{booked}/retry"),
                &api.admin,
            )
            .await;
        assert_eq!(status, 409, "{backend}");

        let all = api.get("/api/v1/audit").await;
        let items = all["items"].as_array().expect("items");
        let seen: Vec<(&str, &str)> = items
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().expect("action"),
                    e["subject"].as_str().expect("subject"),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("resolve_alert", format!("alert:{alert}").as_str()),
                ("requeue", format!("job:{dead}").as_str()),
                ("replay", format!("webhook:{webhook}").as_str()),
                ("track", format!("shipment:{booked}").as_str()),
                ("retry", format!("shipment:{booked}").as_str()),
            ],
            "{backend}: newest first"
        );
        for e in items {
            assert_eq!(e["actor"], by.as_str(), "{backend}: {e}");
            assert_eq!(e["actor_via"], "api", "{backend}");
            assert_eq!(e["actor_name"], "admin", "{backend}");
            assert_eq!(e["token_id"], admin_id, "{backend}");
        }
        assert_eq!(items[4]["forced"], true, "{backend}: the retry was forced");
        assert_eq!(items[1]["forced"], false, "{backend}");
        assert!(all["next_before_id"].is_null(), "{backend}");

        // Filters and pages.
        let retries = api.get("/api/v1/audit?action=retry").await;
        assert_eq!(ids(&retries).len(), 1, "{backend}: {retries}");
        let mine = api.get("/api/v1/audit?actor=admin&limit=2").await;
        assert_eq!(ids(&mine).len(), 2, "{backend}");
        let next = mine["next_before_id"].as_i64().expect("a next page");
        let rest = api
            .get(&format!("/api/v1/audit?actor=admin&before_id={next}"))
            .await;
        assert_eq!(ids(&rest).len(), 3, "{backend}");
        assert_eq!(
            ids(&api.get("/api/v1/audit?actor=nobody").await).len(),
            0,
            "{backend}"
        );
        let on = api
            .get(&format!("/api/v1/audit?subject=shipment:{booked}"))
            .await;
        assert_eq!(ids(&on).len(), 2, "{backend}");
        let later = api.get("/api/v1/audit?since=2999-01-01T00:00:00Z").await;
        assert_eq!(ids(&later).len(), 0, "{backend}");
        for bad in [
            "action=nuke",
            "subject=order:1",
            "since=yesterday",
            "limit=0",
        ] {
            let (status, body) = api
                .json(Method::GET, &format!("/api/v1/audit?{bad}"), &api.admin)
                .await;
            assert_error(
                status,
                &body,
                400,
                "invalid_parameter",
                &format!("{backend} {bad}"),
            );
        }

        // In the details: the shipment's (an admin's only) and the webhook's, with the
        // webhook's history naming the token.
        let shipment = api.get(&format!("/api/v1/shipments/{booked}")).await;
        let actions: Vec<&str> = shipment["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|a| a["action"].as_str().expect("action"))
            .collect();
        assert_eq!(actions, ["track", "retry"], "{backend}");
        let (status, own) = api
            .json(
                Method::GET,
                &format!("/api/v1/shipments/{booked}"),
                &api.vendor6,
            )
            .await;
        assert_eq!(status, 200, "{backend}");
        assert!(own.get("actions").is_none(), "{backend}: not for a vendor");
        let detail = api.get(&format!("/api/v1/webhooks/{webhook}")).await;
        assert_eq!(detail["actions"][0]["action"], "replay", "{backend}");
        assert_eq!(detail["actions"][0]["forced"], true, "{backend}");
        assert!(
            detail["history"]
                .as_array()
                .expect("history")
                .iter()
                .any(|h| h["detail"] == format!("replayed by {by} (forced)")),
            "{backend}: {detail}"
        );
        // And the live stream was told.
        assert_eq!(
            api.app
                .count("SELECT COUNT(*) FROM events WHERE kind = 'operator_action'")
                .await,
            5,
            "{backend}"
        );
        api.app.stop().await;
    }
}
