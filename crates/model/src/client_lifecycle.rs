//! The lifecycle operations of a client, as the seed's scripts perform them
//! (`deploy`, `rebuild`, `destroy`, `status`, maintenance stamps, versions,
//! notes): pure functions from the current spec and today's date to the next.

use crate::client::{ClientSpec, ServerInfo, MAX_NOTES};
use crate::enums::{ClientRole, ClientStatus, MaintenanceField};
use crate::Error;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `POST /api/v1/clients/{name}/deploy`: creates the client if missing, sets
/// it deployed with the given server details (absent ones kept), the
/// deployment date, and initialises maintenance (full update, security patch
/// and OS update dated the deployment). Allowed from every state: it is also
/// the explicit re-deploy of a destroyed client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Role to set (a new client defaults to `production`).
    #[serde(default)]
    pub role: Option<ClientRole>,
    /// Server details to record.
    #[serde(default)]
    pub server: ServerInfo,
    /// The deployment date (default: today).
    #[serde(default)]
    pub date: Option<NaiveDate>,
}

/// `POST /api/v1/clients/{name}/rebuild`: refreshes the server details (a
/// rebuild may change IP and id) and sets `last_full_update`; history is kept.
/// Only a deployed client or one in maintenance can be rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RebuildRequest {
    /// Server details to record (absent ones kept).
    #[serde(default)]
    pub server: ServerInfo,
    /// The rebuild date (default: today).
    #[serde(default)]
    pub date: Option<NaiveDate>,
}

/// `POST /api/v1/clients/{name}/destroy`: status `destroyed` with its date;
/// everything else is kept for the audit trail. Destroying a destroyed
/// client changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestroyRequest {
    /// The destruction date (default: today).
    #[serde(default)]
    pub date: Option<NaiveDate>,
}

/// `POST /api/v1/clients/{name}/status`: a lifecycle move to `deployed`,
/// `maintenance` or `offboarding` (deploy and destroy have their own
/// operations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// The new state.
    pub status: ClientStatus,
}

/// `POST /api/v1/clients/{name}/maintenance`: stamps one maintenance date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// Which date.
    pub field: MaintenanceField,
    /// The date (default: today).
    #[serde(default)]
    pub date: Option<NaiveDate>,
}

/// `POST /api/v1/clients/{name}/versions`: sets component versions (merged
/// into the current ones; `null` removes one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionsRequest {
    /// Component → version (`null` removes it).
    pub versions: BTreeMap<String, Option<String>>,
}

/// `POST /api/v1/clients/{name}/notes`: replaces the notes (allowed also on
/// a destroyed client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotesRequest {
    /// The new notes.
    pub notes: String,
}

/// One lifecycle operation on a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    /// See [`DeployRequest`].
    Deploy(DeployRequest),
    /// See [`RebuildRequest`].
    Rebuild(RebuildRequest),
    /// See [`DestroyRequest`].
    Destroy(DestroyRequest),
    /// See [`StatusRequest`].
    Status(StatusRequest),
    /// See [`MaintenanceRequest`].
    Maintenance(MaintenanceRequest),
    /// See [`VersionsRequest`].
    Versions(VersionsRequest),
    /// See [`NotesRequest`].
    Notes(NotesRequest),
}

