//! [`CredentialError`]: why an uploaded credential was refused, naming the field.

/// Why a credential was refused. [`CredentialError::field`] names the offending
/// field as a path into what was uploaded (`users[0].user.exec`,
/// `clusters[0].cluster.certificate-authority`, or a request field such as
/// `token` or `ca_cert`); the message never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// A field a kubeconfig may not use: it would run a command, read a file,
    /// send a password, go through a proxy or act as someone else.
    #[error("{field}: not accepted: {reason}")]
    Forbidden {
        /// The field, e.g. `users[0].user.exec`.
        field: String,
        /// Why it is refused and what to use instead.
        reason: &'static str,
    },
    /// A required field is absent.
    #[error("{field}: required: {reason}")]
    Missing {
        /// The field, e.g. `current-context`.
        field: String,
        /// What it is needed for.
        reason: String,
    },
    /// A field holds a value that cannot be used.
    #[error("{field}: invalid: {reason}")]
    Invalid {
        /// The field, e.g. `users[0].user.client-key-data`.
        field: String,
        /// What is wrong (never the value itself).
        reason: String,
    },
}

impl CredentialError {
    /// The offending field as a path, for the `details` of an API error.
    pub fn field(&self) -> &str {
        match self {
            CredentialError::Forbidden { field, .. }
            | CredentialError::Missing { field, .. }
            | CredentialError::Invalid { field, .. } => field,
        }
    }

    /// Why, without the field.
    pub fn reason(&self) -> &str {
        match self {
            CredentialError::Forbidden { reason, .. } => reason,
            CredentialError::Missing { reason, .. } | CredentialError::Invalid { reason, .. } => {
                reason
            }
        }
    }

    pub(crate) fn forbidden(field: impl Into<String>, reason: &'static str) -> CredentialError {
        CredentialError::Forbidden {
            field: field.into(),
            reason,
        }
    }

    pub(crate) fn missing(field: impl Into<String>, reason: impl Into<String>) -> CredentialError {
        CredentialError::Missing {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CredentialError {
        CredentialError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_field_first() {
        let error = CredentialError::forbidden("users[0].user.exec", "runs a command");
        assert_eq!(error.field(), "users[0].user.exec");
        assert_eq!(
            error.to_string(),
            "users[0].user.exec: not accepted: runs a command"
        );
        let missing = CredentialError::missing("current-context", "names the context to use");
        assert_eq!(missing.field(), "current-context");
        assert_eq!(missing.reason(), "names the context to use");
    }
}
