//! The YAML configuration file (`Settings::from_yaml`): any text must give
//! settings or an error message, never a panic.
#![no_main]

use fleetreg_server::settings::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Settings::from_yaml(yaml);
});
