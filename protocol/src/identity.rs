//! The verified identity a gateway hands to a worker with an upgrade.
//!
//! In one process it is passed as a value. Between processes it rides in two headers:
//! `sy-identity` (base64url JSON) and `sy-identity-sig` (base64url HMAC-SHA256 over the
//! first header's value with a secret only gateways and workers hold). The payload holds
//! its issue time, and a worker refuses one older than [`MAX_IDENTITY_AGE_MS`], so a
//! captured hand-off cannot be replayed later.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::claims::{Scope, UserId};

pub const IDENTITY_HEADER: &str = "sy-identity";
pub const IDENTITY_SIG_HEADER: &str = "sy-identity-sig";
/// A signed identity is valid this long after the gateway made it.
pub const MAX_IDENTITY_AGE_MS: u64 = 30_000;

/// Who is connecting, as the gateway verified it, and what the client asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub user: UserId,
    pub scope: Scope,
    /// Token expiry, seconds since the epoch.
    pub exp: f64,
    /// Token issue time, when the token had one (revocation compares it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<f64>,
    /// The connection id of a sticky path `/ws/{worker}/{conn}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_conn: Option<String>,
    /// `resume_token` from the query of a sticky reconnect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// W3C trace context of the upgrade, so the session joins the gateway's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Whether the client offered `switchyard.v1` (and so must get it back).
    #[serde(default)]
    pub subprotocol: bool,
}

/// A token whose signature, times and claims passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub user: UserId,
    pub scope: Scope,
    /// Seconds since the epoch.
    pub exp: f64,
    pub iat: Option<f64>,
}

impl VerifiedToken {
    /// The identity to hand to a worker; the caller fills in what the request asked for.
    pub fn into_identity(self) -> Identity {
        Identity {
            user: self.user,
            scope: self.scope,
            exp: self.exp,
            iat: self.iat,
            resume_conn: None,
            resume_token: None,
            traceparent: None,
            subprotocol: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("identity headers are missing")]
    Missing,
    #[error("identity signature does not verify")]
    BadSignature,
    #[error("identity payload is malformed")]
    Malformed,
    #[error("identity is too old to accept")]
    Expired,
}

#[derive(Serialize, Deserialize)]
struct Signed {
    issued_ms: u64,
    identity: Identity,
}

impl Identity {
    /// Encodes the identity as (payload, signature) header values.
    pub fn sign(&self, secret: &[u8], now_ms: u64) -> (String, String) {
        let signed = Signed {
            issued_ms: now_ms,
            identity: self.clone(),
        };
        // Plain data with string keys: serialization cannot fail.
        let json = serde_json::to_vec(&signed).expect("identity serializes");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, payload.as_bytes()).as_ref());
        (payload, sig)
    }

    /// Verifies and decodes header values made by [`Identity::sign`].
    pub fn verify(
        payload: &str,
        sig: &str,
        secret: &[u8],
        now_ms: u64,
    ) -> Result<Identity, IdentityError> {
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| IdentityError::BadSignature)?;
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        hmac::verify(&key, payload.as_bytes(), &sig).map_err(|_| IdentityError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| IdentityError::Malformed)?;
        let signed: Signed = serde_json::from_slice(&json).map_err(|_| IdentityError::Malformed)?;
        if now_ms.saturating_sub(signed.issued_ms) > MAX_IDENTITY_AGE_MS
            || signed.issued_ms > now_ms + MAX_IDENTITY_AGE_MS
        {
            return Err(IdentityError::Expired);
        }
        Ok(signed.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            user: UserId::parse("alice").unwrap(),
            scope: Scope::default(),
            exp: 2e9,
            iat: Some(1e9),
            resume_conn: Some("c_1".into()),
            resume_token: None,
            traceparent: None,
            subprotocol: true,
        }
    }

    #[test]
    fn signed_identity_round_trips() {
        let (payload, sig) = alice().sign(b"secret", 1_000);
        assert_eq!(
            Identity::verify(&payload, &sig, b"secret", 2_000).unwrap(),
            alice()
        );
    }

    #[test]
    fn forgeries_and_replays_are_refused() {
        let (payload, sig) = alice().sign(b"secret", 1_000);
        assert_eq!(
            Identity::verify(&payload, &sig, b"other", 1_000),
            Err(IdentityError::BadSignature)
        );
        let mut tampered = payload.clone();
        tampered.push('A');
        assert_eq!(
            Identity::verify(&tampered, &sig, b"secret", 1_000),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            Identity::verify(&payload, &sig, b"secret", 1_000 + MAX_IDENTITY_AGE_MS + 1),
            Err(IdentityError::Expired)
        );
        assert_eq!(
            Identity::verify(&payload, "!!", b"secret", 1_000),
            Err(IdentityError::BadSignature)
        );
    }
}
