//! [`EgressPolicy`]: which addresses the probe may connect to
//! (`health_check.allowed_networks`).
//!
//! Every address is judged in its canonical form (IPv4-mapped, SIIT,
//! IPv4-compatible and NAT64 IPv6 addresses as the IPv4 address they carry).
//! Some addresses are always blocked (link-local, cloud metadata services,
//! unspecified) unless an allowed CIDR that lies inside the blocked range names
//! them explicitly; that rule applies to every IPv4 address an IPv6 address
//! embeds ([`embedded_ipv4`]: also 6to4, Teredo, ISATAP and local-use NAT64 at
//! each prefix length), so no tunnel or translator form reaches a blocked one. With an empty
//! list everything else is allowed; otherwise an address is allowed only when it
//! lies in an allowed CIDR or the URL's host name matches an allowed host pattern.

use ipnet::IpNet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The configuration key, as named in messages.
const KEY: &str = "health_check.allowed_networks";

/// Ranges never connected to unless an allowed CIDR inside them names them, with
/// the reason given when they block.
const ALWAYS_BLOCKED: [(IpNet, &str); 7] = [
    (
        IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)), 16),
        "link-local/cloud metadata",
    ),
    (
        IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)), 10),
        "link-local",
    ),
    (
        IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)), 32),
        "cloud metadata",
    ),
    (
        IpNet::new_assert(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
            128,
        ),
        "cloud metadata",
    ),
    (
        IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)), 32),
        "cloud metadata",
    ),
    (
        IpNet::new_assert(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8),
        "unspecified",
    ),
    (
        IpNet::new_assert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128),
        "unspecified",
    ),
];

/// Where the probe may connect: allowed CIDRs and host patterns. `Default` is the
/// empty list (everything but the always-blocked ranges).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    networks: Vec<IpNet>,
    hosts: Vec<HostPattern>,
}

/// An allowed host name: exact, or `*.suffix` (any depth below, not the apex).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// The suffix with its leading dot, e.g. `.example.com`.
    Subdomains(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

/// An entry of `health_check.allowed_networks` that is neither a CIDR, an IP
/// address nor a host pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{KEY}: invalid entry {entry:?}: {reason}")]
pub struct PolicyError {
    /// The entry as configured.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockReason {
    /// In an always-blocked range (e.g. `link-local/cloud metadata`) that no
    /// allowed CIDR names explicitly.
    AlwaysBlocked(&'static str),
    /// The list is not empty and neither the address nor the host name is in it.
    NotAllowed,
}

/// A connection the policy refused: nothing was sent to `address`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(host.as_deref(), *address, *reason))]
pub struct Blocked {
    /// The host name the address was resolved from (`None` for an IP literal).
    pub host: Option<String>,
    /// The address, canonical (an IPv4-mapped IPv6 address as IPv4).
    pub address: IpAddr,
    /// Why.
    pub reason: BlockReason,
}

/// The message of a block, e.g. `blocked by health_check.allowed_networks:
/// 169.254.169.254 (link-local/cloud metadata)`.
pub(crate) fn describe(host: Option<&str>, address: IpAddr, reason: BlockReason) -> String {
    let mut text = format!("blocked by {KEY}: {address}");
    match reason {
        BlockReason::AlwaysBlocked(label) => {
            text.push_str(&format!(" ({label})"));
            if let Some(host) = host {
                text.push_str(&format!(", resolved from {host}"));
            }
        }
        BlockReason::NotAllowed => {
            text.push_str(" is not in an allowed network");
            if let Some(host) = host {
                text.push_str(&format!(" and {host} matches no allowed host pattern"));
            }
        }
    }
    text
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::AlwaysBlocked(label) => f.write_str(label),
            BlockReason::NotAllowed => f.write_str("not in an allowed network"),
        }
    }
}

