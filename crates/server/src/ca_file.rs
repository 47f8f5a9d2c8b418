//! CA bundles (PEM) that the server's outgoing checks trust besides the web
//! PKI roots: `client_health.ca_file` and `edge.http_check.ca_file`, read
//! once at start-up, so a bad file stops `serve` before it listens.

use std::path::Path;

/// Why a CA bundle setting could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read.
    #[error("cannot read {setting} {path}: {source}")]
    Read {
        /// The setting, e.g. `client_health.ca_file`.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable certificate, or the HTTP client could not
    /// be built.
    #[error("{setting} {path}: {source}")]
    Probe {
        /// The setting.
        setting: &'static str,
        /// The file (empty without one).
        path: String,
        /// Why.
        source: fleetreg_probe::Error,
    },
}

/// Builds a checker with `make` from the PEM text of `file`, the value of
/// `setting` (`None` without one), naming the setting in any error.
pub fn with_ca_file<T>(
    setting: &'static str,
    file: Option<&Path>,
    make: impl FnOnce(Option<&str>) -> Result<T, fleetreg_probe::Error>,
) -> Result<T, CaFileError> {
    let path = file.map(|p| p.display().to_string()).unwrap_or_default();
    let pem = match file {
        Some(file) => Some(
            std::fs::read_to_string(file).map_err(|source| CaFileError::Read {
                setting,
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    make(pem.as_deref()).map_err(|source| CaFileError::Probe {
        setting,
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetreg_probe::{EgressPolicy, NodeChecker};

    fn node_checker(file: Option<&Path>) -> Result<NodeChecker, CaFileError> {
        with_ca_file("edge.http_check.ca_file", file, |pem| {
            NodeChecker::new(EgressPolicy::default(), pem)
        })
    }

    #[test]
    fn a_missing_or_certificate_less_file_is_an_error_naming_the_setting() {
        assert!(node_checker(None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = node_checker(Some(&missing)).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "cannot read edge.http_check.ca_file {}: ",
                missing.display()
            )),
            "{error}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let error = node_checker(Some(&empty)).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("edge.http_check.ca_file {}: ", empty.display()))
                && error.contains("no PEM CERTIFICATE"),
            "{error}"
        );
    }
}
