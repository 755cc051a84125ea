//! How a worker checks the token of a `refresh`. Verification lives with the gateway's
//! key handling; the binary hands the worker a verifier through this trait.

pub use switchyard_protocol::VerifiedToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejected {
    #[error("token is invalid")]
    Invalid,
    #[error("token has expired")]
    Expired,
}

pub trait TokenVerifier: Send + Sync + 'static {
    /// Checks signature, times and claims of a token (not revocation).
    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenRejected>;
}
