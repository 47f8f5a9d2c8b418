//! One rule for the query string of every endpoint, taken from the OpenAPI
//! document: a request may carry only the query parameters its operation
//! declares, each at most once unless declared as an array, with no control
//! characters. The handlers then parse the values with the typed readers
//! below. Because the rule reads the document, an undocumented parameter is
//! refused, so the document cannot fall behind the handlers.

use crate::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::{OpenApi, RefOr, Schema};

/// The query parameters each operation declares, by method and route template.
#[derive(Debug, Default)]
pub struct DeclaredParameters {
    /// Route template, then method (looked up without allocating per request).
    by_route: HashMap<String, HashMap<Method, Declared>>,
}

#[derive(Debug, Default)]
struct Declared {
    names: BTreeSet<String>,
    repeatable: BTreeSet<String>,
}

impl DeclaredParameters {
    /// Reads every operation's query parameters from `doc`.
    pub fn from_openapi(doc: &OpenApi) -> Self {
        let mut by_route: HashMap<String, HashMap<Method, Declared>> = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    by_route
                        .entry(path.clone())
                        .or_default()
                        .insert(method, declared(operation));
                }
            }
        }
        DeclaredParameters { by_route }
    }

    /// Checks a request's query string against its operation's declaration.
    /// An operation the document does not describe accepts no parameters.
    pub fn check(&self, method: &Method, route: &str, query: &str) -> Result<(), ApiError> {
        // HEAD is answered by the GET handler.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        let empty = Declared::default();
        let declared = self
            .by_route
            .get(route)
            .and_then(|methods| methods.get(method))
            .unwrap_or(&empty);
        let mut seen = BTreeSet::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !declared.names.contains(name.as_ref()) {
                let expected = if declared.names.is_empty() {
                    "this endpoint takes no query parameters".to_owned()
                } else {
                    let names: Vec<&str> = declared.names.iter().map(String::as_str).collect();
                    format!("expected one of {}", names.join(", "))
                };
                return Err(ApiError::validation(
                    &bounded(&name),
                    format!("unknown query parameter; {expected}"),
                ));
            }
            if !declared.repeatable.contains(name.as_ref()) && !seen.insert(name.to_string()) {
                return Err(ApiError::validation(name.as_ref(), "given more than once"));
            }
            if value.chars().any(char::is_control) {
                return Err(ApiError::validation(
                    name.as_ref(),
                    "must not contain control characters",
                ));
            }
        }
        Ok(())
    }
}

fn declared(operation: &Operation) -> Declared {
    let mut declared = Declared::default();
    for parameter in operation.parameters.iter().flatten() {
        if !matches!(parameter.parameter_in, ParameterIn::Query) {
            continue;
        }
        declared.names.insert(parameter.name.clone());
        if matches!(parameter.schema, Some(RefOr::T(Schema::Array(_)))) {
            declared.repeatable.insert(parameter.name.clone());
        }
    }
    declared
}

/// A name from the caller (a query parameter, a JSON key) as quoted back in
/// an error: at most 64 characters of it.
pub(crate) fn bounded(name: &str) -> String {
    let mut quoted: String = name.chars().take(64).collect();
    if quoted.len() < name.len() {
        quoted.push('…');
    }
    quoted
}

/// Middleware applying [`DeclaredParameters::check`] to every routed request.
pub async fn enforce(
    State(declared): State<Arc<DeclaredParameters>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(query) = request.uri().query() {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str);
        if let Err(error) = declared.check(request.method(), route, query) {
            return error.into_response();
        }
    }
    next.run(request).await
}

/// Reads an integer parameter that must lie in `min..=max`.
pub fn integer<T>(field: &str, value: &str, min: T, max: T) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    value
        .parse::<T>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::validation(field, format!("must be an integer from {min} to {max}"))
        })
}

/// Reads a boolean parameter (`true`/`false`/`1`/`0`).
pub fn boolean(field: &str, value: &str) -> Result<bool, ApiError> {
    Ok(fleetreg_model::parse_bool(field, value)?)
}

/// Reads an RFC 3339 timestamp parameter within the storable years 0001–9999.
pub fn timestamp(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    let at = DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::validation(field, "must be an RFC 3339 timestamp"))?;
    fleetreg_model::check_storable(field, &at)?;
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi as _;

    fn declared() -> DeclaredParameters {
        DeclaredParameters::from_openapi(&crate::openapi::ApiDoc::openapi())
    }

    #[test]
    fn the_document_declares_the_list_filters_and_a_repeatable_label() {
        let declared = declared();
        let list = |query: &str| declared.check(&Method::GET, "/api/v1/clusters", query);
        assert!(list("name=a&page=2&label=a=b&label=c=d").is_ok());
        assert!(list("page=1&page=2").is_err());
        assert!(list("colour=red").is_err());
        assert!(list("name=a%0Ab").is_err());
    }

    #[test]
    fn event_types_repeat_and_the_other_event_filters_do_not() {
        let declared = declared();
        for route in ["/api/v1/events", "/api/v1/events/stream"] {
            let check = |query: &str| declared.check(&Method::GET, route, query);
            assert!(check("type=CLUSTER_DELETED&type=NODE_UPDATED&resource=node").is_ok());
            assert!(check("resource_id=0190c0de-0000-7000-8000-000000000001").is_ok());
            assert!(check("resource=node&resource=client").is_err());
            assert!(check("resource_id=a&resource_id=b").is_err());
            assert!(check("after=1&after=2").is_err());
            assert!(check("types=CLUSTER_DELETED").is_err());
        }
    }

    #[test]
    fn an_operation_without_parameters_refuses_any() {
        let declared = declared();
        assert!(declared
            .check(&Method::GET, "/api/v1/clusters/{id}", "x=1")
            .is_err());
        assert!(declared.check(&Method::GET, "/unknown", "x=1").is_err());
        assert!(declared
            .check(&Method::GET, "/api/v1/clusters/{id}", "")
            .is_ok());
    }

    #[test]
    fn quoted_names_are_bounded() {
        assert_eq!(bounded(&"n".repeat(5000)).chars().count(), 65);
        assert_eq!(bounded("after"), "after");
    }
}
