//! The operations API's tokens on SQL: one row per token with the SHA-256 of its secret (never
//! the secret), looked up by that hash.

use super::sql::SqlBuilder;
use super::{Database, boxed, from_millis, millis};
use async_trait::async_trait;
use chrono::Utc;
use domain::error::TokenError;
use domain::model::token::TOKEN_PREFIX;
use domain::model::{ApiToken, Principal, TokenHash, TokenSecret};
use domain::ports::TokenStore;
use sea_orm::{ConnectionTrait as _, DbErr, QueryResult};

const COLUMNS: &str = "id, name, scope, vendor_id, created_at, last_used_at, revoked_at";

/// A token's use is recorded at most this often (milliseconds), so that reading the API does not
/// write on every request.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

/// The tokens on the connector's SQL database.
#[derive(Debug, Clone)]
pub struct SqlTokenStore {
    db: Database,
}

impl SqlTokenStore {
    /// A store on `db`.
    pub fn new(db: Database) -> Self {
        SqlTokenStore { db }
    }

    fn builder(&self, sql: &str) -> SqlBuilder {
        SqlBuilder::new(self.db.backend(), sql.to_owned())
    }

    async fn exec(&self, b: SqlBuilder) -> Result<u64, TokenError> {
        let res = self
            .db
            .conn()
            .execute_raw(b.build())
            .await
            .map_err(unavailable)?;
        Ok(res.rows_affected())
    }

    async fn one(&self, b: SqlBuilder) -> Result<Option<(ApiToken, i64)>, TokenError> {
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?;
        row.map(|r| token(&r)).transpose()
    }

    async fn by_id(&self, id: i64) -> Result<ApiToken, TokenError> {
        let mut b = self.builder(&format!("SELECT {COLUMNS} FROM tokens WHERE id = "));
        b.param(id.into());
        Ok(self.one(b).await?.ok_or(TokenError::NotFound(id))?.0)
    }
}

fn unavailable(e: DbErr) -> TokenError {
    TokenError::Unavailable(boxed(e))
}

/// A row as a token, with its raw `last_used_at` (0 when never).
fn token(row: &QueryResult) -> Result<(ApiToken, i64), TokenError> {
    let get = |e: DbErr| TokenError::Unexpected(boxed(e));
    let scope: String = row.try_get_by_index(2).map_err(get)?;
    let vendor_id: Option<i64> = row.try_get_by_index(3).map_err(get)?;
    let principal = Principal::from_stored(&scope, vendor_id).ok_or_else(|| {
        TokenError::Unexpected(
            format!("token with scope {scope:?} and vendor {vendor_id:?}").into(),
        )
    })?;
    let last_used: Option<i64> = row.try_get_by_index(5).map_err(get)?;
    Ok((
        ApiToken {
            id: row.try_get_by_index(0).map_err(get)?,
            name: row.try_get_by_index(1).map_err(get)?,
            principal,
            created_at: from_millis(row.try_get_by_index(4).map_err(get)?),
            last_used_at: last_used.map(from_millis),
            revoked_at: row
                .try_get_by_index::<Option<i64>>(6)
                .map_err(get)?
                .map(from_millis),
        },
        last_used.unwrap_or(0),
    ))
}

/// 32 bytes from the operating system's generator.
fn random_secret() -> Result<TokenSecret, TokenError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        TokenError::Unexpected(format!("the OS random generator failed: {e}").into())
    })?;
    Ok(TokenSecret::from_random(&bytes))
}

#[async_trait]
impl TokenStore for SqlTokenStore {
    async fn create(
        &self,
        name: &str,
        principal: Principal,
    ) -> Result<(ApiToken, TokenSecret), TokenError> {
        let secret = random_secret()?;
        let mut b =
            self.builder("INSERT INTO tokens (name, scope, vendor_id, hash, created_at) VALUES ");
        b.row(
            0,
            [
                name.into(),
                principal.scope().into(),
                principal.vendor_id().into(),
                secret.hash().0.into(),
                millis(Utc::now()).into(),
            ],
        );
        b.sql.push_str(" RETURNING id");
        let row = self
            .db
            .conn()
            .query_one_raw(b.build())
            .await
            .map_err(unavailable)?
            .ok_or_else(|| TokenError::Unexpected("INSERT returned no id".into()))?;
        let id: i64 = row
            .try_get_by_index(0)
            .map_err(|e| TokenError::Unexpected(boxed(e)))?;
        Ok((self.by_id(id).await?, secret))
    }

    async fn list(&self) -> Result<Vec<ApiToken>, TokenError> {
        let b = self.builder(&format!("SELECT {COLUMNS} FROM tokens ORDER BY id"));
        let rows = self
            .db
            .conn()
            .query_all_raw(b.build())
            .await
            .map_err(unavailable)?;
        rows.iter().map(|r| token(r).map(|(t, _)| t)).collect()
    }

    async fn revoke(&self, id: i64) -> Result<ApiToken, TokenError> {
        let mut b = self.builder("UPDATE tokens SET revoked_at = ");
        b.param(millis(Utc::now()).into());
        b.sql.push_str(" WHERE revoked_at IS NULL AND id = ");
        b.param(id.into());
        self.exec(b).await?;
        self.by_id(id).await
    }

    async fn identify(&self, presented: &str) -> Result<Option<ApiToken>, TokenError> {
        // Looked up by the hash: the secret itself is never compared, so there is no timing to
        // leak, and a hash's prefix says nothing about a secret.
        if !presented.starts_with(TOKEN_PREFIX) {
            // Not one of ours: no need to ask the database.
            return Ok(None);
        }
        let hash = TokenHash::of(presented);
        let mut b = self.builder(&format!(
            "SELECT {COLUMNS} FROM tokens WHERE revoked_at IS NULL AND hash = "
        ));
        b.param(hash.0.into());
        let Some((token, last_used)) = self.one(b).await? else {
            return Ok(None);
        };
        let now = millis(Utc::now());
        if now - last_used >= LAST_USED_GRANULARITY_MS {
            let mut b = self.builder("UPDATE tokens SET last_used_at = ");
            b.param(now.into());
            b.sql.push_str(" WHERE id = ");
            b.param(token.id.into());
            // Recording the use is best effort: a request is not refused for it.
            if let Err(e) = self.exec(b).await {
                tracing::warn!(token = token.id, error = %e, "could not record a token's use");
            }
        }
        Ok(Some(token))
    }
}
