//! API tokens: who may call the operations API, and what they see. A token is an admin's (sees
//! and operates everything) or a vendor's (sees only that vendor's shipments and labels).
//!
//! The secret is `lzn_` followed by 43 base64url characters (32 random bytes from the OS); only
//! its SHA-256 is stored, so a leaked database does not leak usable tokens. Looking a token up by
//! that hash needs no secret comparison at all (and so has no timing to leak).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::fmt;

/// The prefix of every token secret (so that secret scanners and people recognise one).
pub const TOKEN_PREFIX: &str = "lzn_";

/// Who a request acts for, once its token is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "scope", rename_all = "lowercase")]
pub enum Principal {
    /// Sees and operates everything.
    Admin,
    /// Sees only this vendor's shipments and labels.
    Vendor {
        /// The vendor (WordPress user id).
        vendor_id: i64,
    },
}

impl Principal {
    /// Whether this principal may see `vendor_id`'s shipments.
    pub fn sees_vendor(self, vendor_id: i64) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Vendor { vendor_id: own } => own == vendor_id,
        }
    }

    /// Whether this is the admin.
    pub fn is_admin(self) -> bool {
        self == Principal::Admin
    }

    /// `admin` or `vendor`, as stored.
    pub fn scope(self) -> &'static str {
        match self {
            Principal::Admin => "admin",
            Principal::Vendor { .. } => "vendor",
        }
    }

    /// The vendor, for a vendor's token.
    pub fn vendor_id(self) -> Option<i64> {
        match self {
            Principal::Admin => None,
            Principal::Vendor { vendor_id } => Some(vendor_id),
        }
    }

    /// The principal stored as `scope` and `vendor_id`; `None` for an unknown scope or a vendor
    /// scope without a vendor.
    pub fn from_stored(scope: &str, vendor_id: Option<i64>) -> Option<Self> {
        match (scope, vendor_id) {
            ("admin", _) => Some(Principal::Admin),
            ("vendor", Some(vendor_id)) => Some(Principal::Vendor { vendor_id }),
            _ => None,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Admin => f.write_str("admin"),
            Principal::Vendor { vendor_id } => write!(f, "vendor {vendor_id}"),
        }
    }
}

/// A stored token, without its secret (which is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Its id (for `lazona tokens revoke`).
    pub id: i64,
    /// What it is for, as its creator named it.
    pub name: String,
    /// Whom it acts for.
    #[serde(flatten)]
    pub principal: Principal,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last used (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked token is refused.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A token's secret: shown once at creation, never stored. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret([REDACTED])")
    }
}

impl TokenSecret {
    /// The secret made of these random bytes (`lzn_` and their base64url). Callers pass 32
    /// bytes from the operating system's generator.
    pub fn from_random(bytes: &[u8; 32]) -> Self {
        TokenSecret(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// The secret, to show its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What is stored in its place.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

/// The SHA-256 of a token secret, in lowercase hex: what the store keeps and looks up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

impl TokenHash {
    /// The hash of whatever a caller presented (a well-formed secret or not).
    pub fn of(presented: &str) -> Self {
        let digest = Sha256::digest(presented.as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest {
            hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
        }
        TokenHash(hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_has_the_prefix_and_256_bits_and_hashes_to_hex() {
        let secret = TokenSecret::from_random(&[7; 32]);
        assert!(secret.expose().starts_with("lzn_"));
        assert_eq!(secret.expose().len(), 4 + 43);
        assert_eq!(format!("{secret:?}"), "TokenSecret([REDACTED])");
        let hash = secret.hash();
        assert_eq!(hash.0.len(), 64);
        assert!(
            hash.0
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(hash, TokenHash::of(secret.expose()));
        assert_ne!(hash, TokenSecret::from_random(&[8; 32]).hash());
        // The SHA-256 of "abc".
        assert_eq!(
            TokenHash::of("abc").0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn principals_see_what_they_should() {
        assert!(Principal::Admin.sees_vendor(6));
        assert!(Principal::Vendor { vendor_id: 6 }.sees_vendor(6));
        assert!(!Principal::Vendor { vendor_id: 6 }.sees_vendor(7));
        assert_eq!(
            Principal::from_stored("vendor", Some(6)),
            Some(Principal::Vendor { vendor_id: 6 })
        );
        assert_eq!(Principal::from_stored("vendor", None), None);
        assert_eq!(
            Principal::from_stored("admin", None),
            Some(Principal::Admin)
        );
        assert_eq!(Principal::from_stored("root", None), None);
    }
}
