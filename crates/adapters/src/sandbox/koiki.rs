//! The fake Koiki: `POST /rekis/api/altaEnvios` (bookings, each envio with a unique barcode and a
//! small PDF label from [`label_pdf`]) and `POST /kis/api/v1/service/track/see` (tracking).

use super::{BOOKING_ANSWER, Fakes, KOIKI_TOKEN, TRACKING_ANSWER, TRACKING_TOKEN, bump};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Koiki's answer when nothing can be booked.
fn koiki_refusal(message: &str) -> Response {
    axum::Json(json!({"respuesta": "102", "mensaje": message, "envios": []})).into_response()
}

pub(super) async fn book(State(fakes): State<Arc<Fakes>>, body: Bytes) -> Response {
    bump(&fakes.calls.koiki_bookings);
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "Bad Request"})),
        )
            .into_response();
    };
    if request["token"].as_str() != Some(KOIKI_TOKEN) {
        bump(&fakes.calls.refused);
        return koiki_refusal("TOKEN NOT FOUND");
    }
    let Some(requested) = request["envios"].as_array().filter(|e| !e.is_empty()) else {
        return koiki_refusal("ERROR IN THE RECEIVED DATA");
    };
    let mut answer: Value =
        serde_json::from_str(BOOKING_ANSWER).expect("the answer fixture is JSON");
    let template = answer["envios"][0].clone();
    let envios: Vec<Value> = requested
        .iter()
        .map(|envio| {
            let n = fakes.barcodes.fetch_add(1, Ordering::Relaxed) + 1;
            let barcode = format!("SBX{:08X}{n:07}", fakes.run);
            let text = |k: &str| envio[k].as_str().unwrap_or_default();
            let label = label_pdf(&[
                "SANDBOX - NOT A REAL LABEL".to_owned(),
                format!("Koiki barcode: {barcode}"),
                format!("Order: {}", text("numPedido")),
                format!("To: {} {}", text("nombreDesti"), text("apellidoDesti")),
                format!("{} {}", text("direccionDesti"), text("numeroCalleDesti")),
                format!("{} {}", text("codPostalDesti"), text("poblacionDesti")),
                format!("From: {} {}", text("nombreRemi"), text("emailRemi")),
            ]);
            let mut out = template.clone();
            out["numPedido"] = envio["numPedido"].clone();
            out["codBarras"] = json!(barcode);
            out["etiqueta"] = json!(BASE64.encode(label));
            out
        })
        .collect();
    fakes
        .calls
        .koiki_envios
        .fetch_add(envios.len() as u64, Ordering::Relaxed);
    answer["envios"] = Value::Array(envios);
    axum::Json(answer).into_response()
}

pub(super) async fn track(State(fakes): State<Arc<Fakes>>, body: Bytes) -> Response {
    bump(&fakes.calls.koiki_tracking);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["token"].as_str() != Some(TRACKING_TOKEN) {
        bump(&fakes.calls.refused);
        return axum::Json(json!({"error": {"code": 102, "message": "TOKEN NOT FOUND"}}))
            .into_response();
    }
    let code = request["code"].as_str().unwrap_or_default();
    if code.is_empty() {
        return axum::Json(json!({"error": {"code": 101, "message": "CODE NOT FOUND"}}))
            .into_response();
    }
    // The fixture's shape (newest event first), at an in-process step: 102 LLEGADA A KOIKI.
    let mut answer: Value =
        serde_json::from_str(TRACKING_ANSWER).expect("the tracking fixture is JSON");
    let now = chrono::Utc::now();
    let date = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%z").to_string();
    let steps = [
        (102, "Llegada a Koiki", now),
        (
            100,
            "Envío pendiente llegada",
            now - chrono::Duration::hours(2),
        ),
    ];
    if let Some(events) = answer["result"].as_array_mut() {
        for (event, (step, description, at)) in events.iter_mut().zip(steps) {
            event["servicio"] = json!(code);
            event["codEstado"] = json!(description);
            event["date"] = json!(date(at));
            event["code"] = json!(step);
        }
    }
    axum::Json(answer).into_response()
}

/// A one-page PDF (A6) showing `lines` in Helvetica: a small, valid label for the sandbox.
/// Characters outside printable ASCII are shown as `?`.
#[must_use]
pub fn label_pdf(lines: &[String]) -> Vec<u8> {
    let mut content = String::from("0.5 w 10 10 278 400 re S\nBT /F1 11 Tf 20 380 Td 14 TL\n");
    for line in lines {
        let escaped: String = line
            .chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .flat_map(|c| match c {
                '(' | ')' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 298 420] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    let mut tail = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        tail.push_str(&format!("{offset:010} 00000 n \n"));
    }
    tail.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    pdf.extend_from_slice(tail.as_bytes());
    pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_a_pdf_whose_xref_points_at_its_objects() {
        let pdf = label_pdf(&["SANDBOX (test) \\ àé".to_owned(), "line 2".to_owned()]);
        let text = String::from_utf8(pdf.clone()).expect("ASCII");
        assert!(text.starts_with("%PDF-1.4\n"));
        assert!(text.ends_with("%%EOF\n"));
        assert!(text.contains(r"(SANDBOX \(test\) \\ ??) Tj"), "{text}");
        let startxref: usize = text
            .rsplit("startxref\n")
            .next()
            .and_then(|t| t.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(text[startxref..].starts_with("xref\n0 6\n"));
        for (i, entry) in text[startxref..].lines().skip(3).take(5).enumerate() {
            let offset: usize = entry[..10].parse().expect("offset");
            assert!(
                text[offset..].starts_with(&format!("{} 0 obj", i + 1)),
                "object {}",
                i + 1
            );
        }
        let length: usize = text
            .split("/Length ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("length");
        let data = text.find(">>\nstream\n").expect("stream") + ">>\nstream\n".len();
        assert!(text[data..data + length].ends_with("ET"));
        assert!(text[data + length..].starts_with("\nendstream"));
    }
}
