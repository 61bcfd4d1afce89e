//! The one HTTP error type and its JSON envelope.
//!
//! Policy: every failure a handler returns becomes Coder's `Response` body
//! (`{"message", "detail"?, "validations"?}`). Domain modules return their own `thiserror` enums and convert
//! into [`ApiError`] here or at the call site; the status code is decided in one place. Internal details
//! (SQL errors, I/O) are logged, and only a generic message reaches the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Coder's `codersdk.ValidationError`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Validation {
    pub field: String,
    pub detail: String,
}

impl Validation {
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }

    /// The detail go-playground's validator produces for a missing required value.
    pub fn required(field: impl Into<String>) -> Self {
        Self::new(
            field,
            r#"Validation failed for tag "required" with value: """#,
        )
    }
}

/// Coder's `codersdk.Response`: the body of every error and of simple acknowledgements.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
pub struct MessageResponse {
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validations: Vec<Validation>,
}

impl MessageResponse {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: MessageResponse,
}

pub type ApiResult<T> = Result<T, ApiError>;

pub const NOT_FOUND_MESSAGE: &str = "Resource not found or you do not have access to this resource";
pub const SIGNED_OUT_MESSAGE: &str =
    "You are signed out or your session has expired. Please sign in again to continue.";

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: MessageResponse::new(message),
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.body.detail = detail.into();
        self
    }

    /// Replaces the message (where Coder's 401 carries a specific message, not the generic one).
    pub fn body_message(mut self, message: &str) -> Self {
        self.body.message = message.to_string();
        self
    }

    pub fn validations(mut self, validations: Vec<Validation>) -> Self {
        self.body.validations = validations;
        self
    }

    pub fn validation(self, field: impl Into<String>, detail: impl Into<String>) -> Self {
        self.validations(vec![Validation::new(field, detail)])
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Coder answers reads the caller may not see with the same 404 as a missing resource.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, NOT_FOUND_MESSAGE)
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden.").detail(
            "You don't have permission to view this content. If you believe this is a mistake, please contact your administrator or try signing in with different credentials.",
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, SIGNED_OUT_MESSAGE).detail(detail)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// A unique-constraint violation on a name answers Coder's 409 with a validation on `name`; any other
    /// database error keeps its usual mapping.
    pub fn name_conflict(err: sqlx::Error, message: String) -> Self {
        if crate::db::unique_violation(&err).is_some() {
            Self::conflict(message)
                .validation("name", "This value is already in use and should be unique.")
        } else {
            err.into()
        }
    }

    pub fn validation_failed(validations: Vec<Validation>) -> Self {
        Self::bad_request("Validation failed.").validations(validations)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(target: "coderd", error = %detail, "internal server error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An internal server error occurred.",
        )
    }

    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(target: "coderd", error = %detail, "database unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable. Please try again.",
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Route not found.")
    }

    pub fn invalid_uuid(param: &str, value: &str) -> Self {
        Self::bad_request(format!("Invalid UUID {value:?}.")).detail(format!(
            "{param}: invalid UUID length or format: {}",
            value.len()
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, super::json::JsonBody(&self.body)).into_response()
    }
}

/// Database errors: connection trouble is a 503 (retryable), everything else a 500.
impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            Self::unavailable(err)
        } else {
            Self::internal(err)
        }
    }
}
