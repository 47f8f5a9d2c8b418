//! The base64 engines used for keys and envelopes.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;

/// Key files: standard alphabet, written with padding.
pub(crate) const KEY_B64: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Reading keys: standard alphabet, padding optional.
pub(crate) const KEY_B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Envelopes: URL-safe alphabet, no padding, canonical only (non-zero trailing
/// bits are rejected), so that every textual change to an envelope changes its
/// bytes or fails to parse.
pub(crate) const ENVELOPE_B64: GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
