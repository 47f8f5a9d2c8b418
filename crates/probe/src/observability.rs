//! [`Observability`]: Prometheus, Tempo and Loki as the probe reaches them: the
//! base URL, the readiness path, the path that proves a token, and the token.

use crate::target::Target;
use fleetreg_model::Component;
use secrecy::SecretString;

/// One observability endpoint of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observability {
    Prometheus,
    Tempo,
    Loki,
}

impl Observability {
    /// All three, in the order of seed 8.1.
    pub(crate) const ALL: [Observability; 3] = [
        Observability::Prometheus,
        Observability::Tempo,
        Observability::Loki,
    ];

    /// The health component it is.
    pub(crate) fn component(self) -> Component {
        match self {
            Observability::Prometheus => Component::Prometheus,
            Observability::Tempo => Component::Tempo,
            Observability::Loki => Component::Loki,
        }
    }

    /// Its configured base URL.
    pub(crate) fn base(self, target: &Target) -> Option<&str> {
        let endpoints = &target.endpoints;
        match self {
            Observability::Prometheus => endpoints.prometheus_url.as_deref(),
            Observability::Tempo => endpoints.tempo_url.as_deref(),
            Observability::Loki => endpoints.loki_url.as_deref(),
        }
    }

    /// The readiness path of the health check (seed 8.1).
    pub(crate) fn ready_path(self) -> &'static str {
        match self {
            Observability::Prometheus => "/-/ready",
            Observability::Tempo | Observability::Loki => "/ready",
        }
    }

    /// The path that validates its token.
    ///
    /// Prometheus: `/api/v1/query?query=up`. The auth proxies in front of a
    /// cluster's Prometheus (kube-rbac-proxy, oauth-proxy) commonly let
    /// `/-/ready` and `/-/healthy` through without a token so the kubelet can
    /// probe them, so a 200 there proves nothing about the token; the query API
    /// serves data, is never exempt, and is what the token is used for (the
    /// DCGM query). `up` exists on every Prometheus and is cheap.
    ///
    /// Tempo and Loki: `/ready`, the one path every deployment serves. Behind a
    /// proxy that exempts it a wrong token is not noticed here (only when data
    /// is read later).
    pub(crate) fn validation_path(self) -> &'static str {
        match self {
            Observability::Prometheus => "/api/v1/query?query=up",
            Observability::Tempo | Observability::Loki => "/ready",
        }
    }

    /// Its bearer token in the target's credential.
    pub(crate) fn token(self, target: &Target) -> Option<&SecretString> {
        let credential = target.credential.as_deref()?;
        match self {
            Observability::Prometheus => credential.prometheus_token(),
            Observability::Tempo => credential.tempo_token(),
            Observability::Loki => credential.loki_token(),
        }
    }
}
