//! The three e-mails the connector sends (upstream `koiki/email.py` and `api/templates/*.txt`),
//! built as plain [`Email`] values with the upstream Catalan subjects and bodies word for word.
//!
//! - [`label_mail`]: the vendor's shipping label (`SuccessDeliveryMail`).
//! - [`booking_error_mail`]: a booking Koiki refused, to the admins (`FailedDeliveryMail`).
//! - [`tracking_changed_mail`]: a tracking status change, to the admins
//!   (`UpdateDeliveryStatusChangedMail`).
//!
//! Pure: no I/O. The caller sends them through a [`crate::ports::Mailer`].

use crate::ports::{Attachment, Email};

/// The MIME type of the label attachment.
pub const PDF_CONTENT_TYPE: &str = "application/pdf";

/// What the error e-mail says when Koiki gave no error message.
pub const NO_ERROR_MESSAGE: &str = "Missatge d'error no proporcionat";

/// The shop's private-area link to an order: `{shop_host}/area-privada/orders-details/{order_id}`.
#[must_use]
pub fn order_url(shop_host: &str, order_id: i64) -> String {
    format!("{shop_host}/area-privada/orders-details/{order_id}")
}

/// The header that gives Mandrill's relay the mail's metadata, handed back in its events.
pub const MANDRILL_METADATA_HEADER: &str = "X-MC-Metadata";

/// The label e-mail to the vendor (upstream `SuccessDeliveryMail`), with the label PDF attached.
///
/// Upstream renders this template with Django's autoescape on, but nothing in it needs escaping
/// (the shop host is a plain URL), so the text is produced as is.
///
/// It is sent with `message_id` (a [`crate::model::mail::label_message_id`], recorded on the
/// shipment) and `X-MC-Metadata: {"shipment_id":N,"message_id":"<...>"}`, which Mandrill's relay
/// hands back in the events it reports about the mail (other relays ignore it).
#[must_use]
pub fn label_mail(
    shop_host: &str,
    order_id: i64,
    vendor_email: &str,
    pdf: Vec<u8>,
    pdf_filename: &str,
    shipment_id: i64,
    message_id: &str,
) -> Email {
    let metadata = serde_json::json!({ "shipment_id": shipment_id, "message_id": message_id });
    Email {
        to: vec![vendor_email.to_owned()],
        subject: format!("Enviament Koiki per a la comanda: {order_id}"),
        body: format!(
            "\nHola, la teva tenda ha rebut la comanda: {}\n\nAdjuntem el PDF per a imprimir i \
             pegar al paquet a enviar.\n\n",
            order_url(shop_host, order_id)
        ),
        attachments: vec![Attachment {
            filename: pdf_filename.to_owned(),
            content_type: PDF_CONTENT_TYPE.to_owned(),
            content: pdf,
        }],
        headers: vec![(MANDRILL_METADATA_HEADER.to_owned(), metadata.to_string())],
        message_id: Some(message_id.to_owned()),
    }
}

/// The booking-error e-mail to the admins (upstream `FailedDeliveryMail`).
///
/// `error` is Koiki's message; `None` or an empty one reads "Missatge d'error no proporcionat".
/// `request_json` is the shipment request sent to Koiki (without the token). Upstream prints
/// it with Python's `pprint` (a Python dict repr with sorted keys); this port prints it as
/// pretty JSON instead (`request_json` is re-indented when it parses, kept as is otherwise).
#[must_use]
pub fn booking_error_mail(
    shop_host: &str,
    order_id: i64,
    admins: &[String],
    error: Option<&str>,
    request_json: &str,
) -> Email {
    let error = error.filter(|e| !e.is_empty()).unwrap_or(NO_ERROR_MESSAGE);
    let details = serde_json::from_str::<serde_json::Value>(request_json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| request_json.to_owned());
    Email {
        to: admins.to_vec(),
        subject: format!("Error enviament Koiki per a la comanda: {order_id}"),
        body: format!(
            "La notificació a l'empresa d'enviament (Koiki) de la comanda {url} ha fallat amb el \
             següent error:\n\n{error}\n\n\nLa comanda romandrà en estat \"S'està processant\" i \
             no serà enviada al client fins que no s'actualitzen els detalls de la comanda que \
             provoquen l'error a Koiki.\n\nDetalls de l'enviament a Koiki:\n\n{details}\n",
            url = order_url(shop_host, order_id),
        ),
        attachments: Vec::new(),
        ..Email::default()
    }
}

