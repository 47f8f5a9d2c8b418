//! Reading an uploaded kubeconfig safely: inline data only.
//!
//! A kubeconfig handed to a general client can make it run commands (`exec`,
//! `auth-provider`), read files on the server (`tokenFile`, `client-certificate`,
//! `client-key`, `certificate-authority`), send a password (`username`/`password`),
//! go through a proxy (`proxy-url`) or act as another user (`as`, `as-uid`,
//! `as-groups`, `as-user-extra`). The YAML is therefore read here, key by key,
//! against an allow-list: every key of every cluster, user and context entry
//! must be one this module knows to be inert or inline data. Names are compared
//! ignoring case (Go's JSON decoding, and so kubectl, matches `Exec` as `exec`);
//! an unknown or misspelt key is refused too, so nothing a future client might
//! honour slips through. Errors name the field as a path
//! (`users[0].user.exec`) and never quote a value.
//!
//! Accepted: `clusters[].cluster.{server, certificate-authority-data,
//! insecure-skip-tls-verify, tls-server-name, disable-compression, extensions}`,
//! `users[].user.{token, client-certificate-data, client-key-data, extensions}`,
//! `contexts[].context.{cluster, user, namespace, extensions}`, and at the top
//! `apiVersion`, `kind`, `clusters`, `users`, `contexts`, `current-context`,
//! `preferences`, `extensions`. The current context (or the only one) picks the
//! cluster and user, which must exist.

use crate::credential::{secret, ApiAuth, Fields, Parts, TlsTrust};
use crate::credential_error::CredentialError;
use crate::pki;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;
use serde_yaml::{Mapping, Value};
use zeroize::Zeroize;

/// Largest kubeconfig read (a Kubernetes Secret holds at most 1 MiB).
pub const MAX_KUBECONFIG_BYTES: usize = 1024 * 1024;

const TOP_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "clusters",
    "users",
    "contexts",
    "current-context",
    "preferences",
    "extensions",
];
const ENTRY_KEYS: &[&str] = &["name"];
const CLUSTER_KEYS: &[&str] = &[
    "server",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
    "tls-server-name",
    "disable-compression",
    "extensions",
];
const USER_KEYS: &[&str] = &[
    "token",
    "client-certificate-data",
    "client-key-data",
    "extensions",
];
const CONTEXT_KEYS: &[&str] = &["cluster", "user", "namespace", "extensions"];

const RUNS_COMMANDS: &str =
    "credential plugins run commands on the server; use an inline token or client certificate";
const READS_FILES: &str =
    "file paths would be read on the server; put the data inline (the *-data fields)";
const TOKEN_FILE: &str = "a token file would be read on the server; put the token inline in token";
const BASIC_AUTH: &str = "basic authentication is not supported; use a token or client certificate";
const PROXY: &str = "the probe connects to API servers directly, never through a proxy";
const IMPERSONATION: &str = "impersonation is not supported; use the identity itself";
const UNKNOWN: &str = "unknown field; only the inline fields of a kubeconfig are accepted";

/// Why a key of a user entry is refused, by its lower-case name.
fn forbidden_user_key(key: &str) -> Option<&'static str> {
    match key {
        "exec" | "auth-provider" => Some(RUNS_COMMANDS),
        "tokenfile" => Some(TOKEN_FILE),
        "client-certificate" | "client-key" => Some(READS_FILES),
        "username" | "password" => Some(BASIC_AUTH),
        "as" | "as-uid" | "as-groups" | "as-user-extra" => Some(IMPERSONATION),
        _ if key.starts_with("impersonate") => Some(IMPERSONATION),
        _ => None,
    }
}

/// Why a key of a cluster entry is refused, by its lower-case name.
fn forbidden_cluster_key(key: &str) -> Option<&'static str> {
    match key {
        "certificate-authority" => Some(READS_FILES),
        "proxy-url" => Some(PROXY),
        _ => None,
    }
}

/// The parsed YAML, every string in it zeroed when dropped (tokens and keys
/// pass through it).
struct Document(Value);

impl Drop for Document {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Sequence(items) => items.iter_mut().for_each(wipe),
        Value::Mapping(map) => map.values_mut().for_each(wipe),
        Value::Tagged(tagged) => wipe(&mut tagged.value),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// One named entry of `clusters`, `users` or `contexts`.
struct Entry<'a> {
    /// `users[0]`.
    path: String,
    name: &'a str,
    /// The inner mapping (`user`, `cluster`, `context`), absent when null.
    body: Option<&'a Mapping>,
}

