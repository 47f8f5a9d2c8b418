//! Push-sync to edge nodes (seed service-registry-push-sync.md, "Event-Driven
//! Push System"): every registry change that alters a node's configuration
//! is committed with a `NODE_CONFIG_CHANGED` event (the store recomputes
//! the routing plan in the write's transaction). [`NodeSignals`] turns
//! those events, and the controller's `NODE_PUSH` re-sends, into a wake-up
//! of that node's open agent stream on this replica, which then reads and
//! sends the node's desired configuration (streams woken together read
//! together: [`ConfigReads`]). The [`controller`] (one per
//! deployment, by a lease in the database) retries unacknowledged pushes,
//! marks silent nodes offline (routes fail over) and reconciles every node
//! periodically. Beside it, while it holds the lease, [`HttpCheck`] sends
//! an HTTP request through each VPS node every interval: a node failing it
//! in a row is down for routing too (health-driven failover).

mod config_reads;
pub mod controller;
pub mod http_check;
mod signals;

pub use config_reads::{ConfigRead, ConfigReads};
pub use controller::{Controller, ControllerHandle};
pub use http_check::HttpCheck;
pub use signals::NodeSignals;

use crate::error::ApiError;
use fleetreg_model::{
    render_caddy, render_hosts_block, render_traefik, render_zones, zone_serial, CaddyOptions,
    NodeKind, TraefikOptions, ZoneOptions,
};
use fleetreg_store::DesiredConfig;

/// `desired` rendered in `format` with the default options: `traefik`
/// (file-provider YAML) or `caddy` (JSON) for a VPS, `hosts` (the marked
/// block) or `zone` (every zone file, one after another) for a laptop.
pub fn render(desired: &DesiredConfig, format: &str) -> Result<String, ApiError> {
    let config = &desired.config;
    let wrong_kind = |wanted: &str| {
        ApiError::validation(
            "format",
            format!(
                "{format} is for a {wanted}; node {} is a {}",
                config.node, config.kind
            ),
        )
    };
    match (format, config.kind) {
        ("traefik", NodeKind::Vps) => Ok(render_traefik(config, &TraefikOptions::default())),
        ("caddy", NodeKind::Vps) => {
            let json = render_caddy(config, &CaddyOptions::default());
            Ok(serde_json::to_string_pretty(&json).unwrap_or_default() + "\n")
        }
        ("hosts", NodeKind::Laptop) => Ok(render_hosts_block(config)),
        ("zone", NodeKind::Laptop) => Ok(render_zones(
            config,
            zone_serial(desired.revision),
            &ZoneOptions::default(),
        )
        .into_iter()
        .map(|zone| zone.text)
        .collect::<Vec<_>>()
        .join("\n")),
        ("traefik" | "caddy", _) => Err(wrong_kind("vps")),
        ("hosts" | "zone", _) => Err(wrong_kind("laptop")),
        _ => Err(ApiError::validation(
            "format",
            "must be json, traefik, caddy, hosts or zone",
        )),
    }
}
