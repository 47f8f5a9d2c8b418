//! Tests: errors.
#[allow(unused_imports)] use crate::helpers::*;
