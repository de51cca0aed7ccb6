//! The fake SugarCRM: its v4.1 REST endpoint, where the e-mails starting with
//! [`MEMBER_PREFIX`](super::MEMBER_PREFIX) are members.

use super::{CRM_PASSWORD, CRM_USER, Fakes, MEMBER_PREFIX, bump};
use axum::extract::{Form, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Whether the fake CRM has `email` as a member (its local part starts with
/// [`MEMBER_PREFIX`]); the fake shop creates such customers on first search.
pub(super) fn is_member(email: &str) -> bool {
    email.trim().to_lowercase().starts_with(MEMBER_PREFIX) && email.contains('@')
}

#[derive(Deserialize)]
pub(super) struct CrmForm {
    method: String,
    rest_data: String,
}

/// SugarCRM v4.1's REST endpoint, as far as the connector uses it: `login` (user and md5 of the
/// password), `search_by_module` (Accounts, Contacts by e-mail) and `get_entry` (the
/// relationship roles).
pub(super) async fn crm(State(fakes): State<Arc<Fakes>>, Form(form): Form<CrmForm>) -> Response {
    bump(&fakes.calls.crm_calls);
    let args: Value = serde_json::from_str(&form.rest_data).unwrap_or(Value::Null);
    let fault = |number: &str, name: &str| {
        axum::Json(json!({"name": name, "number": number, "description": name})).into_response()
    };
    const SESSION: &str = "sandbox-crm-session";
    if form.method == "login" {
        let auth = &args["user_auth"];
        let expected = crate::sugarcrm::md5_hex(CRM_PASSWORD);
        if auth["user_name"] != CRM_USER || auth["password"] != expected.as_str() {
            return fault("10", "Invalid Login");
        }
        return axum::Json(json!({"id": SESSION, "module_name": "Users"})).into_response();
    }
    if args.get(0).and_then(Value::as_str) != Some(SESSION) {
        return fault("11", "Invalid Session ID");
    }
    match form.method.as_str() {
        "search_by_module" => {
            let email = args.get(1).and_then(Value::as_str).unwrap_or_default();
            let contacts: Vec<Value> = if is_member(email) {
                vec![
                    json!({"id": {"name": "id", "value": format!("contact-{}", email.to_lowercase())}}),
                ]
            } else {
                Vec::new()
            };
            axum::Json(json!({"entry_list": [
                {"name": "Accounts", "records": []},
                {"name": "Contacts", "records": contacts},
            ]}))
            .into_response()
        }
        "get_entry" => {
            let module = args.get(1).and_then(Value::as_str).unwrap_or_default();
            let id = args.get(2).and_then(Value::as_str).unwrap_or_default();
            let roles = if id.starts_with("contact-member") {
                "^member^"
            } else {
                ""
            };
            axum::Json(json!({"entry_list": [{
                "id": id,
                "module_name": module,
                "name_value_list": {
                    "stic_relationship_type_c": {"name": "stic_relationship_type_c", "value": roles}
                }
            }]}))
            .into_response()
        }
        other => fault("1000", &format!("unknown method {other}")),
    }
}
