//! End to end: a signed customer webhook into `lazona-http` with its in-process worker, a fake
//! SugarCRM and a fake WordPress over HTTP. A member's user gets the partner role exactly once,
//! however often the customer is delivered; bad CRM credentials dead-letter the job with the
//! reason; a CRM that is down is retried. On SQLite, and on Postgres and the Redis queue backend
//! when `TEST_DATABASE_URL` and `TEST_REDIS_URL` are set (always in CI).

use crate::helpers::{TestApp, TestDb, fixture, settings, unique};
use adapters::config::Settings;
use adapters::queue::Queue;
use domain::model::JobKind;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const REST_PATH: &str = "/service/v4_1/rest.php";
const EMAIL: &str = "partner@email.com";
const USER_ID: i64 = 1;

/// A backend to run on: a database, and the Redis queue's URL and prefix when it is the Redis
/// one.
struct Backend {
    name: &'static str,
    db: TestDb,
    redis: Option<(String, String)>,
}

/// SQLite; Postgres with `TEST_DATABASE_URL`; the Redis queue (on Postgres when there is one)
/// with `TEST_REDIS_URL`.
async fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "sqlite",
        db: TestDb::sqlite(),
        redis: None,
    }];
    if let Some(db) = TestDb::postgres().await {
        out.push(Backend {
            name: "postgres",
            db,
            redis: None,
        });
    }
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let db = match TestDb::postgres().await {
                Some(db) => db,
                None => TestDb::sqlite(),
            };
            out.push(Backend {
                name: "redis",
                db,
                redis: Some((url, format!("lazona-test-customers-{}", unique()))),
            });
        }
        _ if std::env::var_os("CI").is_some() => {
            panic!("TEST_REDIS_URL must be set in CI: Redis tests are required there")
        }
        _ => eprintln!("note: TEST_REDIS_URL not set, the Redis backend is skipped"),
    }
    out
}

/// The connector's settings for this backend, pointed at the fakes.
fn connector_settings(backend: &Backend, crm: &MockServer, wp: &MockServer) -> Settings {
    let rest_url = format!("{}{REST_PATH}", crm.uri());
    let wp_uri = wp.uri();
    let mut extra = vec![
        ("worker.embedded", "true"),
        ("crm.rest_url", rest_url.as_str()),
        ("crm.user", "connector"),
        ("crm.password", "crm-password"),
        ("crm.membership_roles", "^member^,^is_partner^"),
        ("shop.host", wp_uri.as_str()),
        ("shop.user", "connector"),
        ("shop.password", "wp-password"),
        ("shop.partner_role", "partner"),
    ];
    if let Some((url, prefix)) = &backend.redis {
        extra.push(("queue.backend", "redis"));
        extra.push(("queue.redis_url", url));
        extra.push(("queue.redis_prefix", prefix));
    }
    let mut settings = settings(&backend.db.url, &extra);
    settings.worker.retry_schedule_secs = vec![1, 1];
    settings.worker.retry_jitter = 0.0;
    settings
}

/// The value of a form field of a request body.
fn form_field(request: &Request, name: &str) -> Option<String> {
    let body = std::str::from_utf8(&request.body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("3f");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Matches the SugarCRM calls of one API method.
struct Call(&'static str);

impl wiremock::Match for Call {
    fn matches(&self, request: &Request) -> bool {
        form_field(request, "method").as_deref() == Some(self.0)
    }
}

/// A fake SugarCRM where `EMAIL` is a Contact with these relationship roles. `login` answers
/// `login` (a session, or a fault).
async fn fake_crm(roles: &str, login: ResponseTemplate) -> MockServer {
    let crm = MockServer::start().await;
    let mount = |call: &'static str, response: ResponseTemplate| {
        Mock::given(method("POST"))
            .and(path(REST_PATH))
            .and(Call(call))
            .respond_with(response)
    };
    mount("login", login).mount(&crm).await;
    mount(
        "search_by_module",
        ResponseTemplate::new(200).set_body_json(json!({"entry_list": [
            {"name": "Accounts", "records": []},
            {"name": "Contacts", "records": [{"id": {"name": "id", "value": "C1"}}]}
        ]})),
    )
    .mount(&crm)
    .await;
    mount(
        "get_entry",
        ResponseTemplate::new(200).set_body_json(json!({"entry_list": [{"id": "C1",
            "module_name": "Contacts",
            "name_value_list": {"stic_relationship_type_c":
                {"name": "stic_relationship_type_c", "value": roles}}}]})),
    )
    .mount(&crm)
    .await;
    crm
}

fn session() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"id": "session-1"}))
}