impl EgressPolicy {
    /// Parses `health_check.allowed_networks`: CIDRs (`10.0.0.0/8`, `fd00::/8`),
    /// bare IP addresses (/32 or /128), host names (`api.example.com`) and
    /// subdomain patterns (`*.example.com`). The first invalid entry is the error.
    pub fn parse(entries: &[String]) -> Result<EgressPolicy, PolicyError> {
        let mut policy = EgressPolicy::default();
        for entry in entries {
            let invalid = |reason: String| PolicyError {
                entry: entry.clone(),
                reason,
            };
            let text = entry.trim();
            if text.is_empty() {
                return Err(invalid("empty".into()));
            }
            if text.contains('/') {
                let net: IpNet = text
                    .parse()
                    .map_err(|e| invalid(format!("not a valid CIDR ({e})")))?;
                policy.networks.push(net.trunc());
            } else if let Ok(ip) = text.parse::<IpAddr>() {
                policy.networks.push(IpNet::from(ip));
            } else if text.contains(':') {
                return Err(invalid("not a valid IP address".into()));
            } else {
                policy.hosts.push(parse_pattern(text).map_err(invalid)?);
            }
        }
        Ok(policy)
    }

    /// Whether this is the default policy (no allowed networks or hosts listed).
    pub fn is_default(&self) -> bool {
        self.networks.is_empty() && self.hosts.is_empty()
    }

    /// Whether the probe may connect to `addr`, reached through the URL host name
    /// `host` (`None` when the URL holds an IP literal).
    pub fn check(&self, host: Option<&str>, addr: IpAddr) -> Result<(), Blocked> {
        let canonical = canonical(addr);
        let forms = [canonical, addr];
        let host = host.map(normalise_host);
        let block = |reason| Blocked {
            host: host.clone(),
            address: canonical,
            reason,
        };
        // The always-blocked rules see every address this one carries: the
        // address itself and each IPv4 address a tunnel or translator form
        // embeds (a 6to4 or Teredo address reaches its IPv4 through a relay).
        let embedded = match addr {
            IpAddr::V6(v6) => embedded_ipv4(v6),
            IpAddr::V4(_) => Vec::new(),
        };
        let all_forms: Vec<IpAddr> = forms
            .into_iter()
            .chain(embedded.into_iter().map(IpAddr::V4))
            .collect();
        for (reserved, label) in &ALWAYS_BLOCKED {
            let inside: Vec<&IpAddr> = all_forms.iter().filter(|a| reserved.contains(*a)).collect();
            if inside.is_empty() {
                continue;
            }
            // Only a CIDR inside the blocked range is a deliberate exception:
            // `0.0.0.0/0` does not open the metadata service.
            let named = self
                .networks
                .iter()
                .any(|n| reserved.contains(n) && inside.iter().any(|a| n.contains(*a)));
            if !named {
                return Err(block(BlockReason::AlwaysBlocked(label)));
            }
        }
        if ALWAYS_BLOCKED
            .iter()
            .any(|(reserved, _)| all_forms.iter().any(|a| reserved.contains(a)))
        {
            // Every blocked range it touches is named explicitly.
            return Ok(());
        }
        if self.is_default() {
            return Ok(());
        }
        let by_network = self
            .networks
            .iter()
            .any(|n| forms.iter().any(|a| n.contains(a)));
        let by_host = host
            .as_deref()
            .is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)));
        if by_network || by_host {
            Ok(())
        } else {
            Err(block(BlockReason::NotAllowed))
        }
    }
}

/// A host pattern: an exact name or `*.` followed by a name.
fn parse_pattern(text: &str) -> Result<HostPattern, String> {
    let name = normalise_host(text);
    let (subdomains, rest) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, name),
    };
    validate_name(&rest)?;
    Ok(if subdomains {
        HostPattern::Subdomains(format!(".{rest}"))
    } else {
        HostPattern::Exact(rest)
    })
}

