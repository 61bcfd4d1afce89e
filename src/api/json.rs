//! JSON in and out, with the quirks of Go's `encoding/json` that Coder's clients rely on.
//!
//! Input is as lenient as Go's decoder: unknown fields are ignored and `null` means "unset" (we drop null
//! object members before deserializing, so `#[serde(default)]` fields take their zero value). Output is
//! compact, HTML-escaped like Go's encoder, and ends with a newline.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::{ApiError, Validation};

/// Largest JSON request body we read; Coder's bodies are small, agents' log batches the largest.
pub const MAX_JSON_BODY: usize = 4 << 20;

/// A request body type that checks its own semantic rules after decoding (Coder's `validate:` tags).
pub trait Validate {
    fn validate(&self) -> Vec<Validation> {
        Vec::new()
    }
}

/// Extractor for a JSON body decoded as Go's decoder would, then validated.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body(), MAX_JSON_BODY).await?;
        let value = decode::<T>(&bytes)?;
        let validations = value.validate();
        if !validations.is_empty() {
            return Err(ApiError::validation_failed(validations));
        }
        Ok(Json(value))
    }
}

/// Reads a whole body, answering 413 when it is larger than `limit`.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            let too_large = std::error::Error::source(&err)
                .map(|s| s.is::<http_body_util::LengthLimitError>())
                .unwrap_or(false);
            if too_large {
                Err(too_large_error(limit))
            } else {
                Err(ApiError::bad_request("Failed to read request body.").detail(err.to_string()))
            }
        }
    }
}

pub fn too_large_error(limit: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body is too large.")
        .detail(format!("The request body must be at most {limit} bytes."))
}

/// Decodes JSON bytes into `T` with Go-like leniency and field-naming errors.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let invalid = || ApiError::bad_request("Request body must be valid JSON.");
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid().detail("EOF"));
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid().detail(e.to_string()))?;
    strip_nulls(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        let detail = e.inner().to_string();
        let err = invalid().detail(if field.is_empty() {
            detail.clone()
        } else {
            format!("{field}: {detail}")
        });
        // A missing field is reported by serde on the parent path; name the field itself.
        let field = missing_field_name(&detail)
            .map(|name| {
                if field.is_empty() {
                    name.to_string()
                } else {
                    format!("{field}.{name}")
                }
            })
            .unwrap_or(field);
        err.validation(field, detail)
    })
}

fn missing_field_name(detail: &str) -> Option<&str> {
    detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// Go's decoder leaves a field untouched when its JSON value is `null`.
fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Serializes like Go's `json.Encoder` with HTML escaping, plus the trailing newline.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    let mut out = String::with_capacity(text.len() + 1);
    for ch in text.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    Ok(out.into_bytes())
}

/// A JSON response body with Coder's content type.
pub struct JsonBody<T>(pub T);

impl<T: Serialize> IntoResponse for JsonBody<T> {
    fn into_response(self) -> Response {
        match encode(&self.0) {
            Ok(bytes) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=utf-8"),
                )],
                bytes,
            )
                .into_response(),
            Err(err) => {
                tracing::error!(target: "coderd", error = %err, "encode response");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}

/// `201 Created` with a JSON body.
pub fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, JsonBody(value)).into_response()
}

pub fn ok<T: Serialize>(value: T) -> Response {
    JsonBody(value).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Req {
        email: String,
        count: i64,
        inner: Inner,
    }
    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Inner {
        flag: bool,
    }

    #[test]
    fn null_means_unset_and_unknown_fields_are_ignored() {
        let r: Req =
            decode(br#"{"email": null, "count": 3, "other": [1], "inner": null}"#).unwrap();
        assert_eq!(r.email, "");
        assert_eq!(r.count, 3);
        assert!(!r.inner.flag);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = decode::<Req>(br#"{"inner": {"flag": "yes"}}"#).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.body.message, "Request body must be valid JSON.");
        assert_eq!(err.body.validations[0].field, "inner.flag");
    }

    #[test]
    fn syntax_error_and_empty_body() {
        let err = decode::<Req>(b"{\"email\": ").unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let err = decode::<Req>(b"").unwrap_err();
        assert_eq!(err.body.detail, "EOF");
    }

    #[test]
    fn encoder_escapes_html_like_go() {
        let out = encode(&serde_json::json!({"m": "<a&b>"})).unwrap();
        assert_eq!(out, b"{\"m\":\"\\u003ca\\u0026b\\u003e\"}\n");
    }
}
