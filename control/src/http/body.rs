//! Request bodies and query strings, refused with the API's own errors.

use super::error::ApiError;
use super::Shared;
use crate::store::Page;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;
use std::collections::HashMap;

/// A JSON body: any JSON value, or a 400/413 in the API's error shape.
pub struct JsonBody(pub Value);

impl FromRequest<Shared> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, ApiError> {
        let limit = state.config.management_api.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(limit)
            } else {
                ApiError::bad(
                    "",
                    format!("cannot read the request body: {}", e.body_text()),
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad(
                "",
                "the request body is empty: send a JSON document",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad("", format!("malformed JSON: {e}")))
    }
}

/// OWT's `?page=&per_page=`: no pagination without `per_page`; `page` is 1-based.
pub fn page_from_query(q: &HashMap<String, String>) -> Result<Option<Page>, ApiError> {
    let num = |name: &str| -> Result<Option<u64>, ApiError> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(ApiError::bad(
                    name,
                    format!("{v:?} is not a positive integer"),
                )),
            },
        }
    };
    let page = num("page")?;
    Ok(num("per_page")?.map(|per_page| Page {
        page: page.unwrap_or(1),
        per_page,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages() {
        assert_eq!(page_from_query(&q(&[])).unwrap(), None);
        assert_eq!(page_from_query(&q(&[("page", "3")])).unwrap(), None);
        assert_eq!(
            page_from_query(&q(&[("per_page", "10")])).unwrap(),
            Some(Page {
                page: 1,
                per_page: 10
            })
        );
        assert_eq!(
            page_from_query(&q(&[("per_page", "10"), ("page", "2")])).unwrap(),
            Some(Page {
                page: 2,
                per_page: 10
            })
        );
        for bad in [("page", "0"), ("per_page", "-1"), ("per_page", "ten")] {
            assert!(page_from_query(&q(&[bad])).is_err(), "{bad:?}");
        }
    }
}