/// A DNS name of letters, digits, `-` and `_`, not ending in a numeric label
/// (that would be a malformed IP address).
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("not a CIDR, an IP address or a host name".into());
    }
    if name.contains('*') {
        return Err("`*` is allowed only as a leading `*.` label".into());
    }
    for label in name.split('.') {
        let valid_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty()
            || label.len() > 63
            || !valid_chars
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "not a CIDR, an IP address or a host name (bad label {label:?})"
            ));
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not a valid IP address or host name".into());
    }
    Ok(())
}

/// Lower case, without a trailing dot.
fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The address as judged: IPv6 addresses that stand for an IPv4 address, as
/// that address: IPv4-mapped (`::ffff:a.b.c.d`), SIIT IPv4-translated
/// (`::ffff:0:a.b.c.d`, RFC 7915), IPv4-compatible (`::a.b.c.d`, first octet
/// non-zero so `::` and `::1` stay IPv6), well-known NAT64
/// (`64:ff9b::a.b.c.d`, RFC 6052) and local-use NAT64 with a /96 prefix
/// (`64:ff9b:1::a.b.c.d`, RFC 8215). Other embeddings (6to4, Teredo, other
/// NAT64 prefix lengths) keep their IPv6 form but are judged by
/// [`embedded_ipv4`] too.
pub fn canonical(addr: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = addr else {
        return addr;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let low = ipv4_at(&v6.octets(), [12, 13, 14, 15]);
    let compatible = s[..6].iter().all(|&x| x == 0) && low.octets()[0] != 0;
    let translated = s[..6] == [0, 0, 0, 0, 0xffff, 0];
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let local_nat64 = s[..6] == [0x64, 0xff9b, 1, 0, 0, 0];
    if compatible || translated || nat64 || local_nat64 {
        IpAddr::V4(low)
    } else {
        addr
    }
}

/// Every IPv4 address `v6` may carry, so the IPv4 rules apply to each:
///
/// - the last 32 bits of `::ffff:0:0/96` (mapped), `::ffff:0:0:0/96` (SIIT),
///   `::/96` (compatible, first octet non-zero) and `64:ff9b::/96` (NAT64);
/// - `64:ff9b:1::/48` (local-use NAT64, RFC 8215) at every RFC 6052 position
///   its prefix may have (/48, /56, /64, /96);
/// - `2002::/16` (6to4): bits 16 to 48;
/// - `2001::/32` (Teredo): the server (bits 32 to 64) and the client (the last
///   32 bits, inverted);
/// - ISATAP interface identifiers (`…:0:5efe:a.b.c.d`, `…:200:5efe:a.b.c.d`).
pub fn embedded_ipv4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let o = v6.octets();
    let s = v6.segments();
    let mut others = Vec::new();
    if s[..3] == [0x64, 0xff9b, 1] {
        // RFC 6052 2.2: octet 8 (bits 64 to 71) is always skipped.
        others.push(ipv4_at(&o, [6, 7, 9, 10])); // /48
        others.push(ipv4_at(&o, [7, 9, 10, 11])); // /56
        others.push(ipv4_at(&o, [9, 10, 11, 12])); // /64
    }
    if s[0] == 0x2002 {
        others.push(ipv4_at(&o, [2, 3, 4, 5]));
    }
    if s[..2] == [0x2001, 0] {
        others.push(ipv4_at(&o, [4, 5, 6, 7]));
        let client = ipv4_at(&o, [12, 13, 14, 15]);
        others.push(Ipv4Addr::from(!u32::from(client)));
    }
    if matches!(s[4], 0 | 0x200) && s[5] == 0x5efe {
        others.push(ipv4_at(&o, [12, 13, 14, 15]));
    }
    // Beyond the canonical form, `0.0.0.0/8` is no destination a relay
    // forwards to, and the zero octets of another position would read as it
    // (`64:ff9b:1::a.b.c.d` read at /48 is `0.0.0.0`).
    others.retain(|v4| v4.octets()[0] != 0);
    let mut found: Vec<Ipv4Addr> = match canonical(IpAddr::V6(v6)) {
        IpAddr::V4(v4) => vec![v4],
        IpAddr::V6(_) => Vec::new(),
    };
    for v4 in others {
        if !found.contains(&v4) {
            found.push(v4);
        }
    }
    found
}

