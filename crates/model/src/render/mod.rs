//! A node's desired configuration ([`NodeConfig`]) as the files its agent
//! writes (issue 13 item 4): a VPS's reverse-proxy configuration for Traefik
//! (file provider, YAML) and Caddy (JSON, for `POST /load`), a laptop's
//! hosts-file block and RFC 1035 zone files.
//!
//! Pure functions: the same configuration and options always give the same
//! bytes (routes and records are sorted, object names are derived from the
//! hostnames), so an agent can compare what it rendered with what is on disk
//! and skip a reload when nothing changed.

mod caddy;
mod hosts;
mod traefik;
mod zone;

pub use caddy::{render_caddy, CaddyOptions};
pub use hosts::{render_hosts_block, replace_hosts_block, HOSTS_BEGIN, HOSTS_END};
pub use traefik::{render_traefik, TraefikHealthCheck, TraefikOptions};
pub use zone::{render_zones, zone_serial, ZoneFile, ZoneOptions};

use crate::{NodeConfig, NodeKind, ProxyRoute};
use std::collections::BTreeSet;

/// The options of every renderer, for [`render_file_set`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// For `traefik/fleetreg.yml`.
    pub traefik: TraefikOptions,
    /// For `caddy/fleetreg.json`.
    pub caddy: CaddyOptions,
    /// For `zones/<domain>.zone`.
    pub zones: ZoneOptions,
}

/// One file an agent writes, relative to its output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// A relative path with `/` separators, no `..`, no leading `/`.
    pub path: String,
    /// The whole content.
    pub content: String,
}

/// Path of the Traefik file-provider configuration in a VPS's file set.
pub const TRAEFIK_FILE: &str = "traefik/fleetreg.yml";
/// Path of the Caddy JSON configuration in a VPS's file set.
pub const CADDY_FILE: &str = "caddy/fleetreg.json";
/// Path of the hosts-file block in a laptop's file set.
pub const HOSTS_FILE: &str = "hosts/fleetreg.hosts";

