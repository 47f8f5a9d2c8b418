//! A laptop's records as RFC 1035 master files, one zone per domain, for a
//! local authoritative server (Knot, NSD, BIND) the laptop's resolver
//! forwards the domains to.

use crate::{DomainName, NodeConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// SOA refresh (seconds): how often a secondary checks the serial.
pub const SOA_REFRESH: u32 = 3600;
/// SOA retry (seconds): how soon a secondary retries a failed refresh.
pub const SOA_RETRY: u32 = 900;
/// SOA expire (seconds, two weeks): when a secondary stops answering.
pub const SOA_EXPIRE: u32 = 1_209_600;
/// SOA minimum (seconds): the negative-caching TTL (RFC 2308).
pub const SOA_MINIMUM: u32 = 300;

/// How [`render_zones`] renders the zones' SOA and NS records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneOptions {
    /// The primary name server (SOA MNAME and the NS record); default
    /// `ns.<domain>`.
    pub primary_ns: Option<DomainName>,
    /// The SOA RNAME, the administrator's mailbox with `@` as a dot; default
    /// `hostmaster.<domain>`.
    pub hostmaster: Option<DomainName>,
    /// The name server's address, written as its A (or AAAA) record when the
    /// name server is inside the zone (default 127.0.0.1: the laptop itself).
    pub ns_address: IpAddr,
    /// The zone's default TTL (`$TTL`, seconds; default 300).
    pub ttl: u32,
}

impl Default for ZoneOptions {
    fn default() -> Self {
        ZoneOptions {
            primary_ns: None,
            hostmaster: None,
            ns_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ttl: 300,
        }
    }
}

/// One rendered zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFile {
    /// The zone's origin (the records' domain).
    pub origin: DomainName,
    /// The master file.
    pub text: String,
}

/// The SOA serial of the desired configuration at `revision` (a change-log
/// revision): `revision` modulo 2^32. Revisions only grow, and a zone's
/// serial must only grow in RFC 1982 serial arithmetic: the first 4 294 967 295
/// revisions map to themselves, and a wrap past 2^32 - 1 to a small number is
/// still an increase as long as fewer than 2^31 revisions lie between two
/// renderings of the zone, so 4 billion changes fit before anything needs
/// care. (A negative revision, which the store never assigns, maps into the
/// same range.)
pub fn zone_serial(revision: i64) -> u32 {
    u32::try_from(revision.rem_euclid(1_i64 << 32)).unwrap_or(u32::MAX)
}

/// `name` relative to `origin` (`@` for the apex), `None` when it is not in
/// the zone.
fn relative<'a>(name: &'a str, origin: &str) -> Option<&'a str> {
    if name == origin {
        return Some("@");
    }
    name.strip_suffix(origin)?
        .strip_suffix('.')
        .filter(|prefix| !prefix.is_empty())
}

fn record_type(address: &IpAddr) -> &'static str {
    match address {
        IpAddr::V4(_) => "A",
        IpAddr::V6(_) => "AAAA",
    }
}

