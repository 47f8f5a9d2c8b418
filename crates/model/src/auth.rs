//! API tokens and roles (DESIGN.md: bearer tokens with roles `admin`,
//! `operator`, `viewer`, `auditor`). Tokens are stored hashed; the plain token
//! exists only in the answer to its creation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// What a token may do (the permission matrix is in the README).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including managing tokens.
    Admin,
    /// Reads and writes the inventory, uploads credentials.
    Operator,
    /// Reads the inventory.
    Viewer,
    /// Reads the audit log.
    Auditor,
    /// An edge agent: reads its own node's configuration and acknowledges
    /// it, nothing else (the token is bound to one node).
    Agent,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Viewer,
        Role::Auditor,
        Role::Agent,
    ];

    /// The wire form (`admin`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored API token (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiToken {
    /// Its id.
    pub id: Uuid,
    /// A unique name (the audit log's actor).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The edge node an `agent` token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl ApiToken {
    /// Usable at `now`: neither revoked nor expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// A unique name, 1–63 characters of `[a-zA-Z0-9._@:-]`.
    #[schema(pattern = "^[a-zA-Z0-9._@:-]{1,63}$")]
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Lifetime in seconds; forever when absent.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub expires_in_seconds: Option<u64>,
}

impl TokenCreateRequest {
    /// Checks the name and lifetime.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._@:-".contains(c));
        if !name_ok {
            return Err(crate::Error::invalid(
                "name",
                "1-63 characters of letters, digits and . _ @ : -",
            ));
        }
        if self.role == Role::Agent {
            return Err(crate::Error::invalid(
                "role",
                "agent tokens are bound to a node: create one with POST /api/v1/nodes/{name}/token",
            ));
        }
        if self.expires_in_seconds == Some(0) {
            return Err(crate::Error::invalid(
                "expires_in_seconds",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// The answer to creating a token: the only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The bearer token (shown once; store it now).
    pub token: String,
    /// The stored record.
    #[serde(flatten)]
    pub record: ApiToken,
}
