//! The simulator's own certificate authority (made with `rcgen` at start-up): the
//! HTTPS server certificate and the client certificates it issues to callers of
//! its clusters, and the rustls server configuration that checks them.

use crate::error::Error;
use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::sync::Arc;

/// A certificate authority and the server certificate it signed.
pub struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

/// A client certificate with its private key, signed by the simulator's CA.
#[derive(Debug, Clone)]
pub(crate) struct ClientCert {
    /// Serial number, lower-case hex.
    pub(crate) serial: String,
    /// The certificate (DER), as the TLS layer will see it.
    pub(crate) der: Vec<u8>,
    /// The certificate (PEM).
    pub(crate) cert_pem: String,
    /// Its PKCS#8 private key (PEM).
    pub(crate) key_pem: String,
}

fn pki_error(error: rcgen::Error) -> Error {
    Error::Pki {
        reason: error.to_string(),
    }
}

fn tls_error(error: impl std::fmt::Display) -> Error {
    Error::Tls {
        reason: error.to_string(),
    }
}

fn to_time(at: DateTime<Utc>) -> Result<time::OffsetDateTime, Error> {
    time::OffsetDateTime::from_unix_timestamp(at.timestamp()).map_err(|e| Error::Pki {
        reason: format!("time {at} out of range: {e}"),
    })
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes = crate::random::bytes(16);
    bytes[0] &= 0x7f; // a positive INTEGER
    bytes[0] |= 0x40; // and no leading zero byte to strip
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
    (SerialNumber::from_slice(&bytes), hex)
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

impl Pki {
    /// A new CA (ECDSA P-256, ten years) and a server certificate (one year) for
    /// `127.0.0.1`, `::1`, `localhost` and `extra_hosts` (IP addresses or DNS names).
    pub fn generate(extra_hosts: &[String]) -> Result<Pki, Error> {
        let now = Utc::now();
        let ca_key = KeyPair::generate().map_err(pki_error)?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = common_name("fleetreg-sim CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca.not_before = to_time(now - Duration::hours(1))?;
        ca.not_after = to_time(now + Duration::days(3650))?;
        ca.serial_number = Some(random_serial().0);
        let ca_cert = ca.self_signed(&ca_key).map_err(pki_error)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut hosts: Vec<String> = ["127.0.0.1", "::1", "localhost"]
            .iter()
            .map(|h| (*h).to_owned())
            .collect();
        for host in extra_hosts {
            if !hosts.contains(host) {
                hosts.push(host.clone());
            }
        }
        let server_key = KeyPair::generate().map_err(pki_error)?;
        let mut server = CertificateParams::new(hosts).map_err(pki_error)?;
        server.distinguished_name = common_name("fleetreg-sim");
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.not_before = to_time(now - Duration::hours(1))?;
        server.not_after = to_time(now + Duration::days(365))?;
        server.serial_number = Some(random_serial().0);
        let server_cert = server.signed_by(&server_key, &issuer).map_err(pki_error)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            issuer,
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    /// The CA certificate (PEM): what clients trust, and what signs client certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client certificate with subject `CN={user}`, valid from an hour before
    /// `now` until `not_after`.
    pub(crate) fn issue_client(
        &self,
        user: &str,
        now: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<ClientCert, Error> {
        let key = KeyPair::generate().map_err(pki_error)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = common_name(user);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // Valid in wall-clock time too, even when the simulator's clock runs ahead.
        let not_before = (now - Duration::hours(1)).min(Utc::now() - Duration::hours(1));
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        let (serial_number, serial) = random_serial();
        params.serial_number = Some(serial_number);
        let cert = params.signed_by(&key, &self.issuer).map_err(pki_error)?;
        Ok(ClientCert {
            serial,
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The rustls configuration of the HTTPS listener: the server certificate, and
    /// client certificates requested but optional, verified against this CA.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(tls_error)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(tls_error)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone()], key)
            .map_err(tls_error)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_client_certs_with_the_user_as_cn() {
        let pki = Pki::generate(&["sim.example".to_owned()]).unwrap();
        assert!(pki.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let now = Utc::now();
        let cert = pki
            .issue_client("alice", now, now + Duration::hours(1))
            .unwrap();
        assert_eq!(cert.serial.len(), 32);
        assert!(cert.key_pem.contains("PRIVATE KEY"));
        assert_eq!(
            crate::der::subject_common_name(&cert.der).as_deref(),
            Some("alice")
        );
        pki.server_config().unwrap();
    }
}
