//! `health_check.allowed_networks` entries (`EgressPolicy::parse`) and the
//! address checks: the first line is the policy (entries separated by `,`),
//! the bytes after it an address (16 bytes: IPv6, 4: IPv4). An address the
//! metadata rules refuse is refused in every form that embeds it.
#![no_main]

use fleetreg_probe::EgressPolicy;
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (policy, rest) = data.split_at(split);
    let rest = rest.get(1..).unwrap_or_default();
    let Ok(policy) = std::str::from_utf8(policy) else {
        return;
    };
    let entries: Vec<String> = policy.split(',').map(str::to_owned).collect();
    let Ok(policy) = EgressPolicy::parse(&entries) else {
        return;
    };
    let addr = if let Ok(bytes) = <[u8; 16]>::try_from(rest) {
        IpAddr::V6(Ipv6Addr::from(bytes))
    } else if let Ok(bytes) = <[u8; 4]>::try_from(rest) {
        IpAddr::V4(Ipv4Addr::from(bytes))
    } else {
        return;
    };
    let _ = policy.check(Some("fuzz.example"), addr);
    let _ = fleetreg_probe::canonical(addr);
    if let IpAddr::V6(v6) = addr {
        let _ = fleetreg_probe::embedded_ipv4(v6);
    }
    // An IPv4 address always blocked stays blocked in every IPv6 form that
    // embeds it (mapped, SIIT, NAT64, local-use NAT64, 6to4).
    if let IpAddr::V4(v4) = addr {
        let default = EgressPolicy::default();
        if default.check(None, addr).is_err() && v4.octets()[0] != 0 {
            let [a, b, c, d] = v4.octets();
            let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            for form in [
                Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, hi, lo),
                Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
                Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, hi, lo),
                Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
            ] {
                assert!(
                    default.check(None, IpAddr::V6(form)).is_err(),
                    "{form} lets {v4} through"
                );
            }
        }
    }
});
