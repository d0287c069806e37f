//! Query strings: parsed by the handler rather than by warp's filter, so that a bad one
//! answers `invalid_request` in the JSON error shape with a message that names the
//! problem.

use serde::de::DeserializeOwned;
use warp::Filter;

use super::error::{ApiError, ErrorCode};

/// The raw query string; empty when the URL has none.
pub(super) fn raw()
-> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// Parses a query string into `T`; unknown, repeated, missing or ill-typed parameters
/// are `invalid_request`.
pub(super) fn parse<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    let mut seen = Vec::new();
    for (name, _) in form_pairs(raw) {
        if seen.contains(&name) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("the query parameter `{name}` is given more than once"),
            ));
        }
        seen.push(name);
    }
    serde_urlencoded::from_str(raw).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("the query string is not valid: {e}"),
        )
    })
}

/// The names and values of a query string, decoded.
fn form_pairs(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Page {
        after: Option<i64>,
        limit: Option<u32>,
    }

    #[test]
    fn parameters_are_parsed_strictly() {
        assert_eq!(
            parse::<Page>("after=5&limit=10").unwrap(),
            Page {
                after: Some(5),
                limit: Some(10)
            }
        );
        assert_eq!(
            parse::<Page>("").unwrap(),
            Page {
                after: None,
                limit: None
            }
        );
        for bad in [
            "after=x",
            "limit=-1",
            "after=1&after=2",
            "other=1",
            "limit=1e3",
        ] {
            assert!(parse::<Page>(bad).is_err(), "{bad}");
        }
    }
}
