//! Just enough DER to read the subject common name of an X.509 certificate that
//! the TLS layer has already verified (no parsing crate needed for one field).

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const EXPLICIT_VERSION: u8 = 0xa0;
/// `2.5.4.3`, commonName.
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// One tag-length-value at the start of `input`: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// The first commonName of the certificate's subject, if it has one.
pub(crate) fn subject_common_name(certificate: &[u8]) -> Option<String> {
    let (tag, cert, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, after_version) = tlv(rest)?;
    if tag == EXPLICIT_VERSION {
        rest = after_version;
    }
    // serialNumber, signature, issuer, validity; then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (_, mut rdns, _) = tlv(rest)?;
    while !rdns.is_empty() {
        let (_, set, next) = tlv(rdns)?;
        rdns = next;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (_, attribute, next) = tlv(attributes)?;
            attributes = next;
            let (tag, oid, value) = tlv(attribute)?;
            if tag == OID && oid == COMMON_NAME {
                let (_, text, _) = tlv(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subject_cn_not_the_issuer_cn() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "the-ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.signed_by(&key, &issuer).unwrap();
        assert_eq!(subject_common_name(cert.der()).as_deref(), Some("alice"));
        assert_eq!(subject_common_name(b"\x30\x03garbage"), None);
        assert_eq!(subject_common_name(&[]), None);
    }
}
