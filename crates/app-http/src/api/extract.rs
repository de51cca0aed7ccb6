//! Extractors whose rejections are [`ApiError`]s, so that a parameter that does not parse is
//! answered with the JSON error shape (400, `invalid_parameter`, the parameter named in `field`)
//! instead of axum's plain-text rejections.

use crate::ApiError;
use axum::extract::FromRequestParts;
use axum::extract::rejection::PathRejection;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A path's `{id}`, an integer: 400 with the field `id` when it is not one (or not even UTF-8,
/// as `%ff`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Id(pub(crate) i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| super::bad("id", format!("`id`: {}", e.body_text())))?;
        raw.0
            .parse()
            .map(Id)
            .map_err(|_| super::bad("id", format!("`id` must be an integer, not {:?}", raw.0)))
    }
}

/// The query string deserialized into `T`, as axum's `Query`: 400 naming the parameter that
/// does not parse.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(pairs)
            .map(Query)
            .map_err(|e| {
                let field = match e.path().to_string() {
                    path if path == "." => "query".to_owned(),
                    path => path,
                };
                let message = format!("`{field}`: {}", e.inner());
                super::bad(&field, message)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    #[derive(Debug, serde::Deserialize)]
    struct After {
        after: Option<i64>,
    }

    async fn query(uri: &str) -> Result<Option<i64>, ApiError> {
        let (mut parts, ()) = Request::get(uri).body(()).expect("request").into_parts();
        Query::<After>::from_request_parts(&mut parts, &())
            .await
            .map(|q| q.0.after)
    }

    fn field(e: ApiError) -> String {
        match e {
            ApiError::BadParameter { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_query_that_does_not_parse_names_its_parameter() {
        assert_eq!(query("/e?after=5").await.expect("parses"), Some(5));
        assert_eq!(query("/e").await.expect("parses"), None);
        assert_eq!(
            field(query("/e?after=abc").await.expect_err("400")),
            "after"
        );
        assert_eq!(
            field(query("/e?after=%ff").await.expect_err("400")),
            "after"
        );
    }
}
