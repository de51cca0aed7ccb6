//! The fake shop's WCFM vendor settings and WordPress users (read, searched, their roles set),
//! behind the sandbox's basic-auth credentials (WooCommerce is in `woocommerce.rs`).

use super::crm::is_member;
use super::{FIRST_USER_ID, Fakes, SandboxUser, VENDOR_SETTINGS, bump};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

pub(super) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({
            "code": "rest_not_logged_in",
            "message": "You are not currently logged in.",
            "data": {"status": 401}
        })),
    )
        .into_response()
}

fn invalid_id() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(
            json!({"code": "rest_invalid_id", "message": "Invalid ID.", "data": {"status": 404}}),
        ),
    )
        .into_response()
}

pub(super) async fn vendor_settings(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    bump(&fakes.calls.wcfm_settings);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    if id.parse::<i64>().is_err() {
        return invalid_id();
    }
    let settings: Value =
        serde_json::from_str(VENDOR_SETTINGS).expect("the settings fixture is JSON");
    axum::Json(settings).into_response()
}

#[derive(Deserialize)]
pub(super) struct UserQuery {
    context: Option<String>,
    search: Option<String>,
}

pub(super) async fn user(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<UserQuery>,
) -> Response {
    bump(&fakes.calls.wp_users);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_id();
    };
    let edit = query.context.as_deref() == Some("edit");
    axum::Json(fakes.user(id).json(edit)).into_response()
}

pub(super) async fn search_users(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Query(query): Query<UserQuery>,
) -> Response {
    bump(&fakes.calls.wp_user_searches);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let needle = query.search.unwrap_or_default().trim().to_lowercase();
    let mut found: Vec<SandboxUser> = fakes
        .users()
        .values()
        .filter(|u| {
            !needle.is_empty()
                && (u.email.to_lowercase().contains(&needle)
                    || u.username.to_lowercase().contains(&needle))
        })
        .cloned()
        .collect();
    // A member of the fake CRM is a customer of the shop (created on first search).
    if found.is_empty() && is_member(&needle) {
        drop(found);
        let mut users = fakes.users();
        let id = users
            .keys()
            .next_back()
            .map_or(FIRST_USER_ID, |last| (last + 1).max(FIRST_USER_ID));
        let user = SandboxUser {
            id,
            username: needle.split('@').next().unwrap_or(&needle).to_owned(),
            email: needle.clone(),
            roles: vec!["customer".to_owned()],
        };
        users.insert(id, user.clone());
        found = vec![user];
    }
    // Vendors exist for any id: `vendor{id}@sandbox.invalid` finds vendor `id`.
    if let Some(id) = needle
        .strip_prefix("vendor")
        .and_then(|rest| rest.strip_suffix("@sandbox.invalid"))
        .and_then(|id| id.parse::<i64>().ok())
        && !found.iter().any(|u| u.id == id)
    {
        found.push(fakes.user(id));
    }
    // WordPress's search answer in the default `view` context: no e-mail, no roles.
    let answer: Vec<Value> = found.iter().map(|u| u.json(false)).collect();
    axum::Json(answer).into_response()
}

#[derive(Deserialize)]
pub(super) struct RolesForm {
    roles: Option<String>,
}

pub(super) async fn set_roles(
    State(fakes): State<Arc<Fakes>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<RolesForm>,
) -> Response {
    bump(&fakes.calls.wp_user_updates);
    if !fakes.authorized(&headers) {
        return unauthorized();
    }
    let Ok(id) = id.parse::<i64>() else {
        return invalid_id();
    };
    let mut users = fakes.users();
    let user = users.entry(id).or_insert_with(|| SandboxUser::vendor(id));
    if let Some(roles) = form.roles {
        user.roles = roles
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
    }
    axum::Json(user.json(true)).into_response()
}
