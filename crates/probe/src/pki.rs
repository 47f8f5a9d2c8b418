//! Certificates in PEM (CA bundles, client certificate chains): their DER and
//! validity, read with `x509-parser`. Only public material passes through here;
//! private keys never do.

use chrono::{DateTime, Utc};
use x509_parser::pem::Pem;

/// The certificates of one PEM text (public material).
#[derive(Debug, Clone)]
pub(crate) struct Certificates {
    /// Each `CERTIFICATE` block, DER, in order.
    pub(crate) ders: Vec<Vec<u8>>,
    /// End of validity of the first (for a client chain: the leaf).
    pub(crate) first_not_after: DateTime<Utc>,
}

/// Reads `pem` as one or more `CERTIFICATE` blocks, each a valid X.509
/// certificate. Text around the blocks is ignored (as PEM readers do); any other
/// block (a key pasted by mistake) is refused. The error says what is wrong
/// without quoting the input.
pub(crate) fn certificates(pem: &str) -> Result<Certificates, String> {
    let mut ders = Vec::new();
    let mut first_not_after = None;
    for (index, block) in Pem::iter_from_buffer(pem.as_bytes()).enumerate() {
        let number = index + 1;
        let block = block.map_err(|e| format!("PEM block {number} is malformed ({e})"))?;
        if block.label != "CERTIFICATE" {
            return Err(format!(
                "PEM block {number} is not a CERTIFICATE; only certificates belong here"
            ));
        }
        let certificate = block
            .parse_x509()
            .map_err(|_| format!("PEM block {number} is not a valid X.509 certificate"))?;
        if first_not_after.is_none() {
            let seconds = certificate.validity().not_after.timestamp();
            first_not_after = Some(
                DateTime::from_timestamp(seconds, 0)
                    .ok_or_else(|| format!("certificate {number} has an unusable NotAfter"))?,
            );
        }
        drop(certificate);
        ders.push(block.contents);
    }
    match first_not_after {
        Some(first_not_after) => Ok(Certificates {
            ders,
            first_not_after,
        }),
        None => Err("holds no PEM CERTIFICATE block".to_owned()),
    }
}

/// The certificates of a CA bundle (PEM) as roots for a reqwest client,
/// besides the web PKI's (`UrlChecker` and `NodeChecker`'s extra CAs).
pub(crate) fn reqwest_roots(pem: &str) -> Result<Vec<reqwest::Certificate>, crate::Error> {
    let setup = |reason: String| crate::Error::Setup { reason };
    certificates(pem)
        .map_err(setup)?
        .ders
        .iter()
        .map(|der| reqwest::Certificate::from_der(der).map_err(|e| setup(crate::cause_chain(&e))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn self_signed(not_after: DateTime<Utc>) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["example.test".to_owned()]).unwrap();
        params.not_after =
            time::OffsetDateTime::from_unix_timestamp(not_after.timestamp()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn reads_every_certificate_and_the_first_not_after() {
        let first = Utc.with_ymd_and_hms(2031, 5, 6, 7, 8, 9).unwrap();
        let second = Utc.with_ymd_and_hms(2029, 1, 1, 0, 0, 0).unwrap();
        let (a, _) = self_signed(first);
        let (b, _) = self_signed(second);
        let bundle = format!("# comment\n{a}\n{b}");
        let read = certificates(&bundle).unwrap();
        assert_eq!(read.ders.len(), 2);
        assert_eq!(read.first_not_after, first);
    }

    #[test]
    fn refuses_keys_garbage_and_nothing() {
        let (cert, key) = self_signed(Utc::now());
        let error = certificates(&format!("{cert}{key}")).unwrap_err();
        assert!(error.contains("block 2 is not a CERTIFICATE"), "{error}");
        assert!(!error.contains("BEGIN"), "{error}");
        assert!(certificates("no pem here").unwrap_err().contains("no PEM"));
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(certificates(broken)
            .unwrap_err()
            .contains("not a valid X.509"));
    }
}