/// The IPv4 address of four octets of an IPv6 address.
fn ipv4_at(octets: &[u8; 16], at: [usize; 4]) -> Ipv4Addr {
    Ipv4Addr::new(octets[at[0]], octets[at[1]], octets[at[2]], octets[at[3]])
}

/// The address a URL host denotes when it is an IP literal: what the standard
/// library parses (`127.0.0.1`, `[::1]`, as hyper's connector does), else what
/// the WHATWG URL rules make of it (`2130706433`, `0x7f.1`). `None` for a name.
pub(crate) fn literal_address(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip);
    }
    match url::Host::parse(bare) {
        Ok(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Ok(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> EgressPolicy {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        EgressPolicy::parse(&entries).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn parses_cidrs_addresses_and_patterns() {
        let p = policy(&[
            "10.0.0.0/8",
            "fd00::/8",
            "192.168.1.7",
            "2001:db8::1",
            "10.1.2.3/8",
            "API.Prod.Example.com.",
            "*.example.org",
        ]);
        assert_eq!(p.networks.len(), 5);
        assert_eq!(p.networks[4].to_string(), "10.0.0.0/8", "host bits dropped");
        assert_eq!(p.networks[2].to_string(), "192.168.1.7/32");
        assert_eq!(p.networks[3].to_string(), "2001:db8::1/128");
        assert_eq!(
            p.hosts,
            vec![
                HostPattern::Exact("api.prod.example.com".into()),
                HostPattern::Subdomains(".example.org".into()),
            ]
        );
        assert!(EgressPolicy::parse(&[]).unwrap().is_default());
    }

    #[test]
    fn invalid_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "",
            "  ",
            "999.1.1.1",
            "fd00::zz",
            "a..b",
            "foo.*.com",
            "*",
            "*.",
            "-bad.example.com",
            "http://example.com",
            "exa mple.com",
            "exämple.com",
        ] {
            let err = EgressPolicy::parse(&[bad.to_owned()]).unwrap_err();
            assert_eq!(err.entry, bad);
            let text = err.to_string();
            assert!(text.contains("health_check.allowed_networks"), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
        }
        let err = EgressPolicy::parse(&["10.0.0.0/8".into(), "nope/x".into()]).unwrap_err();
        assert_eq!(err.entry, "nope/x");
    }

    #[test]
    fn cidrs_allow_what_they_contain_and_nothing_else() {
        let p = policy(&["10.0.0.0/8", "fd00::/8", "192.168.1.7"]);
        assert!(p.check(None, ip("10.255.0.1")).is_ok());
        assert!(p.check(None, ip("fd12::1")).is_ok());
        assert!(p.check(None, ip("192.168.1.7")).is_ok());
        for denied in ["11.0.0.1", "192.168.1.8", "fe00::1", "127.0.0.1", "::1"] {
            let err = p.check(None, ip(denied)).unwrap_err();
            assert_eq!(err.reason, BlockReason::NotAllowed, "{denied}");
            assert_eq!(
                err.to_string(),
                format!("blocked by health_check.allowed_networks: {denied} is not in an allowed network")
            );
        }
    }

    #[test]
    fn host_patterns_match_names_not_addresses() {
        let p = policy(&["api.prod.example.com", "*.example.org"]);
        let addr = ip("203.0.113.9");
        assert!(p.check(Some("api.prod.example.com"), addr).is_ok());
        assert!(p.check(Some("API.prod.example.com."), addr).is_ok());
        assert!(p.check(Some("a.example.org"), addr).is_ok());
        assert!(p.check(Some("a.b.c.example.org"), addr).is_ok());
        for denied in [
            "example.org",
            "badexample.org",
            "prod.example.com",
            "x.api.prod.example.com",
            "example.org.evil.com",
        ] {
            let err = p.check(Some(denied), addr).unwrap_err();
            assert_eq!(err.reason, BlockReason::NotAllowed, "{denied}");
            assert!(err.to_string().contains(denied), "{err}");
        }
        assert!(
            p.check(None, addr).is_err(),
            "an IP literal matches no pattern"
        );
    }

    #[test]
    fn the_always_blocked_set_applies_to_every_policy() {
        let default = EgressPolicy::default();
        let open = policy(&["0.0.0.0/0", "::/0", "*.example.com"]);
        for (addr, label) in [
            ("169.254.169.254", "link-local/cloud metadata"),
            ("169.254.0.1", "link-local/cloud metadata"),
            ("fe80::1", "link-local"),
            ("100.100.100.200", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("168.63.129.16", "cloud metadata"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
        ] {
            for p in [&default, &open] {
                let err = p.check(None, ip(addr)).unwrap_err();
                assert_eq!(err.reason, BlockReason::AlwaysBlocked(label), "{addr}");
                let by_name = p.check(Some("x.example.com"), ip(addr)).unwrap_err();
                assert_eq!(by_name.reason, BlockReason::AlwaysBlocked(label));
            }
        }
        assert_eq!(
            default
                .check(None, ip("169.254.169.254"))
                .unwrap_err()
                .to_string(),
            "blocked by health_check.allowed_networks: 169.254.169.254 (link-local/cloud metadata)"
        );
        for allowed in [
            "127.0.0.1",
            "10.0.0.1",
            "8.8.8.8",
            "::1",
            "2001:db8::1",
            "100.100.100.201",
        ] {
            assert!(default.check(None, ip(allowed)).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn an_explicit_cidr_inside_a_blocked_range_overrides_it() {
        let p = policy(&["169.254.10.0/24", "fd00:ec2::254"]);
        assert!(p.check(None, ip("169.254.10.7")).is_ok());
        assert!(p.check(None, ip("::ffff:169.254.10.7")).is_ok());
        assert!(p.check(None, ip("fd00:ec2::254")).is_ok());
        let err = p.check(None, ip("169.254.169.254")).unwrap_err();
        assert_eq!(
            err.reason,
            BlockReason::AlwaysBlocked("link-local/cloud metadata")
        );
        // A broad CIDR around the range is not an exception.
        let broad = policy(&["169.0.0.0/8"]);
        assert!(broad.check(None, ip("169.1.0.1")).is_ok());
        assert!(broad.check(None, ip("169.254.169.254")).is_err());
    }

    #[test]
    fn embedded_ipv4_is_judged_as_ipv4() {
        let default = EgressPolicy::default();
        for form in [
            "::ffff:169.254.169.254",
            "::ffff:a9fe:a9fe",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            let err = default.check(None, ip(form)).unwrap_err();
            assert_eq!(err.address, ip("169.254.169.254"), "{form}");
        }
        let p = policy(&["127.0.0.2/32"]);
        assert!(p.check(None, ip("::ffff:127.0.0.2")).is_ok());
        assert!(p.check(None, ip("::ffff:127.0.0.1")).is_err());
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("::")), ip("::"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        // A mapped form may also be allowed as written.
        let mapped = policy(&["::ffff:0:0/96"]);
        assert!(mapped.check(None, ip("::ffff:10.0.0.1")).is_ok());
    }

    #[test]
    fn literals_are_read_as_hyper_and_whatwg_read_them() {
        for (host, expected) in [
            ("169.254.169.254", Some("169.254.169.254")),
            ("[::ffff:a9fe:a9fe]", Some("::ffff:169.254.169.254")),
            ("::1", Some("::1")),
            ("2852039166", Some("169.254.169.254")),
            ("0xa9fea9fe", Some("169.254.169.254")),
            ("0251.0376.0251.0376", Some("169.254.169.254")),
            ("127.1", Some("127.0.0.1")),
            ("localhost", None),
            ("api.example.com", None),
        ] {
            assert_eq!(literal_address(host), expected.map(ip), "{host}");
        }
    }
}
