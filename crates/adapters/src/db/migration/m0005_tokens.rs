//! M0005: the operations API's tokens. Only the SHA-256 of each secret is stored (`hash`,
//! unique: a token is looked up by it); times are Unix milliseconds like the other tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    Name,
    Scope,
    VendorId,
    Hash,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

/// The `tokens` table.
pub(super) struct M0005Tokens;

impl MigrationName for M0005Tokens {
    fn name(&self) -> &str {
        "m0005_tokens"
    }
}

// The trait is declared with an elided lifetime; naming it here would not match.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for M0005Tokens {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Tokens::Id))
                    .col(string(Tokens::Name))
                    .col(string(Tokens::Scope))
                    .col(big_integer_null(Tokens::VendorId))
                    .col(string(Tokens::Hash).unique_key())
                    .col(big_integer(Tokens::CreatedAt))
                    .col(big_integer_null(Tokens::LastUsedAt))
                    .col(big_integer_null(Tokens::RevokedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Tokens::Table).to_owned())
            .await
    }
}
