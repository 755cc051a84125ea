use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::json;
use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
use switchyard_broker::Control;

use super::*;

const NOW: f64 = 1_763_800_000.0;
const SECRET: &[u8] = b"dev-secret";
const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/data/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/data/rsa_public.pem");

fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims(sub: &str, exp: f64) -> serde_json::Value {
    json!({"sub": sub, "exp": exp})
}

fn verifier_with(options: VerifierOptions) -> Verifier {
    Verifier::new(vec![VerifyingKey::hs256(SECRET, None)], options).unwrap()
}

#[test]
fn hs256_token_verifies_into_an_identity() {
    let token = hs256(
        &json!({"sub": "alice", "exp": NOW + 60.0, "iat": NOW, "scope": {"sub": ["chat.*"]}}),
        SECRET,
    );
    let verified = Verifier::hs256(SECRET).verify(&token, NOW).unwrap();
    assert_eq!(verified.user.as_str(), "alice");
    assert_eq!(verified.exp, NOW + 60.0);
    assert_eq!(verified.iat, Some(NOW));
    assert_eq!(verified.scope.sub.len(), 1);
    let identity = verified.into_identity();
    assert!(!identity.subprotocol);
}

#[test]
fn integer_exp_is_accepted() {
    let token = hs256(&json!({"sub": "alice", "exp": 1_763_800_060u64}), SECRET);
    assert!(Verifier::hs256(SECRET).verify(&token, NOW).is_ok());
}

#[test]
fn wrong_signature_is_invalid() {
    let token = hs256(&claims("alice", NOW + 60.0), b"other-secret");
    assert_eq!(
        Verifier::hs256(SECRET).verify(&token, NOW),
        Err(AuthError::Invalid("bad signature"))
    );
}

#[test]
fn alg_none_is_never_accepted() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims("alice", NOW + 60.0).to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        let err = Verifier::hs256(SECRET).verify(&token, NOW).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidToken);
    }
}

#[test]
fn garbage_is_invalid_and_missing_exp_is_invalid() {
    assert_eq!(
        Verifier::hs256(SECRET)
            .verify("not.a.jwt", NOW)
            .unwrap_err()
            .code(),
        ErrorCode::InvalidToken
    );
    let token = hs256(&json!({"sub": "alice"}), SECRET);
    assert_eq!(
        Verifier::hs256(SECRET).verify(&token, NOW),
        Err(AuthError::Invalid("malformed claims"))
    );
}

#[test]
fn expiry_honours_the_leeway() {
    let v = Verifier::hs256(SECRET);
    let token = hs256(&claims("alice", NOW - 10.0), SECRET);
    assert_eq!(v.verify(&token, NOW), Err(AuthError::Expired));
    let token = hs256(&claims("alice", NOW - 3.0), SECRET);
    assert!(v.verify(&token, NOW).is_ok());
}

#[test]
fn fractional_exp_is_compared_exactly() {
    let v = Verifier::hs256(SECRET);
    let token = hs256(&claims("alice", NOW + 0.5), SECRET);
    assert!(v.verify(&token, NOW + 5.4).is_ok());
    assert_eq!(v.verify(&token, NOW + 5.6), Err(AuthError::Expired));
}

#[test]
fn nbf_in_the_future_is_invalid() {
    let v = Verifier::hs256(SECRET);
    let token = hs256(
        &json!({"sub": "alice", "exp": NOW + 600.0, "nbf": NOW + 60.0}),
        SECRET,
    );
    assert_eq!(
        v.verify(&token, NOW),
        Err(AuthError::Invalid("token not valid yet (nbf)"))
    );
    let token = hs256(
        &json!({"sub": "alice", "exp": NOW + 600.0, "nbf": NOW + 4.0}),
        SECRET,
    );
    assert!(v.verify(&token, NOW).is_ok());
}

#[test]
fn bad_sub_and_bad_scope_are_invalid() {
    let v = Verifier::hs256(SECRET);
    for sub in ["a b", "", "$server", &"a".repeat(65)] {
        let token = hs256(&claims(sub, NOW + 60.0), SECRET);
        assert_eq!(v.verify(&token, NOW), Err(AuthError::Invalid("bad sub")));
    }
    let token = hs256(
        &json!({"sub": "alice", "exp": NOW + 60.0, "scope": {"pub": ["a..b"]}}),
        SECRET,
    );
    assert_eq!(v.verify(&token, NOW), Err(AuthError::Invalid("bad scope")));
}

