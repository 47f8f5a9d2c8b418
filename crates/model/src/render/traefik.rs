//! Traefik (v2.8+ and v3) dynamic configuration for the file provider, in YAML
//! (<https://doc.traefik.io/traefik/providers/file/>): one router and one
//! service per hostname.

use super::named_routes;
use crate::{Balance, NodeConfig, Upstream};
use serde::Serialize;
use std::collections::BTreeMap;

/// How [`render_traefik`] renders routers and health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraefikOptions {
    /// The entry points every router listens on (default `["websecure"]`);
    /// empty: the key is left out (Traefik then uses every entry point).
    pub entry_points: Vec<String>,
    /// The certificate resolver of every router's `tls` section (default
    /// `letsencrypt`); `None`: no `tls` section (plain HTTP routers).
    pub cert_resolver: Option<String>,
    /// The active health check a failover service's main servers get.
    pub health_check: TraefikHealthCheck,
}

impl Default for TraefikOptions {
    fn default() -> Self {
        TraefikOptions {
            entry_points: vec!["websecure".to_owned()],
            cert_resolver: Some("letsencrypt".to_owned()),
            health_check: TraefikHealthCheck::default(),
        }
    }
}

/// A Traefik load balancer's `healthCheck` (Traefik counts 2XX and 3XX
/// answers as healthy). Durations in Traefik's syntax (`10s`, `500ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraefikHealthCheck {
    /// The path requested (default `/`).
    pub path: String,
    /// How often (default `10s`).
    pub interval: String,
    /// How long an answer may take (default `3s`).
    pub timeout: String,
}

impl Default for TraefikHealthCheck {
    fn default() -> Self {
        TraefikHealthCheck {
            path: "/".to_owned(),
            interval: "10s".to_owned(),
            timeout: "3s".to_owned(),
        }
    }
}

#[derive(Serialize)]
struct Dynamic<'a> {
    http: Http<'a>,
}

#[derive(Serialize)]
struct Http<'a> {
    routers: BTreeMap<String, Router<'a>>,
    services: BTreeMap<String, Service<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Router<'a> {
    rule: String,
    service: String,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    entry_points: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tls<'a> {
    cert_resolver: &'a str,
}

/// A service: exactly one of its fields is set (a struct, not an enum:
/// serde_yaml writes enum variants as YAML tags).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Service<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancer: Option<LoadBalancer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failover: Option<Failover>,
}

impl<'a> Service<'a> {
    fn load_balancer(servers: Vec<Server>, health_check: Option<&'a TraefikHealthCheck>) -> Self {
        Service {
            load_balancer: Some(LoadBalancer {
                servers,
                health_check,
            }),
            failover: None,
        }
    }

