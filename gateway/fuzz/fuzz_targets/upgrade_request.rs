//! What an upgrade request carries before anything is trusted: the request target, the
//! query and the token in any of its three places, then the token's verification. Any
//! input must be answered without a panic, and a token is only ever accepted when it
//! verifies.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use switchyard_gateway::auth::extract_token;
use switchyard_gateway::upgrade::{parse_path, percent_decode, query_param};
use switchyard_gateway::Verifier;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Line 1 is the request target; the others are `name: value` headers.
    let mut lines = text.split('\n');
    let target = lines.next().unwrap_or_default();
    let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
    let _ = parse_path(path);
    if let Some(query) = query {
        let _ = query_param(query, "access_token");
        let _ = query_param(query, "resume_token");
        let _ = percent_decode(query);
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.trim()), HeaderValue::try_from(value.trim())) {
            headers.append(name, value);
        }
    }
    if let Some(token) = extract_token(&headers, query) {
        let verifier = Verifier::hs256(b"fuzz secret");
        assert!(verifier.verify(&token, 1e9).is_err(), "a token not signed with the secret verified");
    }
});