impl Entry<'_> {
    fn field(&self, inner: &str, key: &str) -> String {
        format!("{}.{inner}.{key}", self.path)
    }
}

/// Reads `yaml` into the parts of a credential, refusing anything but inline data.
pub(crate) fn read(yaml: &str) -> Result<Parts, CredentialError> {
    if yaml.len() > MAX_KUBECONFIG_BYTES {
        return Err(CredentialError::invalid(
            "kubeconfig",
            format!("larger than {MAX_KUBECONFIG_BYTES} bytes"),
        ));
    }
    let document = Document(serde_yaml::from_str(yaml).map_err(yaml_error)?);
    let top = match &document.0 {
        Value::Mapping(top) => top,
        _ => return Err(CredentialError::invalid("kubeconfig", "not a YAML mapping")),
    };
    check_keys(top, "", TOP_KEYS, |_| None)?;
    let clusters = entries(
        top,
        "clusters",
        "cluster",
        CLUSTER_KEYS,
        forbidden_cluster_key,
    )?;
    let users = entries(top, "users", "user", USER_KEYS, forbidden_user_key)?;
    let contexts = entries(top, "contexts", "context", CONTEXT_KEYS, |_| None)?;

    let context = chosen_context(top, &contexts)?;
    let cluster = referenced(context, "cluster", &clusters)?;
    let user = referenced(context, "user", &users)?;
    let mut parts = user_parts(user)?;
    cluster_parts(cluster, &mut parts)?;
    Ok(parts)
}

/// A YAML syntax error by position only (libyaml's messages may quote input).
fn yaml_error(error: serde_yaml::Error) -> CredentialError {
    let text = error.to_string();
    let what = if text.contains("duplicate entry") {
        "a key appears twice in one mapping"
    } else if text.contains("more than one document") {
        "holds more than one YAML document"
    } else {
        "not valid YAML"
    };
    let reason = match error.location() {
        Some(at) => format!("{what} (line {}, column {})", at.line(), at.column()),
        None => what.to_owned(),
    };
    CredentialError::invalid("kubeconfig", reason)
}

/// The path of `key` below `prefix` (`users[0].user` + `exec`).
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Every key of `map` is a string in `allowed`, spelt exactly so; a key that
/// `forbidden` names (in lower case) is refused with its reason, any other with
/// [`UNKNOWN`].
fn check_keys(
    map: &Mapping,
    prefix: &str,
    allowed: &[&str],
    forbidden: impl Fn(&str) -> Option<&'static str>,
) -> Result<(), CredentialError> {
    for key in map.keys() {
        let Value::String(key) = key else {
            return Err(CredentialError::invalid(
                join(prefix, "<key>"),
                "mapping keys must be strings",
            ));
        };
        let lower = key.to_ascii_lowercase();
        if let Some(reason) = forbidden(&lower) {
            return Err(CredentialError::forbidden(join(prefix, key), reason));
        }
        // Exact spelling only: `Token` may mean `token` to one client and
        // nothing to another.
        if !allowed.contains(&key.as_str()) {
            return Err(CredentialError::forbidden(join(prefix, key), UNKNOWN));
        }
    }
    Ok(())
}

/// `top[list]` (absent or null: empty) as named entries whose inner mapping is
/// `inner`, every key checked; names unique.
fn entries<'a>(
    top: &'a Mapping,
    list: &str,
    inner: &str,
    allowed: &[&str],
    forbidden: fn(&str) -> Option<&'static str>,
) -> Result<Vec<Entry<'a>>, CredentialError> {
    let items = match top.get(list) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Sequence(items)) => items,
        Some(_) => return Err(CredentialError::invalid(list, "must be a list")),
    };
    let mut found: Vec<Entry<'a>> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let path = format!("{list}[{index}]");
        let Value::Mapping(item) = item else {
            return Err(CredentialError::invalid(path, "must be a mapping"));
        };
        let mut keys: Vec<&str> = ENTRY_KEYS.to_vec();
        keys.push(inner);
        check_keys(item, &path, &keys, |_| None)?;
        let name = match item.get("name") {
            Some(Value::String(name)) if !name.is_empty() => name.as_str(),
            Some(_) => {
                return Err(CredentialError::invalid(
                    join(&path, "name"),
                    "must be a non-empty string",
                ))
            }
            None => {
                return Err(CredentialError::missing(
                    join(&path, "name"),
                    "every entry is named",
                ))
            }
        };
        if found.iter().any(|e| e.name == name) {
            return Err(CredentialError::invalid(
                join(&path, "name"),
                format!("another entry of {list} has the same name"),
            ));
        }
        let body = match item.get(inner) {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(body)) => Some(body),
            Some(_) => {
                return Err(CredentialError::invalid(
                    join(&path, inner),
                    "must be a mapping",
                ))
            }
        };
        if let Some(body) = body {
            check_keys(body, &join(&path, inner), allowed, forbidden)?;
        }
        found.push(Entry { path, name, body });
    }
    Ok(found)
}

