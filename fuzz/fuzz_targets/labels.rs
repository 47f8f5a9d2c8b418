//! Label keys and values (`validate_label_key`, `validate_label_value`) and the
//! `label=key=value` selector built from them: the first line is the key, the
//! rest the value. A selector is accepted exactly when both halves are.
#![no_main]

use fleetreg_model::{validate_label_key, validate_label_value, LabelSelector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (key, value) = text.split_once('\n').unwrap_or((text, ""));
    let key_ok = validate_label_key(key).is_ok();
    let value_ok = validate_label_value(key, value).is_ok();
    if !key.contains('=') {
        let selector = LabelSelector::parse(&format!("{key}={value}"));
        assert_eq!(selector.is_ok(), key_ok && value_ok, "{key:?} = {value:?}");
    }
});
