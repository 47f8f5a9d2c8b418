//! `serve` over HTTPS, and the refusal to listen on a non-loopback address in
//! plain HTTP.

use crate::helpers::{test_settings, TEST_ADMIN_TOKEN};
use fleetreg_server::tls::TlsFiles;
use fleetreg_server::Application;

/// A self-signed certificate for 127.0.0.1 written to `dir`; returns the files
/// and the certificate PEM (the client's root).
pub fn self_signed(dir: &std::path::Path) -> (TlsFiles, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_pem = certified.cert.pem();
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, &cert_pem).unwrap();
    std::fs::write(&files.key, certified.signing_key.serialize_pem()).unwrap();
    (files, cert_pem)
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (files, cert_pem) = self_signed(dir.path());
    let mut settings = test_settings(&format!("sqlite://{}", dir.path().join("tls.db").display()));
    settings.tls = Some(files);
    let app = Application::build(settings).await.expect("starts with TLS");
    let port = app.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let clusters = client
        .get(format!("{base}/api/v1/clusters"))
        .bearer_auth(TEST_ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(clusters.status(), 200);
    let anonymous = client
        .get(format!("{base}/api/v1/clusters"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn refuses_plain_http_beyond_loopback_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("open.db").display());
    let mut settings = test_settings(&url);
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let error = Application::build(settings.clone())
        .await
        .err()
        .expect("refused");
    assert!(error.to_string().contains("without TLS"), "{error}");

    settings.allow_insecure_listen = true;
    let app = Application::build(settings)
        .await
        .expect("allowed explicitly");
    app.store().close().await;

    // A key that does not parse is a clear start-up error.
    let other = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&format!(
        "sqlite://{}",
        other.path().join("bad.db").display()
    ));
    std::fs::write(other.path().join("bad.crt"), "not a certificate").unwrap();
    std::fs::write(other.path().join("bad.key"), "not a key").unwrap();
    settings.tls = Some(TlsFiles {
        cert: other.path().join("bad.crt"),
        key: other.path().join("bad.key"),
    });
    let error = Application::build(settings).await.err().expect("refused");
    assert!(error.to_string().contains("certificate"), "{error}");
}