/// One master file per domain that has records in `config`, sorted by
/// domain:
///
/// ```text
/// ; comment line naming the node
/// $ORIGIN curiios.com.
/// $TTL 300
/// @ IN SOA ns.curiios.com. hostmaster.curiios.com. ( serial refresh retry expire minimum )
/// @ IN NS ns.curiios.com.
/// ns IN A 127.0.0.1
/// photos IN A 100.64.0.1
/// ```
///
/// The SOA carries `serial` (see [`zone_serial`]) and [`SOA_REFRESH`],
/// [`SOA_RETRY`], [`SOA_EXPIRE`], [`SOA_MINIMUM`]; MNAME, RNAME and the name
/// server's address come from `options`. The name server's address record is
/// written only when its name is inside the zone and no record has that
/// name. Each hostname gets an A (IPv4) or AAAA (IPv6) record with a name
/// relative to the origin (`@` for the domain itself), sorted, without
/// repeats; a record whose hostname is not inside its domain is left out.
pub fn render_zones(config: &NodeConfig, serial: u32, options: &ZoneOptions) -> Vec<ZoneFile> {
    let mut zones: BTreeMap<&DomainName, BTreeSet<(&str, &'static str, String)>> = BTreeMap::new();
    for record in &config.records {
        if let Some(name) = relative(&record.hostname, record.domain.as_str()) {
            zones.entry(&record.domain).or_default().insert((
                name,
                record_type(&record.address),
                record.address.to_string(),
            ));
        }
    }
    zones
        .into_iter()
        .map(|(origin, records)| {
            let ns = options
                .primary_ns
                .as_ref()
                .map_or_else(|| format!("ns.{origin}"), |n| n.to_string());
            let hostmaster = options
                .hostmaster
                .as_ref()
                .map_or_else(|| format!("hostmaster.{origin}"), |h| h.to_string());
            let mut lines: Vec<(String, &str, String)> = Vec::new();
            lines.push(("@".into(), "NS", format!("{ns}.")));
            if let Some(ns_name) = relative(&ns, origin.as_str()) {
                if !records.iter().any(|(name, _, _)| *name == ns_name) {
                    lines.push((
                        ns_name.to_owned(),
                        record_type(&options.ns_address),
                        options.ns_address.to_string(),
                    ));
                }
            }
            lines.extend(
                records
                    .into_iter()
                    .map(|(name, kind, address)| (name.to_owned(), kind, address)),
            );
            let width = lines.iter().map(|(name, _, _)| name.len()).max().unwrap_or(1);
            let mut text = format!(
                "; Zone {origin} of node {}, rendered by fleetreg: edits are overwritten.\n\
                 $ORIGIN {origin}.\n\
                 $TTL {}\n\
                 {:<width$} IN SOA  {ns}. {hostmaster}. ( {serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {SOA_MINIMUM} )\n",
                config.node, options.ttl, "@"
            );
            for (name, kind, data) in lines {
                text.push_str(&format!("{name:<width$} IN {kind:<4} {data}\n"));
            }
            ZoneFile {
                origin: origin.clone(),
                text,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{domain, laptop};
    use crate::DnsRecord;

    #[test]
    fn serials_are_revisions_modulo_two_to_the_32() {
        assert_eq!(zone_serial(0), 0);
        assert_eq!(zone_serial(42), 42);
        assert_eq!(zone_serial(u32::MAX as i64), u32::MAX);
        assert_eq!(zone_serial(1 << 32), 0);
        assert_eq!(zone_serial((1 << 32) + 5), 5);
        assert_eq!(zone_serial(-1), u32::MAX);
        assert_eq!(zone_serial(i64::MAX), u32::MAX);
    }

    #[test]
    fn one_zone_per_domain_with_relative_names() {
        let zones = render_zones(&laptop(), 7, &ZoneOptions::default());
        let origins: Vec<&str> = zones.iter().map(|z| z.origin.as_str()).collect();
        assert_eq!(origins, ["curiios.com", "vinaysachdeva.com"]);
        assert_eq!(
            zones[0].text,
            "; Zone curiios.com of node laptop, rendered by fleetreg: edits are overwritten.\n\
             $ORIGIN curiios.com.\n\
             $TTL 300\n\
             @      IN SOA  ns.curiios.com. hostmaster.curiios.com. ( 7 3600 900 1209600 300 )\n\
             @      IN NS   ns.curiios.com.\n\
             ns     IN A    127.0.0.1\n\
             chat   IN AAAA fd7a:115c:a1e0::1\n\
             photos IN A    100.64.0.1\n"
        );
        assert!(zones[1].text.contains("photos IN A    100.64.0.2\n"));
    }

    #[test]
    fn options_name_the_server_and_the_mailbox() {
        let options = ZoneOptions {
            primary_ns: Some(domain("ns1.example.net")),
            hostmaster: Some(domain("admin.example.net")),
            ns_address: "::1".parse().unwrap(),
            ttl: 60,
        };
        let zones = render_zones(&laptop(), 1, &options);
        let text = &zones[0].text;
        assert!(text.contains("$TTL 60\n"));
        assert!(text.contains("IN SOA  ns1.example.net. admin.example.net. ( 1 "));
        assert!(text.contains("IN NS   ns1.example.net.\n"));
        // Out of the zone: no address record for the name server.
        assert!(!text.lines().any(|l| l.starts_with("ns")), "{text}");
        let in_zone = ZoneOptions {
            primary_ns: Some(domain("dns.curiios.com")),
            ..options
        };
        let zones = render_zones(&laptop(), 1, &in_zone);
        assert!(
            zones[0].text.contains("dns    IN AAAA ::1\n"),
            "{}",
            zones[0].text
        );
        assert!(
            !zones[1].text.lines().any(|l| l.starts_with("dns")),
            "{}",
            zones[1].text
        );
    }

    #[test]
    fn apex_foreign_and_repeated_records() {
        let mut config = laptop();
        let record = |hostname: &str, d: &str, address: &str| DnsRecord {
            hostname: hostname.to_owned(),
            domain: domain(d),
            address: address.parse().unwrap(),
        };
        config.records = vec![
            record("curiios.com", "curiios.com", "100.64.0.3"),
            record("photos.other.org", "curiios.com", "100.64.0.4"),
            record("xcuriios.com", "curiios.com", "100.64.0.4"),
            record("ns.curiios.com", "curiios.com", "100.64.0.5"),
            record("ns.curiios.com", "curiios.com", "100.64.0.5"),
            record("lone.other.org", "other.org", "100.64.0.6"),
        ];
        let zones = render_zones(&config, 3, &ZoneOptions::default());
        assert_eq!(zones.len(), 2);
        let text = &zones[0].text;
        let body: Vec<&str> = text.lines().skip(4).collect();
        assert_eq!(
            body,
            [
                "@  IN NS   ns.curiios.com.",
                "@  IN A    100.64.0.3",
                "ns IN A    100.64.0.5"
            ]
        );
        assert_eq!(zones[1].origin.as_str(), "other.org");
    }

    #[test]
    fn no_records_no_zones() {
        let mut config = laptop();
        config.records.clear();
        assert!(render_zones(&config, 1, &ZoneOptions::default()).is_empty());
    }

    #[test]
    fn rendering_is_deterministic() {
        let options = ZoneOptions::default();
        let mut reversed = laptop();
        reversed.records.reverse();
        assert_eq!(
            render_zones(&laptop(), 5, &options),
            render_zones(&reversed, 5, &options)
        );
    }
}
