//! Lenient field deserializers for WooCommerce's payloads: what a shop plausibly sends for a
//! field (a `null`, a number as a string, a string as a number) is read as the field's value;
//! anything else (an array where a name is expected, a word where a number is) is an error
//! naming the field, so that intake refuses it at the door instead of processing failing later.

use serde::de::{self, Visitor};
use serde::{Deserialize as _, Deserializer};
use std::fmt;

/// A string: a string, `null` (empty), or a number or boolean (its text).
pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_unit<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<String, E> {
            Ok(String::new())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

/// An integer: a JSON integer, a string holding one (`"5003"`, as the original accepted), or a
/// float with no fractional part. `null` is an error; use [`int_or_zero`] where it may be absent.
pub(crate) fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor { null: None })
}

/// [`int`], with `null` read as 0.
pub(crate) fn int_or_zero<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntVisitor { null: Some(0) })
}

struct IntVisitor {
    null: Option<i64>,
}

impl Visitor<'_> for IntVisitor {
    type Value = i64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // Exactly representable integers only; `as` saturates, so check the round trip.
        let n = v as i64;
        if v.fract() == 0.0 && (n as f64) == v {
            Ok(n)
        } else {
            Err(E::custom(format!("must be an integer, got {v}")))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        v.trim()
            .parse()
            .map_err(|_| E::custom(format!("must be an integer, got {v:?}")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        self.null
            .ok_or_else(|| E::custom("must be an integer, got null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<i64, E> {
        self.visit_unit()
    }
}

/// A value whose `null` means its default (an empty list, an empty address).
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
