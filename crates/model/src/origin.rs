//! Where stored credentials may be presented: the origins (scheme, host, port)
//! of the cluster's URLs they were validated against.
//!
//! Credentials are bound to these origins when they are stored or explicitly
//! re-validated. A cluster update that moves a URL to another origin marks them
//! unbound (`ORIGIN_CHANGED`), and nothing presents them until they are
//! uploaded again or re-validated against the new origin.

use crate::{Cluster, Component, Endpoints};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The origin of an absolute `http`/`https` URL: `scheme://host:port`, the
/// port always written (`https://a` and `https://a:443` are one origin), the
/// host as the URL parser canonicalises it (lower case, IDNA, IPv4 normal
/// form). `None` for anything else. Idempotent: the origin of an origin is
/// itself.
pub fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let host = match parsed.host()? {
        url::Host::Domain(name) => name.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => format!("[{ip}]"),
    };
    let port = parsed.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", parsed.scheme()))
}

/// The origins stored credentials are bound to, per component (`null` where
/// the cluster had no such endpoint when they were validated).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CredentialOrigins {
    /// The API server's origin, e.g. `https://api.example.com:6443`.
    #[serde(default)]
    pub api_server: Option<String>,
    /// Prometheus's origin.
    #[serde(default)]
    pub prometheus: Option<String>,
    /// Tempo's origin.
    #[serde(default)]
    pub tempo: Option<String>,
    /// Loki's origin.
    #[serde(default)]
    pub loki: Option<String>,
}

impl CredentialOrigins {
    /// The origins of `cluster`'s URLs now.
    pub fn of(cluster: &Cluster) -> CredentialOrigins {
        CredentialOrigins::of_urls(&cluster.api_server_url, &cluster.endpoints)
    }

    /// The origins of an API server URL and endpoints.
    pub fn of_urls(api_server_url: &str, endpoints: &Endpoints) -> CredentialOrigins {
        let of = |url: &Option<String>| url.as_deref().and_then(origin_of);
        CredentialOrigins {
            api_server: origin_of(api_server_url),
            prometheus: of(&endpoints.prometheus_url),
            tempo: of(&endpoints.tempo_url),
            loki: of(&endpoints.loki_url),
        }
    }

    /// Each entry reduced to its origin (rows bound before this existed were
    /// migrated with whole URLs); an entry that is no URL is dropped.
    pub fn normalized(self) -> CredentialOrigins {
        let of = |url: Option<String>| url.as_deref().and_then(origin_of);
        CredentialOrigins {
            api_server: of(self.api_server),
            prometheus: of(self.prometheus),
            tempo: of(self.tempo),
            loki: of(self.loki),
        }
    }

    /// The origin bound for `component`.
    pub fn get(&self, component: Component) -> Option<&str> {
        match component {
            Component::ApiServer => self.api_server.as_deref(),
            Component::Prometheus => self.prometheus.as_deref(),
            Component::Tempo => self.tempo.as_deref(),
            Component::Loki => self.loki.as_deref(),
        }
    }

    /// The components whose `current` origin is not the bound one: a URL moved
    /// to another origin, or an endpoint added where none was validated. An
    /// endpoint removed is no move (nothing is presented there).
    pub fn moved(&self, current: &CredentialOrigins) -> Vec<Component> {
        Component::ALL
            .into_iter()
            .filter(|&component| match current.get(component) {
                None => component == Component::ApiServer,
                Some(now) => self.get(component) != Some(now),
            })
            .collect()
    }

    /// The field name of `component` here (`api_server`, `prometheus`, …), as
    /// event payloads and messages name it.
    pub fn field(component: Component) -> &'static str {
        match component {
            Component::ApiServer => "api_server",
            Component::Prometheus => "prometheus",
            Component::Tempo => "tempo",
            Component::Loki => "loki",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(prometheus: Option<&str>) -> Endpoints {
        Endpoints {
            prometheus_url: prometheus.map(str::to_owned),
            ..Endpoints::default()
        }
    }

    #[test]
    fn origins_write_the_port_and_canonicalise_the_host() {
        let o = |u| origin_of(u);
        assert_eq!(
            o("https://API.Example.com/x").as_deref(),
            Some("https://api.example.com:443")
        );
        assert_eq!(
            o("https://api.example.com:443/y"),
            o("https://api.example.com")
        );
        assert_eq!(
            o("http://127.0.0.1:9000/c/a").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            o("http://0x7f.1:9000/").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(o("http://[::1]:80/").as_deref(), Some("http://[::1]:80"));
        assert_ne!(o("http://a:80"), o("https://a:80"));
        assert_eq!(o("ftp://a/"), None);
        assert_eq!(o("not a url"), None);
        let origin = o("https://a.b:6443/p?q").unwrap();
        assert_eq!(o(&origin).as_deref(), Some(origin.as_str()), "idempotent");
    }

    #[test]
    fn only_a_move_to_another_origin_counts() {
        let bound = CredentialOrigins::of_urls(
            "https://api.a:6443/c/x",
            &endpoints(Some("http://127.0.0.1:9/p")),
        );
        let same = CredentialOrigins::of_urls(
            "https://API.a:6443/other/path",
            &endpoints(Some("http://127.0.0.1:9/q")),
        );
        assert!(bound.moved(&same).is_empty());
        let removed = CredentialOrigins::of_urls("https://api.a:6443", &endpoints(None));
        assert!(
            bound.moved(&removed).is_empty(),
            "nothing is presented there"
        );
        let api = CredentialOrigins::of_urls("https://api.a:6444", &endpoints(None));
        assert_eq!(bound.moved(&api), vec![Component::ApiServer]);
        let prom = CredentialOrigins::of_urls(
            "https://api.a:6443",
            &endpoints(Some("http://127.0.0.1:10/p")),
        );
        assert_eq!(bound.moved(&prom), vec![Component::Prometheus]);
        let unbound = CredentialOrigins::of_urls("https://api.a:6443", &endpoints(None));
        let added =
            CredentialOrigins::of_urls("https://api.a:6443", &endpoints(Some("http://p:1")));
        assert_eq!(unbound.moved(&added), vec![Component::Prometheus]);
        let legacy = CredentialOrigins {
            api_server: Some("https://api.a:6443/c/x".into()),
            ..CredentialOrigins::default()
        }
        .normalized();
        assert!(legacy.moved(&removed).is_empty());
    }
}
