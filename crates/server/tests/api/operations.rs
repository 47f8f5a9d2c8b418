//! Tests: operations.
#[allow(unused_imports)] use crate::helpers::*;
