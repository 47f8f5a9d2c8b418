//! A complete Caddy (v2) JSON configuration, to load with `POST /load` on
//! Caddy's admin API or `caddy run --config FILE`
//! (<https://caddyserver.com/docs/json/>): one HTTP server, one route per
//! hostname, each a `reverse_proxy`.

use super::named_routes;
use crate::{Balance, NodeConfig};
use serde_json::{json, Value};
use std::time::Duration;

/// The name of the one HTTP server in the rendered configuration
/// (`apps.http.servers.fleetreg`).
pub const CADDY_SERVER: &str = "fleetreg";

/// How [`render_caddy`] renders the server and its proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaddyOptions {
    /// The server's listen addresses (default `[":443"]`).
    pub listen: Vec<String>,
    /// Caddy's automatic HTTPS (certificates for the hostnames, HTTP → HTTPS
    /// redirects); default on. Off renders `"automatic_https": {"disable":
    /// true}`: plain HTTP on the listen addresses (say `127.0.0.1:8080`
    /// behind another TLS terminator, or in tests).
    pub automatic_https: bool,
    /// The admin API's address, kept in the configuration so loading it does
    /// not move or disable the admin API (default `localhost:2019`).
    pub admin_listen: String,
    /// Passive health checks: how long a failed request counts against an
    /// upstream (default 30 s). A failover service's primary gets requests
    /// again this long after its last failure.
    pub fail_duration: Duration,
    /// Passive health checks: failures within `fail_duration` that mark an
    /// upstream down (default 1: the first failed dial).
    pub max_fails: u32,
    /// How long a request may keep trying other upstreams after a failed
    /// dial (default 5 s): a dead primary is skipped within the request.
    pub try_duration: Duration,
    /// The pause between those tries (default 250 ms).
    pub try_interval: Duration,
}

impl Default for CaddyOptions {
    fn default() -> Self {
        CaddyOptions {
            listen: vec![":443".to_owned()],
            automatic_https: true,
            admin_listen: "localhost:2019".to_owned(),
            fail_duration: Duration::from_secs(30),
            max_fails: 1,
            try_duration: Duration::from_secs(5),
            try_interval: Duration::from_millis(250),
        }
    }
}

/// A duration in Caddy's (Go's) syntax: whole seconds as `30s`, whole
/// milliseconds as `250ms`, anything finer in nanoseconds.
fn caddy_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else if duration.subsec_nanos() == duration.subsec_millis() * 1_000_000 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}ns", duration.as_nanos())
    }
}

