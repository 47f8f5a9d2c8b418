//! A bearer token read as a JWT (`exp`, service account claims): any token
//! must give an answer or `None`, never a panic.
#![no_main]

use fleetreg_probe::ClusterCredential;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(credential) = ClusterCredential::from_token(SecretString::from(token), None, false) {
        let _ = credential.expires_at();
        let _ = credential.api_token_expires_at();
        let _ = credential.service_account();
    }
});