/// Everything an agent writes into its output directory for `config` at the
/// desired `revision`, sorted by path:
///
/// - a VPS: [`TRAEFIK_FILE`] ([`render_traefik`]) and [`CADDY_FILE`]
///   ([`render_caddy`], pretty-printed, with a final newline); both also
///   when the node carries no route, so stale routes disappear;
/// - a laptop: [`HOSTS_FILE`] ([`render_hosts_block`], possibly empty between
///   its markers) and `zones/<domain>.zone` per domain with records
///   ([`render_zones`], serial [`zone_serial`]`(revision)`).
///
/// Paths are relative and never contain `..` (domain names are validated DNS
/// names: no `/`, no empty label).
pub fn render_file_set(
    config: &NodeConfig,
    revision: i64,
    options: &RenderOptions,
) -> Vec<RenderedFile> {
    let mut files = match config.kind {
        NodeKind::Vps => {
            let caddy = render_caddy(config, &options.caddy);
            let mut json = serde_json::to_string_pretty(&caddy).unwrap_or_default();
            json.push('\n');
            vec![
                RenderedFile {
                    path: TRAEFIK_FILE.to_owned(),
                    content: render_traefik(config, &options.traefik),
                },
                RenderedFile {
                    path: CADDY_FILE.to_owned(),
                    content: json,
                },
            ]
        }
        NodeKind::Laptop => {
            let mut files = vec![RenderedFile {
                path: HOSTS_FILE.to_owned(),
                content: render_hosts_block(config),
            }];
            files.extend(
                render_zones(config, zone_serial(revision), &options.zones)
                    .into_iter()
                    .map(|zone| RenderedFile {
                        path: format!("zones/{}.zone", zone.origin),
                        content: zone.text,
                    }),
            );
            files
        }
    };
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

/// The routes of `config` that have upstreams, sorted by hostname (then
/// service), each with a proxy object name derived from its hostname: dots
/// become dashes (`photos.curiios.com` → `photos-curiios-com`). Two hostnames
/// that map to one name (`a-b.c.d` and `a.b-c.d`) keep it for the first and
/// get `-2`, `-3`, … after it, so names are unique and stable for a given
/// configuration.
pub(crate) fn named_routes(config: &NodeConfig) -> Vec<(String, &ProxyRoute)> {
    let mut routes: Vec<&ProxyRoute> = config
        .routes
        .iter()
        .filter(|r| !r.upstreams.is_empty())
        .collect();
    routes.sort_by(|a, b| {
        (a.hostname.as_str(), a.service.as_str()).cmp(&(b.hostname.as_str(), b.service.as_str()))
    });
    let mut taken = BTreeSet::new();
    routes
        .into_iter()
        .map(|route| {
            let base = route.hostname.replace('.', "-");
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            (name, route)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Node configurations the renderers' tests share.

    use crate::Upstream;
    use crate::{Balance, DnsLabel, DnsRecord, DomainName, NodeConfig, NodeKind, ProxyRoute};

    pub fn label(s: &str) -> DnsLabel {
        DnsLabel::parse("name", s).unwrap()
    }

    pub fn domain(s: &str) -> DomainName {
        DomainName::parse("name", s).unwrap()
    }

    pub fn route(
        hostname: &str,
        service: &str,
        upstreams: &[&str],
        balance: Balance,
    ) -> ProxyRoute {
        ProxyRoute {
            hostname: hostname.to_owned(),
            service: label(service),
            upstreams: upstreams
                .iter()
                .map(|u| Upstream::parse("u", u).unwrap())
                .collect(),
            balance,
        }
    }

    /// A VPS with a round-robin service (2 upstreams), a failover service
    /// (2 upstreams) and a failover service with one upstream; routes out of
    /// order.
    pub fn vps() -> NodeConfig {
        NodeConfig {
            node: label("vps1"),
            kind: NodeKind::Vps,
            routes: vec![
                route(
                    "photos.curiios.com",
                    "immich",
                    &["10.0.0.5:2283", "10.0.0.6:2283"],
                    Balance::RoundRobin,
                ),
                route(
                    "chat.curiios.com",
                    "open-webui",
                    &["10.0.0.7:3000", "[fd00::8]:3000"],
                    Balance::Failover,
                ),
                route(
                    "grafana.curiios.com",
                    "grafana",
                    &["10.0.0.9:3001"],
                    Balance::Failover,
                ),
            ],
            records: Vec::new(),
        }
    }

    /// A laptop with records in two domains (one IPv6), out of order.
    pub fn laptop() -> NodeConfig {
        let record = |hostname: &str, d: &str, address: &str| DnsRecord {
            hostname: hostname.to_owned(),
            domain: domain(d),
            address: address.parse().unwrap(),
        };
        NodeConfig {
            node: label("laptop"),
            kind: NodeKind::Laptop,
            routes: Vec::new(),
            records: vec![
                record(
                    "photos.vinaysachdeva.com",
                    "vinaysachdeva.com",
                    "100.64.0.2",
                ),
                record("photos.curiios.com", "curiios.com", "100.64.0.1"),
                record("chat.curiios.com", "curiios.com", "fd7a:115c:a1e0::1"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crate::Balance;

    #[test]
    fn names_come_from_hostnames_and_stay_unique() {
        let mut config = vps();
        config.routes.push(route(
            "a-b.c.example.com",
            "one",
            &["10.0.0.1:80"],
            Balance::RoundRobin,
        ));
        config.routes.push(route(
            "a.b-c.example.com",
            "two",
            &["10.0.0.1:80"],
            Balance::RoundRobin,
        ));
        config
            .routes
            .push(route("empty.example.com", "none", &[], Balance::RoundRobin));
        let names: Vec<(String, String)> = named_routes(&config)
            .into_iter()
            .map(|(name, r)| (name, r.hostname.clone()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "a-b-c-example-com".to_owned(),
                    "a-b.c.example.com".to_owned()
                ),
                ("a-b-c-example-com-2".into(), "a.b-c.example.com".into()),
                ("chat-curiios-com".into(), "chat.curiios.com".into()),
                ("grafana-curiios-com".into(), "grafana.curiios.com".into()),
                ("photos-curiios-com".into(), "photos.curiios.com".into()),
            ]
        );
    }

    #[test]
    fn a_vps_gets_traefik_and_caddy_files() {
        let files = render_file_set(&vps(), 42, &RenderOptions::default());
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, [CADDY_FILE, TRAEFIK_FILE]);
        let caddy: serde_json::Value = serde_json::from_str(&files[0].content).unwrap();
        assert_eq!(caddy, render_caddy(&vps(), &CaddyOptions::default()));
        assert!(files[0].content.ends_with("}\n"));
        assert_eq!(
            files[1].content,
            render_traefik(&vps(), &TraefikOptions::default())
        );
    }

    #[test]
    fn a_laptop_gets_a_hosts_block_and_zones() {
        let files = render_file_set(&laptop(), (1 << 32) + 7, &RenderOptions::default());
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                HOSTS_FILE,
                "zones/curiios.com.zone",
                "zones/vinaysachdeva.com.zone"
            ]
        );
        assert_eq!(files[0].content, render_hosts_block(&laptop()));
        assert!(files[1].content.contains(" 7 "), "{}", files[1].content);
        for file in &files {
            assert!(!file.path.starts_with('/'));
            assert!(file
                .path
                .split('/')
                .all(|part| !part.is_empty() && part != ".."));
        }
    }

    #[test]
    fn empty_configurations_still_render_every_file() {
        let mut vps = vps();
        vps.routes.clear();
        assert_eq!(render_file_set(&vps, 1, &RenderOptions::default()).len(), 2);
        let mut laptop = laptop();
        laptop.records.clear();
        let files = render_file_set(&laptop, 1, &RenderOptions::default());
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].content, format!("{HOSTS_BEGIN}\n{HOSTS_END}\n"));
    }

    #[test]
    fn file_sets_are_deterministic() {
        let options = RenderOptions::default();
        for config in [vps(), laptop()] {
            let once = render_file_set(&config, 9, &options);
            let mut reversed = config.clone();
            reversed.routes.reverse();
            reversed.records.reverse();
            assert_eq!(once, render_file_set(&config, 9, &options));
            assert_eq!(once, render_file_set(&reversed, 9, &options));
        }
    }
}
