//! Tests: store_contract.
#[allow(unused_imports)] use crate::helpers::*;
