//! Token checks (PROTOCOL §1 "Tokens"): where the token is found, which key verifies it,
//! and what its claims grant.
//!
//! Every key is typed by its algorithm, and a token is only tried against keys of the
//! algorithm its header names: an RS256 public key can never serve as an HS256 secret.
//! jsonwebtoken checks the signature only; times, audience, issuer and `sub` are checked
//! here with fractional seconds. Tokens are never logged.

use http::HeaderMap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{DecodingKey, Validation};
use switchyard_broker::Broker;
use switchyard_protocol::claims::{Claims, Scope, UserId};
use switchyard_protocol::VerifiedToken;
use switchyard_protocol::{ErrorCode, AUTH_SUBPROTOCOL_PREFIX};

use crate::config::{read_first_line, AuthConfig, ConfigError, KeyAlgorithm};
use crate::error::Rejection;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token in the request")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("token expired")]
    Expired,
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::MissingToken,
            AuthError::Invalid(_) => ErrorCode::InvalidToken,
            AuthError::Expired => ErrorCode::TokenExpired,
        }
    }
}

impl From<AuthError> for Rejection {
    fn from(e: AuthError) -> Rejection {
        Rejection::client(e.code(), e.to_string())
    }
}

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{key}: {message}")]
    Bad { key: String, message: String },
    #[error("auth: no usable key")]
    NoKey,
}

/// One key able to verify tokens of exactly one algorithm.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: KeyAlgorithm,
    kid: Option<String>,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key material stays out of logs.
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// An HS256 shared secret.
    pub fn hs256(secret: &[u8], kid: Option<String>) -> VerifyingKey {
        VerifyingKey {
            alg: KeyAlgorithm::HS256,
            kid,
            key: DecodingKey::from_secret(secret),
        }
    }

    /// A PEM public key of an asymmetric algorithm.
    pub fn from_pem(
        alg: KeyAlgorithm,
        pem: &[u8],
        kid: Option<String>,
    ) -> Result<VerifyingKey, jsonwebtoken::errors::Error> {
        let key = match alg {
            KeyAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem)?,
            KeyAlgorithm::ES256 => DecodingKey::from_ec_pem(pem)?,
            KeyAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem)?,
            KeyAlgorithm::HS256 => {
                return Err(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat.into())
            }
        };
        Ok(VerifyingKey { alg, kid, key })
    }

    /// A DER public key (SubjectPublicKeyInfo contents as ring takes them: PKCS#1 for
    /// RSA, the uncompressed point for ES256, the raw key for EdDSA).
    pub fn from_der(alg: KeyAlgorithm, der: &[u8], kid: Option<String>) -> Option<VerifyingKey> {
        let key = match alg {
            KeyAlgorithm::RS256 => DecodingKey::from_rsa_der(der),
            KeyAlgorithm::ES256 => DecodingKey::from_ec_der(der),
            KeyAlgorithm::EdDSA => DecodingKey::from_ed_der(der),
            KeyAlgorithm::HS256 => return None,
        };
        Some(VerifyingKey { alg, kid, key })
    }

    /// The keys of a JWKS document. Keys of algorithms Switchyard does not accept are
    /// skipped; a key without `alg` gets the one its type and curve imply.
    pub fn from_jwks(json: &str) -> Result<Vec<VerifyingKey>, String> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            let alg = match &jwk.common.key_algorithm {
                Some(named) => match named.to_string().as_str() {
                    "HS256" => Some(KeyAlgorithm::HS256),
                    "RS256" => Some(KeyAlgorithm::RS256),
                    "ES256" => Some(KeyAlgorithm::ES256),
                    "EdDSA" => Some(KeyAlgorithm::EdDSA),
                    _ => None,
                },
                None => match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Some(KeyAlgorithm::RS256),
                    AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                        Some(KeyAlgorithm::ES256)
                    }
                    AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                        Some(KeyAlgorithm::EdDSA)
                    }
                    AlgorithmParameters::OctetKey(_) => Some(KeyAlgorithm::HS256),
                    _ => None,
                },
            };
            let Some(alg) = alg else {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping JWKS key of an unsupported algorithm");
                continue;
            };
            // The key's parameters must fit its algorithm, or jsonwebtoken refuses it
            // at verification time; refuse it here instead.
            let fits = matches!(
                (alg, &jwk.algorithm),
                (KeyAlgorithm::RS256, AlgorithmParameters::RSA(_))
                    | (KeyAlgorithm::ES256, AlgorithmParameters::EllipticCurve(_))
                    | (KeyAlgorithm::EdDSA, AlgorithmParameters::OctetKeyPair(_))
                    | (KeyAlgorithm::HS256, AlgorithmParameters::OctetKey(_))
            );
            if !fits {
                return Err(format!(
                    "key {:?} says alg {alg} but holds another type of key",
                    jwk.common.key_id
                ));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
            keys.push(VerifyingKey {
                alg,
                kid: jwk.common.key_id.clone(),
                key,
            });
        }
        Ok(keys)
    }

    pub fn alg(&self) -> KeyAlgorithm {
        self.alg
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct VerifierOptions {
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub leeway: std::time::Duration,
    /// Allowed algorithms; `None` allows those of the keys.
    pub algorithms: Option<Vec<KeyAlgorithm>>,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        VerifierOptions {
            audience: None,
            issuer: None,
            leeway: switchyard_protocol::limits::DEFAULT_LEEWAY,
            algorithms: None,
        }
    }
}

