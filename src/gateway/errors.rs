//! OpenAI-style error answers: `{"error": {"message", "type", "param", "code"}}`,
//! which the official clients turn into their typed exceptions.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Why the gateway answered a request itself. Messages never hold a key, a
/// token or a body.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "Incorrect or missing API key: send Authorization: Bearer <key> with a key from the gateway's client_keys_file."
    )]
    Unauthorized,
    #[error("Request body larger than {0} bytes (gateway.max_request_bytes).")]
    TooLarge(u64),
    #[error("Could not read the request body.")]
    UnreadableBody,
    #[error("The request body is not a JSON object: {0}")]
    BadJson(String),
    #[error("{0}")]
    BadField(&'static str),
    #[error("The request body did not arrive within {0} s.")]
    BodyTimeout(u64),
    #[error("`model` is required: it names a route of the gateway.")]
    MissingModel,
    #[error("The route {0:?} does not exist; GET /v1/models lists the routes.")]
    UnknownRoute(String),
    #[error("The route {route:?} has no endpoint that serves {operation}.")]
    Unsupported {
        route: String,
        operation: &'static str,
    },
    #[error(
        "Unknown path; the gateway serves POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models and feature extraction at POST /routes/{{route}} (or POST / with `model`)."
    )]
    UnknownPath,
}

impl GatewayError {
    fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UnknownRoute(_) | GatewayError::UnknownPath => StatusCode::NOT_FOUND,
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthorized => "invalid_api_key",
            GatewayError::TooLarge(_) => "request_too_large",
            GatewayError::UnreadableBody | GatewayError::BadJson(_) => "invalid_json",
            GatewayError::BadField(_) => "invalid_request",
            GatewayError::BodyTimeout(_) => "request_timeout",
            GatewayError::MissingModel => "missing_model",
            GatewayError::UnknownRoute(_) => "model_not_found",
            GatewayError::Unsupported { .. } => "unsupported_operation",
            GatewayError::UnknownPath => "unknown_url",
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let kind = match self {
            GatewayError::Unauthorized => "authentication_error",
            _ => "invalid_request_error",
        };
        error_response(self.status(), &self.to_string(), kind, self.code())
    }
}

/// An OpenAI-style error body with this status.
pub fn error_response(status: StatusCode, message: &str, kind: &str, code: &str) -> Response {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// A route name as echoed in an error: bounded, printable.
pub fn shown(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(128).collect()
}
