//! Authentication of the operations API: `Authorization: Bearer <token>` becomes a
//! [`Principal`] (an extractor any handler of this server can take, the API's and later ones
//! alike), and [`Admin`] lets through only admin tokens, with who they are: the token's
//! [`Actor`] (its id and name), which every action passes to the audit log.
//!
//! Every request of the API is made with a token from the token store (there is no static or
//! anonymous admin), so every action has a named actor.
//!
//! A missing, malformed, unknown or revoked token is answered 401 (`unauthorized`); a vendor's
//! token on an admin-only endpoint 403 (`forbidden`). Which of the two a token is never depends
//! on the resource asked for, so a 401 or 403 reveals nothing about what exists.

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use domain::model::{Actor, ApiToken, Principal};

/// The token of the request, checked.
async fn token(parts: &Parts, state: &AppState) -> Result<ApiToken, ApiError> {
    let token = bearer(&parts.headers)?;
    let tokens = &state.api()?.tokens;
    match tokens.identify(token).await {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(ApiError::Unauthenticated("unknown or revoked token")),
        Err(e) => Err(super::unavailable(e)),
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(token(parts, state).await?.principal)
    }
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let header = headers.get(AUTHORIZATION).ok_or(ApiError::Unauthenticated(
        "an `Authorization: Bearer <token>` header is required",
    ))?;
    header
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthenticated(
            "the Authorization header must be `Bearer <token>`",
        ))
}

/// An admin's request, and who makes it (the token's id and name): a vendor's token is
/// answered 403.
#[derive(Debug, Clone)]
pub struct Admin {
    /// The token, as the audit log records it.
    pub actor: Actor,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token(parts, state).await?;
        match token.principal {
            Principal::Admin => Ok(Admin {
                actor: Actor::token(token.id, token.name),
            }),
            Principal::Vendor { .. } => Err(ApiError::Forbidden),
        }
    }
}