/// Verifies tokens against a set of typed keys. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<VerifyingKey>,
    allowed: Vec<KeyAlgorithm>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: f64,
}

impl Verifier {
    pub fn new(keys: Vec<VerifyingKey>, options: VerifierOptions) -> Result<Verifier, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKey);
        }
        let mut allowed = match options.algorithms {
            Some(list) => list,
            None => keys.iter().map(|k| k.alg).collect(),
        };
        allowed.sort_by_key(|a| *a as u8);
        allowed.dedup();
        Ok(Verifier {
            keys,
            allowed,
            audience: options.audience,
            issuer: options.issuer,
            leeway: options.leeway.as_secs_f64(),
        })
    }

    /// The `dev` verifier: one HS256 secret, no audience or issuer.
    pub fn hs256(secret: &[u8]) -> Verifier {
        Verifier {
            keys: vec![VerifyingKey::hs256(secret, None)],
            allowed: vec![KeyAlgorithm::HS256],
            audience: None,
            issuer: None,
            leeway: switchyard_protocol::limits::DEFAULT_LEEWAY.as_secs_f64(),
        }
    }

    /// Loads every key file the auth config names.
    pub fn from_config(config: &AuthConfig) -> Result<Verifier, KeyError> {
        let bad = |key: String, message: String| KeyError::Bad { key, message };
        let mut keys = Vec::new();
        if let Some(path) = &config.hs256_secret_file {
            let secret = read_first_line(path)?;
            if secret.is_empty() {
                return Err(bad(
                    "auth.hs256_secret_file".into(),
                    "the first line is empty".into(),
                ));
            }
            keys.push(VerifyingKey::hs256(secret.as_bytes(), None));
        }
        for (i, entry) in config.public_keys.iter().enumerate() {
            let key = format!("auth.public_keys[{i}].pem_file");
            let pem =
                std::fs::read(&entry.pem_file).map_err(|e| bad(key.clone(), e.to_string()))?;
            let verifying = VerifyingKey::from_pem(entry.alg, &pem, entry.kid.clone())
                .map_err(|e| bad(key, format!("not a {} public key: {e}", entry.alg)))?;
            keys.push(verifying);
        }
        if let Some(path) = &config.jwks_file {
            let key = "auth.jwks_file".to_string();
            let json =
                std::fs::read_to_string(path).map_err(|e| bad(key.clone(), e.to_string()))?;
            keys.extend(VerifyingKey::from_jwks(&json).map_err(|e| bad(key, e))?);
        }
        Verifier::new(
            keys,
            VerifierOptions {
                audience: config.audience.clone(),
                issuer: config.issuer.clone(),
                leeway: config.leeway,
                algorithms: config.algorithms.clone(),
            },
        )
    }

    /// Checks a token's signature, times (`now` in seconds since the epoch), audience,
    /// issuer, `sub` and scope. Revocation needs the broker: [`Verifier::check_revoked`].
    pub fn verify(&self, token: &str, now: f64) -> Result<VerifiedToken, AuthError> {
        // `alg: none` and unknown algorithms fail to parse here.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token"))?;
        let alg = KeyAlgorithm::from_jwt(header.alg)
            .filter(|a| self.allowed.contains(a))
            .ok_or(AuthError::Invalid("algorithm not allowed"))?;
        let candidates = self.candidates(alg, header.kid.as_deref());
        if candidates.is_empty() {
            return Err(AuthError::Invalid("no key for this algorithm and kid"));
        }
        let mut validation = Validation::new(alg.jwt());
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();

        let mut outcome = Err(AuthError::Invalid("bad signature"));
        for key in candidates {
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    match e.kind() {
                        ErrorKind::InvalidSignature => {}
                        ErrorKind::Json(_) => {
                            outcome = Err(AuthError::Invalid("malformed claims"));
                            break;
                        }
                        _ => {
                            outcome = Err(AuthError::Invalid("malformed token"));
                            break;
                        }
                    }
                }
            }
        }
        let claims = outcome?;
        self.check_claims(claims, now)
    }

    fn candidates(&self, alg: KeyAlgorithm, kid: Option<&str>) -> Vec<&VerifyingKey> {
        let of_alg = self.keys.iter().filter(|k| k.alg == alg);
        if let Some(kid) = kid {
            let named: Vec<_> = of_alg
                .clone()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if !named.is_empty() {
                return named;
            }
            // A kid no key carries may still be verified by a key that names none.
            return of_alg.filter(|k| k.kid.is_none()).collect();
        }
        of_alg.collect()
    }

    fn check_claims(&self, claims: Claims, now: f64) -> Result<VerifiedToken, AuthError> {
        if !claims.exp.is_finite() {
            return Err(AuthError::Invalid("exp is not a number"));
        }
        if now > claims.exp + self.leeway {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.nbf {
            if !nbf.is_finite() || nbf > now + self.leeway {
                return Err(AuthError::Invalid("token not valid yet (nbf)"));
            }
        }
        if matches!(claims.iat, Some(iat) if !iat.is_finite()) {
            return Err(AuthError::Invalid("iat is not a number"));
        }
        if let Some(wanted) = &self.audience {
            if !claims.aud.as_ref().is_some_and(|aud| aud.contains(wanted)) {
                return Err(AuthError::Invalid("audience mismatch"));
            }
        }
        if let Some(wanted) = &self.issuer {
            if claims.iss.as_deref() != Some(wanted.as_str()) {
                return Err(AuthError::Invalid("issuer mismatch"));
            }
        }
        let user = UserId::parse(&claims.sub).map_err(|_| AuthError::Invalid("bad sub"))?;
        let scope = Scope::from_claim(claims.scope.as_ref())
            .map_err(|_| AuthError::Invalid("bad scope"))?;
        Ok(VerifiedToken {
            user,
            scope,
            exp: claims.exp,
            iat: claims.iat,
        })
    }

    /// Refuses a token the mesh revoked (`POST /api/v1/disconnect` with `until`): one
    /// issued before the cut-off, or without `iat`, while the cut-off is in the future.
    /// A broker that cannot answer does not block connections: the worker checks again.
    pub async fn check_revoked(
        &self,
        token: &VerifiedToken,
        broker: &dyn Broker,
        now: f64,
    ) -> Result<(), AuthError> {
        match broker.revoked_before(&token.user).await {
            Ok(Some(until)) => {
                let until = until as f64;
                if now < until && token.iat.is_none_or(|iat| iat < until) {
                    return Err(AuthError::Invalid("token revoked"));
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "revocation check skipped: broker unavailable");
                Ok(())
            }
        }
    }
}

/// The token of an upgrade request, first found wins: `Authorization: Bearer`, the
/// `switchyard.auth.<jwt>` subprotocol, the `access_token` query parameter.
pub fn extract_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    for value in headers.get_all(http::header::AUTHORIZATION) {
        if let Some(token) = value.to_str().ok().and_then(bearer) {
            return Some(token.to_string());
        }
    }
    for value in headers.get_all(http::header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(list) = value.to_str() else { continue };
        if let Some(token) = list
            .split(',')
            .map(str::trim)
            .find_map(|p| p.strip_prefix(AUTH_SUBPROTOCOL_PREFIX))
        {
            return Some(token.to_string());
        }
    }
    query.and_then(|q| crate::upgrade::query_param(q, "access_token"))
}

/// The credential of `Authorization: Bearer <credential>`.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests;