/// The Caddy JSON configuration of `config`'s routes:
///
/// - `admin.listen`: `options.admin_listen`;
/// - `apps.http.servers.fleetreg`: `listen` from `options`, plus
///   `automatic_https: {disable: true}` when `options.automatic_https` is off;
/// - per hostname (sorted), a terminal route `match: [{host: [hostname]}]`
///   handled by a `reverse_proxy` with one `upstreams[].dial` (`host:port`)
///   per upstream in order, `load_balancing.selection_policy.policy`
///   `round_robin` or, for failover, `first` (the first upstream not marked
///   down), `try_duration`/`try_interval` (a failed dial is retried on the
///   next upstream within the request) and passive health checks
///   (`fail_duration`, `max_fails`: a failed upstream is skipped by later
///   requests until `fail_duration` has passed).
///
/// Routes without upstreams are left out. The same configuration and
/// options always give the same value.
pub fn render_caddy(config: &NodeConfig, options: &CaddyOptions) -> Value {
    let routes: Vec<Value> = named_routes(config)
        .into_iter()
        .map(|(_, route)| {
            let policy = match route.balance {
                Balance::RoundRobin => "round_robin",
                Balance::Failover => "first",
            };
            let upstreams: Vec<Value> = route
                .upstreams
                .iter()
                .map(|u| json!({ "dial": u.as_str() }))
                .collect();
            json!({
                "match": [{ "host": [route.hostname] }],
                "handle": [{
                    "handler": "reverse_proxy",
                    "upstreams": upstreams,
                    "load_balancing": {
                        "selection_policy": { "policy": policy },
                        "try_duration": caddy_duration(options.try_duration),
                        "try_interval": caddy_duration(options.try_interval),
                    },
                    "health_checks": {
                        "passive": {
                            "fail_duration": caddy_duration(options.fail_duration),
                            "max_fails": options.max_fails,
                        }
                    },
                }],
                "terminal": true,
            })
        })
        .collect();
    let mut server = json!({
        "listen": options.listen,
        "routes": routes,
    });
    if !options.automatic_https {
        server["automatic_https"] = json!({ "disable": true });
    }
    json!({
        "admin": { "listen": options.admin_listen },
        "apps": { "http": { "servers": { CADDY_SERVER: server } } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::vps;

    #[test]
    fn durations_use_caddys_syntax() {
        assert_eq!(caddy_duration(Duration::from_secs(30)), "30s");
        assert_eq!(caddy_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(caddy_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(caddy_duration(Duration::from_micros(1500)), "1500000ns");
    }

    #[test]
    fn the_structure_is_caddys() {
        let config = render_caddy(&vps(), &CaddyOptions::default());
        assert_eq!(config["admin"], json!({ "listen": "localhost:2019" }));
        let apps = config["apps"].as_object().unwrap();
        assert_eq!(apps.keys().collect::<Vec<_>>(), ["http"]);
        let server = &config["apps"]["http"]["servers"]["fleetreg"];
        assert_eq!(server["listen"], json!([":443"]));
        assert!(server.get("automatic_https").is_none());
        let routes = server["routes"].as_array().unwrap();
        let hosts: Vec<&Value> = routes.iter().map(|r| &r["match"][0]["host"]).collect();
        assert_eq!(
            hosts,
            [
                &json!(["chat.curiios.com"]),
                &json!(["grafana.curiios.com"]),
                &json!(["photos.curiios.com"])
            ]
        );
        for route in routes {
            assert_eq!(route["terminal"], json!(true));
            assert_eq!(route["handle"].as_array().unwrap().len(), 1);
            assert_eq!(route["handle"][0]["handler"], "reverse_proxy");
            assert_eq!(
                route["handle"][0]["health_checks"],
                json!({ "passive": { "fail_duration": "30s", "max_fails": 1 } })
            );
        }
        let chat = &routes[0]["handle"][0];
        assert_eq!(
            chat["upstreams"],
            json!([{ "dial": "10.0.0.7:3000" }, { "dial": "[fd00::8]:3000" }])
        );
        assert_eq!(
            chat["load_balancing"],
            json!({
                "selection_policy": { "policy": "first" },
                "try_duration": "5s",
                "try_interval": "250ms",
            })
        );
        let photos = &routes[2]["handle"][0];
        assert_eq!(
            photos["upstreams"],
            json!([{ "dial": "10.0.0.5:2283" }, { "dial": "10.0.0.6:2283" }])
        );
        assert_eq!(
            photos["load_balancing"]["selection_policy"],
            json!({ "policy": "round_robin" })
        );
    }

    #[test]
    fn options_set_listen_admin_and_https() {
        let options = CaddyOptions {
            listen: vec!["127.0.0.1:8080".into()],
            automatic_https: false,
            admin_listen: "127.0.0.1:2999".into(),
            fail_duration: Duration::from_secs(1),
            max_fails: 2,
            try_duration: Duration::from_secs(2),
            try_interval: Duration::from_millis(100),
        };
        let config = render_caddy(&vps(), &options);
        assert_eq!(config["admin"]["listen"], "127.0.0.1:2999");
        let server = &config["apps"]["http"]["servers"]["fleetreg"];
        assert_eq!(server["listen"], json!(["127.0.0.1:8080"]));
        assert_eq!(server["automatic_https"], json!({ "disable": true }));
        let handler = &server["routes"][0]["handle"][0];
        assert_eq!(
            handler["health_checks"]["passive"],
            json!({ "fail_duration": "1s", "max_fails": 2 })
        );
        assert_eq!(handler["load_balancing"]["try_duration"], "2s");
        assert_eq!(handler["load_balancing"]["try_interval"], "100ms");
    }

    #[test]
    fn no_routes_keeps_the_server_and_admin() {
        let mut config = vps();
        config.routes.clear();
        let rendered = render_caddy(&config, &CaddyOptions::default());
        assert_eq!(
            rendered,
            json!({
                "admin": { "listen": "localhost:2019" },
                "apps": { "http": { "servers": { "fleetreg": {
                    "listen": [":443"], "routes": []
                } } } },
            })
        );
    }

    #[test]
    fn rendering_is_deterministic() {
        let options = CaddyOptions::default();
        let once = serde_json::to_string(&render_caddy(&vps(), &options)).unwrap();
        let mut shuffled = vps();
        shuffled.routes.reverse();
        assert_eq!(
            once,
            serde_json::to_string(&render_caddy(&vps(), &options)).unwrap()
        );
        assert_eq!(
            once,
            serde_json::to_string(&render_caddy(&shuffled, &options)).unwrap()
        );
    }
}
