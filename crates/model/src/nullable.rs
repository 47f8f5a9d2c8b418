//! Deserialising "absent" apart from "null" for PUT bodies.

use serde::{Deserialize, Deserializer};

/// Use as `#[serde(default, deserialize_with = "nullable::double")]` on an
/// `Option<Option<T>>`: absent → `None`, `null` → `Some(None)`, value → `Some(Some(v))`.
pub(crate) fn double<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