#[test]
fn audience_and_issuer_are_checked_when_configured() {
    let v = verifier_with(VerifierOptions {
        audience: Some("switchyard".into()),
        issuer: Some("https://auth.example".into()),
        ..VerifierOptions::default()
    });
    let good = json!({"sub": "alice", "exp": NOW + 60.0,
        "aud": ["other", "switchyard"], "iss": "https://auth.example"});
    assert!(v.verify(&hs256(&good, SECRET), NOW).is_ok());
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("other");
    assert_eq!(
        v.verify(&hs256(&wrong_aud, SECRET), NOW),
        Err(AuthError::Invalid("audience mismatch"))
    );
    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        v.verify(&hs256(&no_aud, SECRET), NOW),
        Err(AuthError::Invalid("audience mismatch"))
    );
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    assert_eq!(
        v.verify(&hs256(&wrong_iss, SECRET), NOW),
        Err(AuthError::Invalid("issuer mismatch"))
    );
    // Unconfigured: aud and iss are not looked at.
    assert!(Verifier::hs256(SECRET)
        .verify(&hs256(&wrong_iss, SECRET), NOW)
        .is_ok());
}

#[test]
fn rs256_token_verifies_with_its_public_key() {
    let key = VerifyingKey::from_pem(KeyAlgorithm::RS256, RSA_PUBLIC, None).unwrap();
    let v = Verifier::new(vec![key], VerifierOptions::default()).unwrap();
    let token = encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &claims("alice", NOW + 60.0),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap();
    assert!(v.verify(&token, NOW).is_ok());
}

#[test]
fn rs256_public_key_is_never_an_hs256_secret() {
    let forged = hs256(&claims("alice", NOW + 60.0), RSA_PUBLIC);
    let rsa = || VerifyingKey::from_pem(KeyAlgorithm::RS256, RSA_PUBLIC, None).unwrap();
    // Only the RSA key configured: HS256 is not allowed at all.
    let v = Verifier::new(vec![rsa()], VerifierOptions::default()).unwrap();
    assert_eq!(
        v.verify(&forged, NOW),
        Err(AuthError::Invalid("algorithm not allowed"))
    );
    // HS256 allowed by name but no HS256 key: still no key to try.
    let v = Verifier::new(
        vec![rsa()],
        VerifierOptions {
            algorithms: Some(vec![KeyAlgorithm::RS256, KeyAlgorithm::HS256]),
            ..VerifierOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        v.verify(&forged, NOW).unwrap_err().code(),
        ErrorCode::InvalidToken
    );
    // Both kinds configured: the forged token meets only the real HS256 secret.
    let v = Verifier::new(
        vec![rsa(), VerifyingKey::hs256(SECRET, None)],
        VerifierOptions::default(),
    )
    .unwrap();
    assert_eq!(
        v.verify(&forged, NOW),
        Err(AuthError::Invalid("bad signature"))
    );
}

#[test]
fn es256_token_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let key = VerifyingKey::from_der(KeyAlgorithm::ES256, pair.public_key().as_ref(), None);
    let v = Verifier::new(vec![key.unwrap()], VerifierOptions::default()).unwrap();
    let token = encode(
        &Header::new(jsonwebtoken::Algorithm::ES256),
        &claims("alice", NOW + 60.0),
        &EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .unwrap();
    assert!(v.verify(&token, NOW).is_ok());
    // The same token re-labelled HS256 goes nowhere.
    let forged = hs256(&claims("alice", NOW + 60.0), pair.public_key().as_ref());
    assert_eq!(
        v.verify(&forged, NOW).unwrap_err().code(),
        ErrorCode::InvalidToken
    );
}

#[test]
fn eddsa_token_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let key = VerifyingKey::from_der(KeyAlgorithm::EdDSA, pair.public_key().as_ref(), None);
    let v = Verifier::new(vec![key.unwrap()], VerifierOptions::default()).unwrap();
    let token = encode(
        &Header::new(jsonwebtoken::Algorithm::EdDSA),
        &claims("alice", NOW + 60.0),
        &EncodingKey::from_ed_der(pkcs8.as_ref()),
    )
    .unwrap();
    assert!(v.verify(&token, NOW).is_ok());
}

