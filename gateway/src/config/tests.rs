use super::*;

const MINIMAL: &str = r#"
    listen = "127.0.0.1:8443"
    plain = true
    [auth]
    hs256_secret_file = "/dev/null"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let config = GatewayConfig::from_toml_str(MINIMAL).unwrap();
    assert_eq!(config.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(config.registry, DEFAULT_USE_REGISTRY);
    let off = MINIMAL.replace("plain = true", "plain = true\nregistry = false");
    assert!(!GatewayConfig::from_toml_str(&off).unwrap().registry);
    assert_eq!(config.auth.leeway, Duration::from_secs(5));
    assert_eq!(
        config.limits.max_upgrades_per_sec_per_ip,
        DEFAULT_MAX_UPGRADES_PER_SEC_PER_IP
    );
    // /dev/null is not a regular file.
    assert_eq!(
        config.validate().unwrap_err().keys(),
        vec!["auth.hs256_secret_file"]
    );
}

#[test]
fn unknown_keys_are_refused() {
    let text = format!("{MINIMAL}\nsecret = \"x\"");
    assert!(matches!(
        GatewayConfig::from_toml_str(&text),
        Err(ConfigError::Toml(_))
    ));
    let text = MINIMAL.replace("plain = true", "plain = true\nhandshake_timeout = \"10\"");
    assert!(GatewayConfig::from_toml_str(&text).is_err());
}

#[test]
fn alg_none_cannot_be_configured() {
    let text = format!("{MINIMAL}\nalgorithms = [\"none\"]");
    assert!(GatewayConfig::from_toml_str(&text).is_err());
}

#[test]
fn validate_names_every_problem() {
    let text = r#"
        listen = "127.0.0.1:8443"
        [tls]
        cert = "/nonexistent/cert.pem"
        key = "/nonexistent/key.pem"
        [auth]
        algorithms = ["RS256"]
        [[workers]]
        id = "w 1"
        address = "nohost"
        [[workers]]
        id = "w2"
        address = "10.0.0.2:9000"
        [limits]
        max_header_bytes = 100
    "#;
    let err = GatewayConfig::from_toml_str(text)
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(
        err.keys(),
        vec![
            "tls.cert",
            "tls.key",
            "auth",
            "auth.algorithms",
            "workers[0].id",
            "workers[0].address",
            "identity_secret_file",
            "limits.max_header_bytes",
        ]
    );
}

#[test]
fn tls_or_explicit_plain() {
    let text = MINIMAL.replace("plain = true", "");
    let err = GatewayConfig::from_toml_str(&text)
        .unwrap()
        .validate()
        .unwrap_err();
    assert!(err.keys().contains(&"tls"));
}

#[test]
fn durations_need_a_unit() {
    let with = |value: &str| format!("handshake_timeout = {value}\n{MINIMAL}");
    let parsed =
        |value: &str| GatewayConfig::from_toml_str(&with(value)).map(|c| c.handshake_timeout);
    assert_eq!(parsed("\"500ms\"").unwrap(), Duration::from_millis(500));
    assert_eq!(parsed("\"2m\"").unwrap(), Duration::from_secs(120));
    assert!(parsed("10").is_err());
    assert!(parsed("\"10\"").is_err());
    assert!(parsed("\"s\"").is_err());
}

#[test]
fn internal_tls_names_each_missing_file() {
    let text = format!(
        "{MINIMAL}\n[internal_tls]\nca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/gw.pem\"\nkey = \"/nonexistent/gw.key\""
    )
    .replace("\"/dev/null\"", "\"Cargo.toml\"");
    let err = GatewayConfig::from_toml_str(&text)
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(
        err.keys(),
        vec!["internal_tls.ca", "internal_tls.cert", "internal_tls.key"]
    );
    let partial = format!("{MINIMAL}\n[internal_tls]\nca = \"/x\"");
    assert!(
        GatewayConfig::from_toml_str(&partial).is_err(),
        "ca, cert and key are all required"
    );
}
