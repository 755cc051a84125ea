//! Errors of the gateway, tagged by who caused them (pingora `ErrorSource`), and the one
//! function, [`Rejection::into_response`], that maps a refusal to its HTTP answer and log
//! level.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use switchyard_protocol::error::HttpError;
use switchyard_protocol::ErrorCode;

use crate::config::ConfigError;
use crate::tls::TlsError;

/// Who caused a failure: it decides the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something we refuse: `debug!`.
    Client,
    /// A worker or the broker failed us: `warn!`.
    Upstream,
    /// Our own bug or resource exhaustion: `error!`.
    Internal,
}

/// A request answered with an HTTP error (PROTOCOL §1 and §6).
#[derive(Debug, Clone)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub source: ErrorSource,
    pub retry_after: Option<Duration>,
}

impl Rejection {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            source: ErrorSource::Client,
            retry_after: None,
        }
    }

    pub fn upstream(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            source: ErrorSource::Upstream,
            retry_after: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Rejection {
        Rejection {
            code: ErrorCode::Internal,
            message: message.into(),
            source: ErrorSource::Internal,
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, after: Duration) -> Rejection {
        self.retry_after = Some(after);
        self
    }

    /// Logs the refusal at the level its source deserves and builds the answer.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let code = self.code.as_str();
        match self.source {
            ErrorSource::Client => {
                tracing::debug!(error.code = code, message = %self.message, "refused")
            }
            ErrorSource::Upstream => {
                tracing::warn!(error.code = code, message = %self.message, "upstream failed")
            }
            ErrorSource::Internal => {
                tracing::error!(error.code = code, message = %self.message, "internal error")
            }
        }
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = HttpError::new(self.code, self.message).to_json();
        let mut response = json_response(status, body);
        if let Some(after) = self.retry_after {
            let secs = after.as_secs().max(1);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON answer with its content type.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Why the gateway could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("auth keys: {0}")]
    Keys(#[from] crate::auth::KeyError),
    #[error("listener failed: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_maps_code_to_status_and_retry_after() {
        let response = Rejection::upstream(ErrorCode::NoWorker, "none")
            .retry_after(Duration::from_millis(200))
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let response = Rejection::client(ErrorCode::TokenExpired, "expired").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}