/// The tracking-change e-mail to the admins (upstream `UpdateDeliveryStatusChangedMail`).
///
/// `status` is the status's wire value (e.g. `DELIVERED`); `event_date` is Koiki's raw date
/// string, and a missing one reads `None`, as upstream's template prints Python's `None`.
/// `message` and `notes` are Koiki's tracking message and notes, as stored.
#[must_use]
pub fn tracking_changed_mail(
    admins: &[String],
    delivery_id: &str,
    status: &str,
    event_date: Option<&str>,
    message: &str,
    notes: &str,
) -> Email {
    let or_none = |v: Option<&str>| v.unwrap_or("None").to_owned();
    Email {
        to: admins.to_vec(),
        subject: format!("Actualització estat Koiki per l'enviament: {delivery_id}"),
        body: format!(
            "\n\nHola, s'ha actualitzat l'estat de l'enviament: {delivery_id}\n\nAquestes són les \
             dades:\n\nEstat de l'enviament: {status}\nData de creació del darrer estat de \
             l'enviament: {date}\nMissatge de seguiment: {message}\nNotes de seguiment: \
             {notes}\n\n",
            date = or_none(event_date),
        ),
        attachments: Vec::new(),
        ..Email::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "https://lazona.coop";

    #[test]
    fn label_mail_matches_upstream() {
        let m = label_mail(
            HOST,
            42,
            "vendor@example.com",
            b"%PDF-1.4".to_vec(),
            "label-42.pdf",
            9,
            "<lazona.shipment.9.1@lazona.coop>",
        );
        assert_eq!(m.to, vec!["vendor@example.com".to_owned()]);
        assert_eq!(
            m.message_id.as_deref(),
            Some("<lazona.shipment.9.1@lazona.coop>")
        );
        assert_eq!(
            m.headers,
            vec![(
                "X-MC-Metadata".to_owned(),
                r#"{"message_id":"<lazona.shipment.9.1@lazona.coop>","shipment_id":9}"#.to_owned()
            )]
        );
        assert_eq!(m.subject, "Enviament Koiki per a la comanda: 42");
        assert_eq!(
            m.body,
            "\nHola, la teva tenda ha rebut la comanda: \
             https://lazona.coop/area-privada/orders-details/42\n\nAdjuntem el PDF per a \
             imprimir i pegar al paquet a enviar.\n\n"
        );
        assert_eq!(
            m.attachments,
            vec![Attachment {
                filename: "label-42.pdf".into(),
                content_type: "application/pdf".into(),
                content: b"%PDF-1.4".to_vec(),
            }]
        );
    }

    fn admins() -> Vec<String> {
        vec!["a@example.com".into(), "b@example.com".into()]
    }

    const ERROR_TAIL: &str = "\n\n\nLa comanda romandrà en estat \"S'està processant\" i no \
        serà enviada al client fins que no s'actualitzen els detalls de la comanda que provoquen \
        l'error a Koiki.\n\nDetalls de l'enviament a Koiki:\n\n";

    #[test]
    fn booking_error_mail_matches_upstream() {
        let m = booking_error_mail(
            HOST,
            7,
            &admins(),
            Some("Codi postal incorrecte"),
            r#"{"b":1,"a":"x"}"#,
        );
        assert_eq!(m.to, admins());
        assert_eq!(m.subject, "Error enviament Koiki per a la comanda: 7");
        let expected = format!(
            "La notificació a l'empresa d'enviament (Koiki) de la comanda \
             https://lazona.coop/area-privada/orders-details/7 ha fallat amb el següent \
             error:\n\nCodi postal incorrecte{ERROR_TAIL}{{\n  \"a\": \"x\",\n  \"b\": 1\n}}\n"
        );
        assert_eq!(m.body, expected);
        assert!(m.attachments.is_empty());
    }

    #[test]
    fn booking_error_mail_without_message() {
        for error in [None, Some("")] {
            let m = booking_error_mail(HOST, 7, &admins(), error, "not json");
            assert_eq!(
                m.body,
                format!(
                    "La notificació a l'empresa d'enviament (Koiki) de la comanda \
                     https://lazona.coop/area-privada/orders-details/7 ha fallat amb el següent \
                     error:\n\nMissatge d'error no proporcionat{ERROR_TAIL}not json\n"
                )
            );
        }
    }

    #[test]
    fn tracking_changed_mail_matches_upstream() {
        let m = tracking_changed_mail(
            &admins(),
            "KOIKI123",
            "DELIVERED",
            Some("2021-06-01 10:00:00"),
            "Entregat",
            "",
        );
        assert_eq!(m.to, admins());
        assert_eq!(
            m.subject,
            "Actualització estat Koiki per l'enviament: KOIKI123"
        );
        assert_eq!(
            m.body,
            "\n\nHola, s'ha actualitzat l'estat de l'enviament: KOIKI123\n\nAquestes són les \
             dades:\n\nEstat de l'enviament: DELIVERED\nData de creació del darrer estat de \
             l'enviament: 2021-06-01 10:00:00\nMissatge de seguiment: Entregat\nNotes de \
             seguiment: \n\n"
        );
        let m = tracking_changed_mail(&admins(), "K", "PENDING", None, "", "cap");
        assert!(
            m.body
                .contains("l'enviament: None\nMissatge de seguiment: \nNotes de seguiment: cap\n")
        );
    }
}