impl ClientAction {
    /// The audit action (`client.deploy`, …).
    pub fn audit_action(&self) -> &'static str {
        match self {
            ClientAction::Deploy(_) => "client.deploy",
            ClientAction::Rebuild(_) => "client.rebuild",
            ClientAction::Destroy(_) => "client.destroy",
            ClientAction::Status(_) => "client.status",
            ClientAction::Maintenance(_) => "client.maintenance",
            ClientAction::Versions(_) => "client.versions",
            ClientAction::Notes(_) => "client.notes",
        }
    }

    /// Whether the operation creates a missing client (only deploy does).
    pub fn creates(&self) -> bool {
        matches!(self, ClientAction::Deploy(_))
    }

    /// The spec after the operation on `current` (a new client's default
    /// spec when it is being created), validated; `today` is the default date.
    pub fn apply(
        &self,
        name: &str,
        current: &ClientSpec,
        today: NaiveDate,
    ) -> Result<ClientSpec, Error> {
        use ClientStatus as S;
        let mut next = current.clone();
        let destroyed = current.status == S::Destroyed;
        match self {
            ClientAction::Deploy(deploy) => {
                let date = deploy.date.unwrap_or(today);
                next.status = S::Deployed;
                if let Some(role) = deploy.role {
                    next.role = role;
                }
                next.server.overlay(&deploy.server);
                next.deployed_date = Some(date);
                next.destroyed_date = None;
                for field in [
                    MaintenanceField::LastFullUpdate,
                    MaintenanceField::LastSecurityPatch,
                    MaintenanceField::LastOsUpdate,
                ] {
                    next.maintenance.set(field, Some(date));
                }
            }
            ClientAction::Rebuild(rebuild) => {
                if !matches!(current.status, S::Deployed | S::Maintenance) {
                    return Err(Error::Transition {
                        from: current.status,
                        to: current.status,
                        reason: "only a deployed client or one in maintenance can be rebuilt"
                            .to_owned(),
                    });
                }
                next.server.overlay(&rebuild.server);
                next.maintenance.set(
                    MaintenanceField::LastFullUpdate,
                    Some(rebuild.date.unwrap_or(today)),
                );
            }
            ClientAction::Destroy(destroy) => {
                if !destroyed {
                    next.status = S::Destroyed;
                    next.destroyed_date = Some(destroy.date.unwrap_or(today));
                }
            }
            ClientAction::Status(request) => {
                if matches!(request.status, S::Pending | S::Destroyed) {
                    return Err(Error::invalid(
                        "status",
                        "set deployed, maintenance or offboarding here; use destroy to destroy",
                    ));
                }
                current.status.check_move(request.status)?;
                next.status = request.status;
            }
            ClientAction::Maintenance(stamp) => {
                if destroyed {
                    return Err(Error::Destroyed(name.to_owned()));
                }
                next.maintenance
                    .set(stamp.field, Some(stamp.date.unwrap_or(today)));
            }
            ClientAction::Versions(request) => {
                if destroyed {
                    return Err(Error::Destroyed(name.to_owned()));
                }
                if request.versions.is_empty() {
                    return Err(Error::invalid("versions", "name at least one component"));
                }
                for (component, version) in &request.versions {
                    match version {
                        Some(version) => {
                            next.versions.insert(component.clone(), version.clone());
                        }
                        None => {
                            next.versions.remove(component);
                        }
                    }
                }
            }
            ClientAction::Notes(request) => {
                if request.notes.chars().count() > MAX_NOTES {
                    return Err(Error::invalid(
                        "notes",
                        format!("must be at most {MAX_NOTES} characters"),
                    ));
                }
                next.notes.clone_from(&request.notes);
            }
        }
        next.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 2, d).unwrap()
    }

    fn run(action: ClientAction, spec: &ClientSpec) -> Result<ClientSpec, Error> {
        action.apply("acme", spec, day(10))
    }

    #[test]
    fn deploy_initialises_and_redeploys_a_destroyed_client() {
        let deploy = ClientAction::Deploy(DeployRequest {
            role: Some(ClientRole::Canary),
            server: ServerInfo {
                ip: Some("203.0.113.5".parse().unwrap()),
                ..ServerInfo::default()
            },
            date: None,
        });
        let fresh = run(deploy.clone(), &ClientSpec::default()).unwrap();
        assert_eq!(fresh.status, ClientStatus::Deployed);
        assert_eq!(fresh.role, ClientRole::Canary);
        assert_eq!(fresh.deployed_date, Some(day(10)));
        assert_eq!(fresh.maintenance.last_os_update, Some(day(10)));
        assert_eq!(fresh.maintenance.last_backup_verified, None);
        let destroyed = run(ClientAction::Destroy(DestroyRequest::default()), &fresh).unwrap();
        assert_eq!(destroyed.status, ClientStatus::Destroyed);
        assert_eq!(destroyed.destroyed_date, Some(day(10)));
        assert_eq!(destroyed.server, fresh.server, "kept for the audit trail");
        let again = run(deploy, &destroyed).unwrap();
        assert_eq!(again.status, ClientStatus::Deployed);
        assert_eq!(again.destroyed_date, None);
    }

    #[test]
    fn rebuild_needs_a_running_client_and_stamps_the_full_update() {
        let running = ClientSpec {
            status: ClientStatus::Deployed,
            ..ClientSpec::default()
        };
        let rebuild = ClientAction::Rebuild(RebuildRequest {
            server: ServerInfo {
                id: Some("999".into()),
                ..ServerInfo::default()
            },
            date: Some(day(3)),
        });
        let next = run(rebuild.clone(), &running).unwrap();
        assert_eq!(next.maintenance.last_full_update, Some(day(3)));
        assert_eq!(next.server.id.as_deref(), Some("999"));
        let pending = ClientSpec::default();
        assert_eq!(
            run(rebuild, &pending).unwrap_err().code(),
            ErrorCode::InvalidStatusTransition
        );
    }

    #[test]
    fn status_moves_follow_the_lifecycle() {
        let destroyed = ClientSpec {
            status: ClientStatus::Destroyed,
            ..ClientSpec::default()
        };
        let to = |status| ClientAction::Status(StatusRequest { status });
        assert_eq!(
            run(to(ClientStatus::Maintenance), &destroyed)
                .unwrap_err()
                .code(),
            ErrorCode::InvalidStatusTransition
        );
        assert_eq!(
            run(to(ClientStatus::Pending), &ClientSpec::default())
                .unwrap_err()
                .code(),
            ErrorCode::ValidationError
        );
        let stamp = ClientAction::Maintenance(MaintenanceRequest {
            field: MaintenanceField::LastSecurityPatch,
            date: None,
        });
        assert_eq!(
            run(stamp, &destroyed).unwrap_err().code(),
            ErrorCode::ClientDestroyed
        );
    }

    #[test]
    fn versions_merge_and_null_removes() {
        let mut spec = ClientSpec::default();
        spec.versions.insert("nextcloud".into(), "30".into());
        spec.versions.insert("ubuntu".into(), "24.04".into());
        let request = ClientAction::Versions(VersionsRequest {
            versions: [
                ("nextcloud".to_owned(), Some("31.0.2".to_owned())),
                ("ubuntu".to_owned(), None),
            ]
            .into(),
        });
        let next = run(request, &spec).unwrap();
        assert_eq!(next.versions.len(), 1);
        assert_eq!(next.versions["nextcloud"], "31.0.2");
    }
}
