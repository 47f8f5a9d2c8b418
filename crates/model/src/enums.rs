//! The enums of seed section 7.1 and the status state machine's states.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Generates a wire enum with `as_str`, `parse` and `ALL`.
///
/// `$wire` is a `tt`, not a `literal`: a `literal` fragment reaches derive
/// macros wrapped in an invisible group, which serde unwraps but utoipa does
/// not, so the OpenAPI document showed the Rust variant names (`Hub`) while
/// the wire said `HUB`. As a `tt` both derives see the same string.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as written on the wire and in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses the wire form (exact, upper case).
            pub fn parse(value: &str) -> Option<Self> {
                match value { $($wire => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values joined for error messages.
            pub fn expected() -> String {
                [$($wire),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum! {
    /// How the registry authenticates to a cluster's API server.
    AuthType {
        /// A kubeconfig with inline data only (client certificate or token).
        Kubeconfig => "KUBECONFIG",
        /// A bearer token (e.g. a service account's), with the API server's CA.
        Token => "TOKEN",
    }
}

wire_enum! {
    /// The role of a cluster in the fleet.
    ClusterType {
        /// The hub that manages spokes.
        Hub => "HUB",
        /// A managed workload cluster.
        Spoke => "SPOKE",
        /// An edge cluster.
        Edge => "EDGE",
        /// A far-edge cluster (single node, constrained links).
        FarEdge => "FAR_EDGE",
    }
}

wire_enum! {
    /// The Kubernetes distribution a cluster runs.
    Platform {
        /// Red Hat OpenShift.
        Openshift => "OPENSHIFT",
        /// Upstream Kubernetes.
        Kubernetes => "KUBERNETES",
        /// MicroShift.
        Microshift => "MICROSHIFT",
    }
}

wire_enum! {
    /// The environment a cluster serves.
    Environment {
        /// Production.
        Production => "PRODUCTION",
        /// Staging.
        Staging => "STAGING",
        /// Development.
        Development => "DEVELOPMENT",
        /// Lab.
        Lab => "LAB",
    }
}

wire_enum! {
    /// The health state of a cluster (seed 8.2).
    ClusterState {
        /// Never checked.
        Unknown => "UNKNOWN",
        /// Every configured check passes.
        Online => "ONLINE",
        /// The API server answers but some other check fails.
        Degraded => "DEGRADED",
        /// The API server cannot be reached.
        Offline => "OFFLINE",
    }
}

wire_enum! {
    /// Whether the API server could be reached at the last check.
    Connectivity {
        /// The API server answered.
        Connected => "CONNECTED",
        /// The API server did not answer.
        Disconnected => "DISCONNECTED",
    }
}

wire_enum! {
    /// How close stored credentials are to their expiry, judged when read
    /// against `credentials.rotation_warning_days`.
    CredentialExpiry {
        /// They expire later than the warning window.
        Ok => "OK",
        /// They expire within the warning window.
        Expiring => "EXPIRING",
        /// Their expiry has passed.
        Expired => "EXPIRED",
        /// Neither the credential nor the upload said when they expire.
        Unknown => "UNKNOWN",
    }
}

wire_enum! {
    /// Whether stored credentials may be presented: they are bound to the
    /// origins (scheme, host, port) they were validated against.
    CredentialBinding {
        /// The cluster's URLs are at the origins the credentials were
        /// validated against; checks present them.
        Bound => "BOUND",
        /// A cluster update moved a URL to another origin: the credentials are
        /// presented nowhere until uploaded again or re-validated
        /// (`POST …/credentials/rebind`, admin only).
        OriginChanged => "ORIGIN_CHANGED",
    }
}

/// Declares the default value of a wire enum (seed 7.1's column defaults).
macro_rules! wire_default {
    ($($name:ident => $variant:ident),+ $(,)?) => {
        $(impl Default for $name {
            fn default() -> Self {
                $name::$variant
            }
        })+
    };
}

wire_enum! {
    /// Where a client is in its life (seed client-registry.md).
    ClientStatus {
        /// Configuration created, not yet deployed.
        Pending => "pending",
        /// Live and operational.
        Deployed => "deployed",
        /// Under maintenance, may be temporarily unavailable.
        Maintenance => "maintenance",
        /// Being decommissioned.
        Offboarding => "offboarding",
        /// Infrastructure removed; the entry is kept for the audit trail.
        Destroyed => "destroyed",
    }
}

wire_enum! {
    /// Whether a client receives updates first.
    ClientRole {
        /// Tests updates before the production rollout.
        Canary => "canary",
        /// Serves real users.
        Production => "production",
    }
}

wire_enum! {
    /// The maintenance dates kept per client.
    MaintenanceField {
        /// The last full update (rebuild).
        LastFullUpdate => "last_full_update",
        /// The last security patch.
        LastSecurityPatch => "last_security_patch",
        /// The last operating-system update.
        LastOsUpdate => "last_os_update",
        /// The last verified backup.
        LastBackupVerified => "last_backup_verified",
    }
}

wire_default! {
    ClusterType => Spoke,
    Platform => Openshift,
    Environment => Development,
    ClientStatus => Pending,
    ClientRole => Production,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_round_trip() {
        for t in ClusterType::ALL {
            assert_eq!(ClusterType::parse(t.as_str()), Some(*t));
            let json = serde_json::to_string(t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        assert_eq!(ClusterType::parse("spoke"), None);
        assert_eq!(
            Environment::expected(),
            "PRODUCTION, STAGING, DEVELOPMENT, LAB"
        );
    }
}

wire_enum! {
    /// What an edge node is (seed service-registry-push-sync.md): a VPS runs
    /// the reverse proxy, a laptop gets DNS for every service hostname.
    NodeKind {
        /// A public edge server: Traefik or Caddy routes.
        Vps => "vps",
        /// A management laptop: hosts-file and zone records.
        Laptop => "laptop",
    }
}

wire_enum! {
    /// How a service's hostnames are spread over its nodes (seed "Strategies").
    RoutingStrategy {
        /// Domain *i* is served through node *i mod n*; every listed node
        /// carries every hostname, so the load spreads.
        RoundRobin => "round-robin",
        /// The first healthy node serves every hostname; the next healthy one
        /// takes over when it fails, and it returns when it recovers.
        PrimaryBackup => "primary-backup",
        /// Each domain to the first healthy node whose region is the domain's
        /// region tag; primary-backup when none matches.
        Geo => "geo",
    }
}

wire_enum! {
    /// A node's push-sync state (seed "Node Health Status").
    NodeSyncStatus {
        /// Its agent is connected (heartbeats arrive) and it applied the
        /// desired revision, or is applying a push.
        Active => "active",
        /// Pushes failed 3 times in a row (or the agent reported a failure).
        Failed => "failed",
        /// No heartbeat from its agent within the offline window.
        Offline => "offline",
    }
}

wire_enum! {
    /// Whether a service is routed.
    ServiceState {
        /// Routed.
        Active => "active",
        /// Discovered in a cluster and since gone from it: kept, not routed.
        Gone => "gone",
    }
}

wire_enum! {
    /// Where a service entry came from.
    ServiceOrigin {
        /// Registered through the API or CLI.
        Manual => "manual",
        /// Read from an annotated Kubernetes `Service` of a registered cluster.
        Cluster => "cluster",
    }
}

wire_enum! {
    /// Why the sync controller sent a node its configuration again (`NODE_PUSH`).
    PushReason {
        /// An unacknowledged push, retried with backoff.
        Retry => "retry",
        /// A manual push (`fleetreg sync push`).
        Push => "push",
        /// The periodic (or requested) reconciliation: every node, full state.
        Reconcile => "reconcile",
    }
}