/// The context `current-context` names, or the only one.
fn chosen_context<'a, 'b>(
    top: &Mapping,
    contexts: &'b [Entry<'a>],
) -> Result<&'b Entry<'a>, CredentialError> {
    let current = match top.get("current-context") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) if name.is_empty() => None,
        Some(Value::String(name)) => Some(name.as_str()),
        Some(_) => {
            return Err(CredentialError::invalid(
                "current-context",
                "must be a string",
            ))
        }
    };
    match (current, contexts) {
        (Some(name), _) => contexts.iter().find(|c| c.name == name).ok_or_else(|| {
            CredentialError::invalid("current-context", "names no entry of contexts")
        }),
        (None, [only]) => Ok(only),
        (None, []) => Err(CredentialError::missing(
            "contexts",
            "a context naming the cluster and user to use",
        )),
        (None, _) => Err(CredentialError::missing(
            "current-context",
            "there are several contexts; name the one to use",
        )),
    }
}

/// The entry of `entries` that the context's `key` (`cluster` or `user`) names.
fn referenced<'a, 'b>(
    context: &Entry<'_>,
    key: &str,
    entries: &'b [Entry<'a>],
) -> Result<&'b Entry<'a>, CredentialError> {
    let field = context.field("context", key);
    let name = match context.body.and_then(|b| b.get(key)) {
        Some(Value::String(name)) if !name.is_empty() => name.as_str(),
        None | Some(Value::Null) => {
            return Err(CredentialError::missing(field, "the context must name it"))
        }
        Some(_) => return Err(CredentialError::invalid(field, "must be a string")),
    };
    entries
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| CredentialError::invalid(field, format!("names no entry of {key}s")))
}

/// A string field of an entry's body, if present.
fn string<'a>(
    entry: &Entry<'a>,
    inner: &str,
    key: &str,
) -> Result<Option<&'a str>, CredentialError> {
    match entry.body.and_then(|b| b.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(CredentialError::invalid(
            entry.field(inner, key),
            "must be a string",
        )),
    }
}

/// A boolean field of an entry's body (absent: false).
fn boolean(entry: &Entry<'_>, inner: &str, key: &str) -> Result<bool, CredentialError> {
    match entry.body.and_then(|b| b.get(key)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(CredentialError::invalid(
            entry.field(inner, key),
            "must be true or false",
        )),
    }
}

/// A `*-data` field: base64 (white space ignored) of UTF-8 text, zeroed on
/// every error path.
fn base64_text(field: &str, data: &str) -> Result<SecretString, CredentialError> {
    let mut compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let decoded = STANDARD.decode(compact.as_bytes());
    compact.zeroize();
    let bytes = decoded.map_err(|_| CredentialError::invalid(field, "not valid base64"))?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(secret(text)),
        Err(error) => {
            error.into_bytes().zeroize();
            Err(CredentialError::invalid(
                field,
                "does not decode to PEM text",
            ))
        }
    }
}

