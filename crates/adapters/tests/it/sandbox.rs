//! The sandbox's fakes through the connector's real clients, configured only from the
//! environment the sandbox prints.

use adapters::config::Settings;
use adapters::koiki::{Envio, KoikiClient};
use adapters::mail::SmtpMailer;
use adapters::sandbox::{Sandbox, SandboxOptions, vendor_email};
use adapters::wordpress::WordPressShop;
use domain::error::{ShippingError, ShopError};
use domain::model::ShipmentStatus;
use domain::ports::{Email, Mailer, ShippingProvider, Shop};
use domain::service::shipping::tracking_status;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

/// The settings `lazona-http` gets from `env` (and nothing else).
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
fn settings_from(env: Vec<(String, String)>) -> Settings {
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        for (name, value) in &env {
            jail.set_env(name, value);
        }
        loaded = Some(Settings::load(None).expect("the sandbox's environment loads"));
        Ok(())
    });
    loaded.expect("loaded")
}

fn envio(num_pedido: &str, name: &str) -> Envio {
    Envio {
        num_pedido: num_pedido.into(),
        bultos: 1,
        kilos: 0.0,
        tipo_servicio: 5,
        reembolso: 0.0,
        observaciones: String::new(),
        nombre_desti: name.into(),
        apellido_desti: "Bond".into(),
        direccion_desti: "Address 1".into(),
        direccion_adicional_desti: String::new(),
        numero_calle_desti: String::new(),
        cod_postal_desti: "08025".into(),
        poblacion_desti: "Barcelona".into(),
        provincia_desti: "Barcelona".into(),
        pais_desti: "ES".into(),
        telefono_desti: "666554433".into(),
        email_desti: "email@example.com".into(),
        nombre_remi: "A granel".into(),
        apellido_remi: String::new(),
        numero_calle_remi: String::new(),
        direccion_remi: "Sant Antoni Maria Claret, 175".into(),
        cod_postal_remi: "08041".into(),
        poblacion_remi: "Barcelona".into(),
        provincia_remi: String::new(),
        pais_remi: "ES".into(),
        email_remi: "detergents@agranel.coop".into(),
        telefono_remi: "93333333".into(),
    }
}

#[tokio::test]
async fn the_sandbox_environment_points_the_real_clients_at_the_fakes() {
    let mails = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::start(SandboxOptions {
        mail_dir: Some(mails.path().to_owned()),
        ..SandboxOptions::default()
    })
    .await
    .expect("sandbox starts");
    let settings = settings_from(sandbox.env());
    assert_eq!(settings.koiki.host, sandbox.url());
    assert!(settings.webhook.secret.is_some());

    // Koiki: one envio answered per envio requested, in order, each with its own barcode and
    // a PDF label.
    let koiki = KoikiClient::new(&settings.koiki, TIMEOUT).expect("koiki client");
    let results = koiki
        .book_envios(&[envio("order-a", "James"), envio("order-b", "Moneypenny")])
        .await
        .expect("booked");
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.is_booked()), "{results:?}");
    assert_eq!(results[0].reference, "order-a");
    assert_eq!(results[1].reference, "order-b");
    assert_ne!(results[0].barcode, results[1].barcode);
    assert!(results[0].label_pdf.starts_with(b"%PDF-"));
    let label = String::from_utf8_lossy(&results[1].label_pdf);
    assert!(label.contains(&results[1].barcode) && label.contains("Moneypenny"));

    let report = koiki.track(&results[0].barcode).await.expect("tracked");
    assert_eq!(tracking_status(&report).0, ShipmentStatus::InProcess);

    // WCFM and WordPress, for any vendor.
    let shop = WordPressShop::new(&settings.shop, TIMEOUT).expect("shop client");
    let vendor = shop.vendor(42).await.expect("vendor 42");
    assert_eq!(vendor.email, vendor_email(42));
    assert_eq!(vendor.city, "Barcelona");
    assert_eq!(
        shop.vendor(7).await.expect("vendor 7").email,
        vendor_email(7)
    );
    assert_eq!(shop.order(77).await.expect("order 77").id, 77);

    // Users kept in memory, for the customers' roles.
    let customer = shop
        .user_by_email("partner@email.com")
        .await
        .expect("search")
        .expect("the fixture's customer is there");
    assert_eq!(customer.roles, ["customer"]);
    let updated = shop
        .set_user_roles(customer.id, &["customer".into(), "partner".into()])
        .await
        .expect("roles set");
    assert_eq!(updated.roles, ["customer", "partner"]);
    assert_eq!(sandbox.user(customer.id).roles, ["customer", "partner"]);
    assert!(
        shop.user_by_email("nobody@example.com")
            .await
            .expect("search")
            .is_none()
    );
    let added = sandbox.add_user("new@example.com", &["customer"]);
    assert_eq!(
        shop.user_by_email("new@example.com")
            .await
            .expect("search")
            .map(|u| u.id),
        Some(added)
    );

    // Mail: the sink writes each message to the folder.
    let mailer = SmtpMailer::new(&settings.mail, TIMEOUT).expect("mailer");
    mailer
        .send(&Email {
            to: vec![vendor.email.clone()],
            subject: "sandbox".into(),
            body: "hello".into(),
            attachments: Vec::new(),
        })
        .await
        .expect("mailed");
    assert_eq!(sandbox.smtp().count(), 1);
    let written: Vec<_> = std::fs::read_dir(mails.path())
        .expect("folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(written, ["000001.eml"]);

    let calls = sandbox.calls();
    assert_eq!((calls.koiki_bookings, calls.koiki_envios), (1, 2));
    assert_eq!(calls.koiki_tracking, 1);
    assert_eq!(calls.wcfm_settings, 2);
    assert_eq!(calls.wc_orders, 1);
    assert_eq!(calls.wp_user_updates, 1);
    assert_eq!(calls.refused, 0);
}

#[tokio::test]
async fn the_fakes_refuse_wrong_credentials() {
    let sandbox = Sandbox::start(SandboxOptions::default())
        .await
        .expect("sandbox starts");
    let mut settings = settings_from(sandbox.env());
    settings.koiki.auth_token = Some("wrong".to_owned().into());
    settings.shop.password = Some("wrong".to_owned().into());
    let koiki = KoikiClient::new(&settings.koiki, TIMEOUT).expect("koiki client");
    let err = koiki
        .book_envios(&[envio("x", "James")])
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ShippingError::Rejected { reason } if reason.contains("TOKEN NOT FOUND")),
        "{err:?}"
    );
    let shop = WordPressShop::new(&settings.shop, TIMEOUT).expect("shop client");
    let err = shop.vendor(6).await.expect_err("refused");
    assert!(matches!(err, ShopError::Rejected { .. }), "{err:?}");
    assert_eq!(sandbox.calls().refused, 2);
}