    fn failover(service: String, fallback: String) -> Self {
        Service {
            load_balancer: None,
            failover: Some(Failover { service, fallback }),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancer<'a> {
    servers: Vec<Server>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_check: Option<&'a TraefikHealthCheck>,
}

#[derive(Serialize)]
struct Server {
    url: String,
}

#[derive(Serialize)]
struct Failover {
    service: String,
    fallback: String,
}

fn server(upstream: &Upstream) -> Server {
    Server {
        url: format!("http://{upstream}"),
    }
}

/// The Traefik file-provider dynamic configuration (YAML) of `config`'s
/// routes, after a comment line naming the node:
///
/// - `http.routers.<name>`: `rule: Host(`hostname`)`, `service: <name>`,
///   `entryPoints` and `tls.certResolver` from `options`; `<name>` is the
///   hostname with dots as dashes (`photos-curiios-com`, made unique);
/// - round-robin, or a single upstream: `http.services.<name>.loadBalancer`
///   with one `servers[].url` (`http://host:port`) per upstream, in order;
/// - failover with n ≥ 2 upstreams: Traefik's `failover` service, which
///   needs an active health check on its main service: `<name>_i` is a
///   load balancer of upstream i alone (with `options.health_check` for all
///   but the last), and `<name>` is `failover: {service: <name>_0, fallback:
///   …}` whose fallback is `<name>_1` for two upstreams, else the failover
///   `<name>_rest_1` of `<name>_1` and the rest, and so on: requests go to the
///   first upstream whose health check passes. (`_` cannot occur in a name
///   derived from a hostname, so these never clash with another route.)
///
/// Routes without upstreams are left out. Maps are sorted, so the same
/// configuration always gives the same text.
pub fn render_traefik(config: &NodeConfig, options: &TraefikOptions) -> String {
    let mut routers = BTreeMap::new();
    let mut services = BTreeMap::new();
    for (name, route) in named_routes(config) {
        routers.insert(
            name.clone(),
            Router {
                rule: format!("Host(`{}`)", route.hostname),
                service: name.clone(),
                entry_points: &options.entry_points,
                tls: options
                    .cert_resolver
                    .as_deref()
                    .map(|cert_resolver| Tls { cert_resolver }),
            },
        );
        let upstreams = &route.upstreams;
        if route.balance == Balance::RoundRobin || upstreams.len() < 2 {
            services.insert(
                name,
                Service::load_balancer(upstreams.iter().map(server).collect(), None),
            );
            continue;
        }
        let last = upstreams.len() - 1;
        for (i, upstream) in upstreams.iter().enumerate() {
            services.insert(
                format!("{name}_{i}"),
                Service::load_balancer(
                    vec![server(upstream)],
                    (i < last).then_some(&options.health_check),
                ),
            );
            if i < last {
                let chain = if i == 0 {
                    name.clone()
                } else {
                    format!("{name}_rest_{i}")
                };
                let fallback = if i + 1 == last {
                    format!("{name}_{last}")
                } else {
                    format!("{name}_rest_{}", i + 1)
                };
                services.insert(chain, Service::failover(format!("{name}_{i}"), fallback));
            }
        }
    }
    let yaml = serde_yaml::to_string(&Dynamic {
        http: Http { routers, services },
    })
    .unwrap_or_default();
    format!(
        "# Traefik dynamic configuration of node {}, rendered by fleetreg: edits are overwritten.\n{yaml}",
        config.node
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{route, vps};
    use serde_yaml::Value;

    fn parse(text: &str) -> Value {
        serde_yaml::from_str(text).expect("valid YAML")
    }

    fn keys(map: &Value) -> Vec<String> {
        map.as_mapping()
            .expect("a mapping")
            .keys()
            .map(|k| k.as_str().expect("string keys").to_owned())
            .collect()
    }

    fn urls(service: &Value) -> Vec<String> {
        service["loadBalancer"]["servers"]
            .as_sequence()
            .expect("servers")
            .iter()
            .map(|s| {
                assert_eq!(keys(s), ["url"]);
                s["url"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// The documented file-provider schema: `http.routers.<name>` with
    /// `rule`, `service`, `entryPoints`, `tls.certResolver`;
    /// `http.services.<name>` with exactly one of `loadBalancer` (`servers[].url`,
    /// optional `healthCheck{path,interval,timeout}`) or `failover`
    /// (`service`, `fallback`), every reference naming a defined service.
    #[test]
    fn the_structure_is_traefiks() {
        let text = render_traefik(&vps(), &TraefikOptions::default());
        assert!(text.starts_with("# Traefik dynamic configuration of node vps1"));
        let doc = parse(&text);
        assert_eq!(keys(&doc), ["http"]);
        assert_eq!(keys(&doc["http"]), ["routers", "services"]);
        let routers = &doc["http"]["routers"];
        let services = &doc["http"]["services"];
        assert_eq!(
            keys(routers),
            [
                "chat-curiios-com",
                "grafana-curiios-com",
                "photos-curiios-com"
            ]
        );
        for (name, hostname) in [
            ("chat-curiios-com", "chat.curiios.com"),
            ("grafana-curiios-com", "grafana.curiios.com"),
            ("photos-curiios-com", "photos.curiios.com"),
        ] {
            let router = &routers[name];
            assert_eq!(keys(router), ["rule", "service", "entryPoints", "tls"]);
            let rule = router["rule"].as_str().unwrap();
            assert_eq!(rule, format!("Host(`{hostname}`)"));
            assert_eq!(router["service"].as_str(), Some(name));
            assert_eq!(router["entryPoints"], parse("[websecure]"));
            assert_eq!(router["tls"], parse("{certResolver: letsencrypt}"));
        }
        assert_eq!(
            keys(services),
            [
                "chat-curiios-com",
                "chat-curiios-com_0",
                "chat-curiios-com_1",
                "grafana-curiios-com",
                "photos-curiios-com"
            ]
        );
        for name in keys(services) {
            let kind = keys(&services[name.as_str()]);
            assert!(
                kind == ["loadBalancer"] || kind == ["failover"],
                "{name}: {kind:?}"
            );
        }
        assert_eq!(
            urls(&services["photos-curiios-com"]),
            ["http://10.0.0.5:2283", "http://10.0.0.6:2283"]
        );
        assert_eq!(
            keys(&services["photos-curiios-com"]["loadBalancer"]),
            ["servers"]
        );
        assert_eq!(
            urls(&services["grafana-curiios-com"]),
            ["http://10.0.0.9:3001"]
        );
        assert_eq!(
            services["chat-curiios-com"],
            parse("failover: {service: chat-curiios-com_0, fallback: chat-curiios-com_1}")
        );
        let main = &services["chat-curiios-com_0"];
        assert_eq!(urls(main), ["http://10.0.0.7:3000"]);
        assert_eq!(
            main["loadBalancer"]["healthCheck"],
            parse("{path: /, interval: 10s, timeout: 3s}")
        );
        let backup = &services["chat-curiios-com_1"];
        assert_eq!(urls(backup), ["http://[fd00::8]:3000"]);
        assert!(backup["loadBalancer"].get("healthCheck").is_none());
    }

    #[test]
    fn longer_failovers_chain() {
        let mut config = vps();
        config.routes = vec![route(
            "chat.curiios.com",
            "chat",
            &["10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"],
            Balance::Failover,
        )];
        let doc = parse(&render_traefik(&config, &TraefikOptions::default()));
        let services = &doc["http"]["services"];
        assert_eq!(
            keys(services),
            [
                "chat-curiios-com",
                "chat-curiios-com_0",
                "chat-curiios-com_1",
                "chat-curiios-com_2",
                "chat-curiios-com_rest_1"
            ]
        );
        assert_eq!(
            services["chat-curiios-com"]["failover"],
            parse("{service: chat-curiios-com_0, fallback: chat-curiios-com_rest_1}")
        );
        assert_eq!(
            services["chat-curiios-com_rest_1"]["failover"],
            parse("{service: chat-curiios-com_1, fallback: chat-curiios-com_2}")
        );
        for (i, checked) in [(0, true), (1, true), (2, false)] {
            let lb = &services[format!("chat-curiios-com_{i}").as_str()]["loadBalancer"];
            assert_eq!(lb.get("healthCheck").is_some(), checked, "{i}");
            assert_eq!(
                urls(&services[format!("chat-curiios-com_{i}").as_str()]).len(),
                1
            );
        }
        // Every service a failover names exists.
        for name in keys(services) {
            if let Some(failover) = services[name.as_str()].get("failover") {
                for field in ["service", "fallback"] {
                    let target = failover[field].as_str().unwrap();
                    assert!(services.get(target).is_some(), "{name}.{field} → {target}");
                }
            }
        }
    }

    #[test]
    fn options_change_entry_points_and_tls() {
        let options = TraefikOptions {
            entry_points: vec!["web".into(), "internal".into()],
            cert_resolver: None,
            health_check: TraefikHealthCheck {
                path: "/health".into(),
                interval: "2s".into(),
                timeout: "1s".into(),
            },
        };
        let doc = parse(&render_traefik(&vps(), &options));
        let router = &doc["http"]["routers"]["photos-curiios-com"];
        assert_eq!(keys(router), ["rule", "service", "entryPoints"]);
        assert_eq!(router["entryPoints"], parse("[web, internal]"));
        assert_eq!(
            doc["http"]["services"]["chat-curiios-com_0"]["loadBalancer"]["healthCheck"]["path"]
                .as_str(),
            Some("/health")
        );
        let no_entry_points = TraefikOptions {
            entry_points: Vec::new(),
            ..options
        };
        let doc = parse(&render_traefik(&vps(), &no_entry_points));
        assert_eq!(
            keys(&doc["http"]["routers"]["photos-curiios-com"]),
            ["rule", "service"]
        );
    }

    #[test]
    fn no_routes_is_an_empty_configuration() {
        let mut config = vps();
        config.routes.clear();
        let doc = parse(&render_traefik(&config, &TraefikOptions::default()));
        assert_eq!(doc, parse("http: {routers: {}, services: {}}"));
    }

    #[test]
    fn rendering_is_deterministic() {
        let options = TraefikOptions::default();
        let once = render_traefik(&vps(), &options);
        let mut shuffled = vps();
        shuffled.routes.rotate_left(1);
        assert_eq!(once, render_traefik(&vps(), &options));
        assert_eq!(once, render_traefik(&shuffled, &options));
    }
}