/// WordPress user 1 (`EMAIL`), whose roles a POST replaces, as WordPress does.
#[derive(Clone)]
struct WpUser(Arc<Mutex<Vec<String>>>);

impl WpUser {
    fn json(&self) -> Value {
        json!({"id": USER_ID, "username": "test.test", "email": EMAIL,
               "roles": *self.0.lock().expect("roles")})
    }

    fn roles(&self) -> Vec<String> {
        self.0.lock().expect("roles").clone()
    }
}

impl Respond for WpUser {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.method.as_str() == "POST" {
            let roles = form_field(request, "roles").unwrap_or_default();
            *self.0.lock().expect("roles") = roles.split(',').map(str::to_owned).collect();
        }
        ResponseTemplate::new(200).set_body_json(self.json())
    }
}

/// A fake WordPress with user 1 (`EMAIL`) in `roles`; the role change is expected `updates`
/// times.
async fn fake_wordpress(roles: &[&str], updates: u64) -> (MockServer, WpUser) {
    let wp = MockServer::start().await;
    let user = WpUser(Arc::new(Mutex::new(
        roles.iter().map(|r| (*r).to_owned()).collect(),
    )));
    Mock::given(method("GET"))
        .and(path("/wp-json/wp/v2/users"))
        .and(query_param("search", EMAIL))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"id": USER_ID}])))
        .mount(&wp)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/wp-json/wp/v2/users/{USER_ID}")))
        .and(query_param("context", "edit"))
        .respond_with(user.clone())
        .mount(&wp)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/wp-json/wp/v2/users/{USER_ID}")))
        .respond_with(user.clone())
        .expect(updates)
        .named("the role change")
        .mount(&wp)
        .await;
    (wp, user)
}

async fn post_customer(app: &TestApp, delivery_id: &str) {
    let resp = app
        .post_signed(
            "/api/customers/",
            &fixture("customer.json"),
            Some(delivery_id),
        )
        .await;
    assert_eq!(resp.status(), 200, "{delivery_id}");
}

async fn role_changes(wp: &MockServer) -> usize {
    wp.received_requests()
        .await
        .expect("recording")
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
}

