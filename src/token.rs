//! Minting tokens: `switchyard token`, the token `dev` prints, and tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, EncodingKey, Header};
use switchyard_protocol::claims::{Claims, Pattern, ScopeClaim, UserId};

#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub user: String,
    pub sub: Vec<String>,
    pub publish: Vec<String>,
    pub ttl: Duration,
}

/// Signs an HS256 token; refuses a user id or pattern the server would refuse.
pub fn mint_hs256(secret: &[u8], req: &TokenRequest) -> anyhow::Result<String> {
    UserId::parse(&req.user).map_err(|e| anyhow::anyhow!("--user {:?}: {e}", req.user))?;
    for p in req.sub.iter().chain(&req.publish) {
        Pattern::parse(p).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: req.user.clone(),
        exp: (now + req.ttl.as_secs().max(1)) as f64,
        nbf: None,
        iat: Some(now as f64),
        aud: None,
        iss: None,
        scope: Some(ScopeClaim {
            sub: Some(req.sub.clone()),
            publish: Some(req.publish.clone()),
        }),
    };
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// Parses `90s`, `15m`, `1h`, `2d` or plain seconds.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 15m, 1h or 2d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("ttl must be greater than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn minted_tokens_carry_scope_and_refuse_bad_input() {
        let req = TokenRequest {
            user: "alice".into(),
            sub: vec!["chat.>".into()],
            publish: vec!["chat.*".into()],
            ttl: Duration::from_secs(60),
        };
        let token = mint_hs256(b"k", &req).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"k"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims.sub, "alice");
        assert_eq!(data.claims.scope.unwrap().publish.unwrap(), ["chat.*"]);
        assert!(mint_hs256(
            b"k",
            &TokenRequest {
                user: "a b".into(),
                ..req.clone()
            }
        )
        .is_err());
        assert!(mint_hs256(
            b"k",
            &TokenRequest {
                sub: vec!["a..b".into()],
                ..req
            }
        )
        .is_err());
    }
}
