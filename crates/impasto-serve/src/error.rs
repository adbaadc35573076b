//! The server's errors: [`ServeError`] for starting and serving, and the HTTP API's rejections
//! ([`ApiError`]), each a status code and one line for a person, sent as JSON `{"error": "..."}`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound (in use, not an address of this machine, no permission).
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason (in the message, not `source()`, so a printed chain says
        /// it once).
        error: std::io::Error,
    },
    /// Another operating-system error.
    #[error("error {what}: {error}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The operating system's reason (in the message, not `source()`).
        error: std::io::Error,
    },
}

/// A rejected request: a status and a message shown as is in the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub(crate) fn no_job(id: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("no job {} (it may have been forgotten)", clip(id, 40)))
    }

    /// A multipart stream that broke: too large (the body limit), or malformed.
    pub(crate) fn multipart(e: MultipartError, limit: usize) -> ApiError {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::too_large(format!(
                "the upload is larger than the limit of {} (all images together)",
                mib(limit as u64)
            ));
        }
        ApiError::bad_request(format!("malformed upload: {}", e.body_text()))
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(e: MultipartRejection) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected a multipart/form-data upload ({})", e.body_text()),
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        let status = match &e {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            JsonRejection::BytesRejection(b) => b.status(),
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// `12 MiB`, `512 KiB`.
pub(crate) fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) || bytes >= 10 << 20 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1 << 10))
    }
}

/// `text` without control characters, cut to `max` characters (names from uploads go into messages).
pub(crate) fn clip(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().count() <= max {
        return clean;
    }
    clean.chars().take(max).chain(['…']).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_names_read_well() {
        assert_eq!(mib(32 << 20), "32 MiB");
        assert_eq!(mib(3 << 19), "1.5 MiB");
        assert_eq!(mib(1000), "1 KiB");
        assert_eq!(clip("a\nb", 10), "ab");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
