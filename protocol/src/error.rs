//! Error codes of PROTOCOL §1 (HTTP, before the upgrade) and §2 (`error` frames).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // Before the upgrade and in the HTTP API.
    BadRequest,
    MissingToken,
    InvalidToken,
    TokenExpired,
    RateLimited,
    NoWorker,
    NotFound,
    // In `error` frames (and the HTTP API where they apply).
    BadFrame,
    BadRoom,
    Forbidden,
    AlreadySubscribed,
    NotSubscribed,
    TooLarge,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MissingToken => "missing_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NoWorker => "no_worker",
            ErrorCode::NotFound => "not_found",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::BadRoom => "bad_room",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AlreadySubscribed => "already_subscribed",
            ErrorCode::NotSubscribed => "not_subscribed",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// Whether the client caused it. Only these count against a connection's error
    /// budget: `unavailable` and `internal` are the server's, and a client that retries
    /// through an outage is doing what it was told (PROTOCOL §2).
    pub fn is_client_fault(self) -> bool {
        !matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::NoWorker
        )
    }

    /// The HTTP status this code is answered with outside a WebSocket.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest | ErrorCode::BadFrame | ErrorCode::BadRoom => 400,
            ErrorCode::MissingToken | ErrorCode::InvalidToken | ErrorCode::TokenExpired => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadySubscribed | ErrorCode::NotSubscribed => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::NoWorker | ErrorCode::Unavailable => 503,
        }
    }
}

/// The JSON body of every HTTP error: `{"error":"<code>","message":"<human text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpError {
    pub error: ErrorCode,
    pub message: String,
}

impl HttpError {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        HttpError {
            error,
            message: message.into(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of a code and a string always serializes.
        serde_json::to_vec(self).expect("HttpError serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_match_as_str() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::MissingToken,
            ErrorCode::InvalidToken,
            ErrorCode::TokenExpired,
            ErrorCode::RateLimited,
            ErrorCode::NoWorker,
            ErrorCode::NotFound,
            ErrorCode::BadFrame,
            ErrorCode::BadRoom,
            ErrorCode::Forbidden,
            ErrorCode::AlreadySubscribed,
            ErrorCode::NotSubscribed,
            ErrorCode::TooLarge,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn http_error_body() {
        let body = HttpError::new(ErrorCode::TokenExpired, "token expired").to_json();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"error":"token_expired","message":"token expired"}"#
        );
        assert_eq!(ErrorCode::NoWorker.http_status(), 503);
        assert_eq!(ErrorCode::RateLimited.http_status(), 429);
    }
}