#[test]
fn kid_chooses_the_key() {
    let v = Verifier::new(
        vec![
            VerifyingKey::hs256(b"secret-a", Some("a".into())),
            VerifyingKey::hs256(b"secret-b", Some("b".into())),
        ],
        VerifierOptions::default(),
    )
    .unwrap();
    let mut header = Header {
        kid: Some("b".into()),
        ..Header::default()
    };
    let token = encode(
        &header,
        &claims("alice", NOW + 60.0),
        &EncodingKey::from_secret(b"secret-b"),
    )
    .unwrap();
    assert!(v.verify(&token, NOW).is_ok());
    header.kid = Some("a".into());
    let token = encode(
        &header,
        &claims("alice", NOW + 60.0),
        &EncodingKey::from_secret(b"secret-b"),
    )
    .unwrap();
    assert_eq!(
        v.verify(&token, NOW),
        Err(AuthError::Invalid("bad signature"))
    );
    header.kid = Some("c".into());
    let token = encode(
        &header,
        &claims("alice", NOW + 60.0),
        &EncodingKey::from_secret(b"secret-b"),
    )
    .unwrap();
    assert_eq!(
        v.verify(&token, NOW).unwrap_err().code(),
        ErrorCode::InvalidToken
    );
}

#[test]
fn jwks_keys_are_typed_and_chosen_by_kid() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed1"},
        {"kty": "oct", "k": URL_SAFE_NO_PAD.encode(SECRET), "kid": "hs1", "alg": "HS256"},
    ]});
    let keys = VerifyingKey::from_jwks(&jwks.to_string()).unwrap();
    assert_eq!(
        keys.iter().map(VerifyingKey::alg).collect::<Vec<_>>(),
        vec![KeyAlgorithm::EdDSA, KeyAlgorithm::HS256]
    );
    let v = Verifier::new(keys, VerifierOptions::default()).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("ed1".into());
    let token = encode(
        &header,
        &claims("alice", NOW + 60.0),
        &EncodingKey::from_ed_der(pkcs8.as_ref()),
    )
    .unwrap();
    assert!(v.verify(&token, NOW).is_ok());
    assert!(v
        .verify(&hs256(&claims("bob", NOW + 60.0), SECRET), NOW)
        .is_ok());
}

#[test]
fn tokens_are_found_in_order() {
    let mut headers = HeaderMap::new();
    assert_eq!(
        extract_token(&headers, Some("access_token=q")),
        Some("q".into())
    );
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        "switchyard.v1, switchyard.auth.p".parse().unwrap(),
    );
    assert_eq!(
        extract_token(&headers, Some("access_token=q")),
        Some("p".into())
    );
    headers.insert(http::header::AUTHORIZATION, "Bearer h".parse().unwrap());
    assert_eq!(
        extract_token(&headers, Some("access_token=q")),
        Some("h".into())
    );
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, "Basic xyz".parse().unwrap());
    assert_eq!(extract_token(&headers, Some("a=1")), None);
}

#[tokio::test]
async fn revoked_tokens_are_refused() {
    let broker = MemoryBroker::new(MemoryConfig::default());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let v = Verifier::hs256(SECRET);
    let alice = UserId::parse("alice").unwrap();
    broker
        .control(Control::Disconnect {
            user: alice,
            until: Some(now as u64 + 3600),
        })
        .await
        .unwrap();
    let old = hs256(
        &json!({"sub": "alice", "exp": now + 60.0, "iat": now - 10.0}),
        SECRET,
    );
    let no_iat = hs256(&claims("alice", now + 60.0), SECRET);
    let fresh = hs256(
        &json!({"sub": "alice", "exp": now + 7200.0, "iat": now + 3601.0}),
        SECRET,
    );
    let bob = hs256(&claims("bob", now + 60.0), SECRET);
    for (token, revoked) in [(old, true), (no_iat, true), (fresh, false), (bob, false)] {
        let verified = v.verify(&token, now).unwrap();
        let outcome = v.check_revoked(&verified, &broker, now).await;
        assert_eq!(outcome.is_err(), revoked);
    }
}