/// Deletes the Redis keys of a backend's prefix.
async fn purge(backend: &Backend, settings: &Settings, db: &adapters::db::Database) {
    if backend.redis.is_some()
        && let Ok(queue) = adapters::redis_queue::RedisJobQueue::connect(
            &backend.redis.as_ref().expect("redis").0,
            &settings.queue.redis_prefix,
            db.clone(),
        )
        .await
    {
        let _ = queue.purge().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_user_gets_the_partner_role_once_however_often_the_customer_comes() {
    for backend in backends().await {
        let name = backend.name;
        let crm = fake_crm("^member^,^volunteer^", session()).await;
        let (wp, user) = fake_wordpress(&["customer"], 1).await;
        let settings = connector_settings(&backend, &crm, &wp);
        let app = TestApp::spawn(&settings).await;

        post_customer(&app, "customer-1").await;
        let processed = "SELECT COUNT(*) FROM webhooks WHERE status = 'processed'";
        assert_eq!(app.wait_count(processed, 1).await, 1, "{name}");
        assert_eq!(user.roles(), ["partner"], "{name}");
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM webhooks WHERE error = 'a member; user 1 now has roles partner'"
            )
            .await,
            1,
            "{name}: the summary"
        );

        // Another delivery of the customer (a customer.updated, the one our change triggers):
        // the user has the role, nothing is sent.
        post_customer(&app, "customer-2").await;
        assert_eq!(app.wait_count(processed, 2).await, 2, "{name}");
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM webhooks WHERE error = 'a member; user 1 has the partner role already'"
            )
            .await,
            1,
            "{name}"
        );
        // The first delivery again (WooCommerce retrying, a replay): a duplicate, no job.
        post_customer(&app, "customer-1").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM webhooks").await,
            2,
            "{name}"
        );
        assert_eq!(app.count(processed).await, 2, "{name}");
        assert_eq!(role_changes(&wp).await, 1, "{name}: one role change");

        let db = app.stop().await;
        purge(&backend, &settings, &db).await;
        wp.verify().await;
        let logins = crm
            .received_requests()
            .await
            .expect("recording")
            .iter()
            .filter(|r| form_field(r, "method").as_deref() == Some("login"))
            .count();
        assert_eq!(logins, 1, "{name}: the CRM session is kept between jobs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_who_is_not_a_member_keeps_their_role() {
    let backend = Backend {
        name: "sqlite",
        db: TestDb::sqlite(),
        redis: None,
    };
    let crm = fake_crm("^volunteer^", session()).await;
    let (wp, user) = fake_wordpress(&["customer"], 0).await;
    let app = TestApp::spawn(&connector_settings(&backend, &crm, &wp)).await;
    post_customer(&app, "customer-1").await;
    let sql = "SELECT COUNT(*) FROM webhooks WHERE status = 'processed' AND error = 'not a member in the CRM'";
    assert_eq!(app.wait_count(sql, 1).await, 1);
    assert_eq!(user.roles(), ["customer"]);
    assert!(
        wp.received_requests().await.expect("recording").is_empty(),
        "WordPress is not even asked"
    );
    app.stop().await;
    wp.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_crm_credentials_dead_letter_the_job_with_the_reason() {
    for backend in backends().await {
        let name = backend.name;
        let refused = ResponseTemplate::new(200).set_body_json(json!({"name": "Invalid Login",
            "number": 10, "description": "Login attempt failed please check the username and password"}));
        let crm = fake_crm("^member^", refused).await;
        let (wp, user) = fake_wordpress(&["customer"], 0).await;
        let settings = connector_settings(&backend, &crm, &wp);
        let app = TestApp::spawn(&settings).await;
        post_customer(&app, "customer-1").await;

        let failed = "SELECT COUNT(*) FROM webhooks WHERE status = 'failed' AND error LIKE '%Invalid Login%'";
        assert_eq!(app.wait_count(failed, 1).await, 1, "{name}");
        let queue = Queue::open(&settings, &app.running.db, None)
            .await
            .expect("queue");
        let mut dead = Vec::new();
        for _ in 0..100 {
            dead = queue.port.dead_jobs(10).await.expect("dead jobs");
            if !dead.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(dead.len(), 1, "{name}: {dead:?}");
        assert!(
            matches!(dead[0].kind, JobKind::ProcessWebhook { .. }),
            "{name}"
        );
        assert_eq!(dead[0].attempts, 1, "{name}: not retried");
        assert!(
            dead[0].error.contains("crm authentication failed")
                && dead[0].error.contains("Invalid Login"),
            "{name}: {}",
            dead[0].error
        );
        assert!(
            !dead[0].error.contains("crm-password"),
            "{name}: no secret in the reason"
        );
        assert_eq!(user.roles(), ["customer"], "{name}");

        let db = app.stop().await;
        purge(&backend, &settings, &db).await;
        wp.verify().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_that_is_down_is_retried_until_it_answers() {
    for backend in backends().await {
        let name = backend.name;
        let crm = fake_crm("^is_partner^", session()).await;
        // The first call finds the CRM down (it answers again a moment later).
        Mock::given(method("POST"))
            .and(path(REST_PATH))
            .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&crm)
            .await;
        let (wp, user) = fake_wordpress(&["customer"], 1).await;
        let settings = connector_settings(&backend, &crm, &wp);
        let app = TestApp::spawn(&settings).await;
        post_customer(&app, "customer-1").await;

        let processed = "SELECT COUNT(*) FROM webhooks WHERE status = 'processed'";
        assert_eq!(app.wait_count(processed, 1).await, 1, "{name}");
        assert_eq!(user.roles(), ["partner"], "{name}");
        let logins = crm
            .received_requests()
            .await
            .expect("recording")
            .iter()
            .filter(|r| form_field(r, "method").as_deref() == Some("login"))
            .count();
        assert_eq!(logins, 2, "{name}: the job ran again after the 503");
        let queue = Queue::open(&settings, &app.running.db, None)
            .await
            .expect("queue");
        assert!(
            queue.port.dead_jobs(10).await.expect("dead").is_empty(),
            "{name}: nothing dead-lettered"
        );

        let db = app.stop().await;
        purge(&backend, &settings, &db).await;
        wp.verify().await;
    }
}
