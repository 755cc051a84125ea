//! The files of `switchyard dev --state-dir DIR` (PROTOCOL §7): made on first run,
//! reused after. `ca.pem` signs the server certificate (`localhost`, `127.0.0.1`,
//! `::1`); `jwt.secret` and `api.key` are one line each. Keys are written mode 0600.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngExt;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

pub const CA_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const CERT_FILE: &str = "server.pem";
pub const KEY_FILE: &str = "server.key";
pub const JWT_SECRET_FILE: &str = "jwt.secret";
pub const API_KEY_FILE: &str = "api.key";
pub const IDENTITY_SECRET_FILE: &str = "identity.secret";

/// What a dev server and its tools share.
#[derive(Debug, Clone)]
pub struct DevState {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub jwt_secret: String,
    pub api_key: String,
    pub identity_secret: String,
}

impl DevState {
    pub fn load_or_create(dir: &Path) -> anyhow::Result<DevState> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create state dir {}", dir.display()))?;
        let files = [CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE];
        if !files.iter().all(|f| dir.join(f).is_file()) {
            let (ca, ca_key, cert, key) = make_certificates()?;
            write(dir, CA_FILE, &ca, false)?;
            write(dir, CA_KEY_FILE, &ca_key, true)?;
            write(dir, CERT_FILE, &cert, false)?;
            write(dir, KEY_FILE, &key, true)?;
        }
        for name in [JWT_SECRET_FILE, API_KEY_FILE, IDENTITY_SECRET_FILE] {
            if !dir.join(name).is_file() {
                write(dir, name, &format!("{}\n", random_secret()), true)?;
            }
        }
        Ok(DevState {
            dir: dir.to_path_buf(),
            ca_pem: read(dir, CA_FILE)?,
            cert_pem: read(dir, CERT_FILE)?,
            key_pem: read(dir, KEY_FILE)?,
            jwt_secret: read_line(&dir.join(JWT_SECRET_FILE))?,
            api_key: read_line(&dir.join(API_KEY_FILE))?,
            identity_secret: read_line(&dir.join(IDENTITY_SECRET_FILE))?,
        })
    }
}

/// The first line of a secret file, without its newline.
pub fn read_line(path: &Path) -> anyhow::Result<String> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = text.lines().next().unwrap_or_default().to_string();
    anyhow::ensure!(!line.is_empty(), "{} is empty", path.display());
    Ok(line)
}

fn read(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(dir: &Path, name: &str, contents: &str, private: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = private;
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A dev CA and a server certificate it signs, as (ca, ca key, cert, key) PEM.
fn make_certificates() -> anyhow::Result<(String, String, String, String)> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Switchyard dev CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok((ca.pem(), ca_key_pem, cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("sy-dev-state-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = DevState::load_or_create(&dir).unwrap();
        let again = DevState::load_or_create(&dir).unwrap();
        assert_eq!(first.ca_pem, again.ca_pem);
        assert_eq!(first.jwt_secret, again.jwt_secret);
        assert_eq!(first.api_key, again.api_key);
        assert!(first.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let secret_file = fs::read_to_string(dir.join(JWT_SECRET_FILE)).unwrap();
        assert_eq!(secret_file, format!("{}\n", first.jwt_secret));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
