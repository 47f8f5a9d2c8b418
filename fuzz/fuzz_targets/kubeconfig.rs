//! An uploaded kubeconfig (`ClusterCredential::from_kubeconfig`): any text must
//! give a credential or a `CredentialError`, never a panic, and an accepted one
//! must answer its accessors.
#![no_main]

use fleetreg_probe::ClusterCredential;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(credential) = ClusterCredential::from_kubeconfig(yaml) {
        let _ = credential.expires_at();
        let _ = credential.service_account();
        let _ = credential.server();
        let _ = credential.tls_server_name();
        let _ = format!("{credential:?}");
    }
});
