//! Tests: listing.
#[allow(unused_imports)] use crate::helpers::*;