/// The user's authentication: a token, a client certificate and key, or none.
fn user_parts(user: &Entry<'_>) -> Result<Parts, CredentialError> {
    let field = |key: &str| user.field("user", key);
    let token = string(user, "user", "token")?;
    let certificate = string(user, "user", "client-certificate-data")?;
    let key = string(user, "user", "client-key-data")?;
    let (api_auth, client_chain) = match (token, certificate, key) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(CredentialError::invalid(
                field("token"),
                "give a token or a client certificate, not both",
            ))
        }
        (Some(token), None, None) => (ApiAuth::BearerToken(SecretString::from(token)), None),
        (None, Some(_), None) => {
            return Err(CredentialError::missing(
                field("client-key-data"),
                "the client certificate needs its key",
            ))
        }
        (None, None, Some(_)) => {
            return Err(CredentialError::missing(
                field("client-certificate-data"),
                "the client key needs its certificate",
            ))
        }
        (None, Some(certificate), Some(key)) => {
            let certificate_field = field("client-certificate-data");
            let certificate = base64_text(&certificate_field, certificate)?;
            let certificate_pem = secrecy::ExposeSecret::expose_secret(&certificate).to_owned();
            let chain = pki::certificates(&certificate_pem)
                .map_err(|reason| CredentialError::invalid(&certificate_field, reason))?;
            let key_pem = base64_text(&field("client-key-data"), key)?;
            (
                ApiAuth::ClientCertificate {
                    certificate_pem,
                    key_pem,
                },
                Some(chain),
            )
        }
        (None, None, None) => (ApiAuth::None, None),
    };
    Ok(Parts {
        api_auth,
        client_chain,
        tls: TlsTrust::PlatformRoots,
        ca: None,
        tls_server_name: None,
        server: None,
        fields: Fields {
            key: field(if token.is_some() {
                "token"
            } else {
                "client-key-data"
            }),
            certificate: field("client-certificate-data"),
            ca: String::new(),
            server_name: String::new(),
        },
    })
}

/// The cluster's server, TLS trust and server name, into `parts`.
fn cluster_parts(cluster: &Entry<'_>, parts: &mut Parts) -> Result<(), CredentialError> {
    let field = |key: &str| cluster.field("cluster", key);
    let server = string(cluster, "cluster", "server")?
        .ok_or_else(|| CredentialError::missing(field("server"), "the API server's URL"))?;
    let scheme_ok = url::Url::parse(server)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !scheme_ok {
        return Err(CredentialError::invalid(
            field("server"),
            "not an http:// or https:// URL with a host",
        ));
    }
    let insecure = boolean(cluster, "cluster", "insecure-skip-tls-verify")?;
    boolean(cluster, "cluster", "disable-compression")?;
    let ca_field = field("certificate-authority-data");
    match (
        string(cluster, "cluster", "certificate-authority-data")?,
        insecure,
    ) {
        (Some(_), true) => {
            return Err(CredentialError::invalid(
                field("insecure-skip-tls-verify"),
                "cannot be combined with certificate-authority-data",
            ))
        }
        (Some(data), false) => {
            let pem = base64_text(&ca_field, data)?;
            let pem = secrecy::ExposeSecret::expose_secret(&pem).to_owned();
            let ca = pki::certificates(&pem)
                .map_err(|reason| CredentialError::invalid(&ca_field, reason))?;
            parts.tls = TlsTrust::CaPem(pem);
            parts.ca = Some(ca);
        }
        (None, true) => parts.tls = TlsTrust::InsecureSkipVerify,
        (None, false) => parts.tls = TlsTrust::PlatformRoots,
    }
    parts.tls_server_name = string(cluster, "cluster", "tls-server-name")?
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    parts.server = Some(server.to_owned());
    parts.fields.ca = ca_field;
    parts.fields.server_name = field("tls-server-name");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_bombs_are_refused_quickly() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            yaml.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let started = std::time::Instant::now();
        let error = read(&yaml).err().unwrap();
        assert_eq!(error.field(), "kubeconfig", "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn oversized_and_non_mapping_documents_are_refused() {
        let big = "#".repeat(MAX_KUBECONFIG_BYTES + 1);
        assert_eq!(read(&big).err().unwrap().field(), "kubeconfig");
        assert_eq!(read("- a\n- b\n").err().unwrap().field(), "kubeconfig");
        let two = "kind: Config\n---\nkind: Config\n";
        let error = read(two).err().unwrap();
        assert!(error.reason().contains("more than one"), "{error}");
    }

    #[test]
    fn wiping_zeroes_every_string() {
        let mut value: Value =
            serde_yaml::from_str("a: [secret-1, {b: secret-2}]\nc: !tag secret-3\n").unwrap();
        wipe(&mut value);
        let text = serde_yaml::to_string(&value).unwrap();
        assert!(!text.contains("secret"), "{text}");
    }
}
