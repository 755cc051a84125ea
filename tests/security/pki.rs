//! The files of `nats/gen-certs.sh`, made with rcgen: the same names, subjects, SANs and
//! key usages, so that the shipped configs find what they expect. Two CAs: `ca` for
//! NATS (servers and clients) and `handoff-ca` for gateway → worker hand-offs.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// NATS client roles, each a user of `nats/accounts.conf` (`CN=switchyard-<role>`).
pub(crate) const ROLES: [&str; 4] = ["worker", "gateway", "backend", "sys"];

/// A directory of certificates, removed on `Drop`.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn generate() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-pki-")
            .tempdir()
            .expect("temp dir for certificates");
        let nats = ca(dir.path(), "ca", "Switchyard NATS CA");
        leaf(
            dir.path(),
            "server",
            &nats,
            "switchyard-nats",
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            &["localhost", "127.0.0.1", "n1", "n2", "n3"],
        );
        for role in ROLES {
            leaf(
                dir.path(),
                role,
                &nats,
                &format!("switchyard-{role}"),
                &[ExtendedKeyUsagePurpose::ClientAuth],
                &[],
            );
        }
        let handoff = ca(dir.path(), "handoff-ca", "Switchyard hand-off CA");
        leaf(
            dir.path(),
            "handoff-worker",
            &handoff,
            "switchyard-worker",
            &[ExtendedKeyUsagePurpose::ServerAuth],
            &["localhost", "127.0.0.1"],
        );
        leaf(
            dir.path(),
            "handoff-gateway",
            &handoff,
            "switchyard-gateway",
            &[ExtendedKeyUsagePurpose::ClientAuth],
            &[],
        );
        Pki { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<name>.pem`.
    pub(crate) fn cert(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }

    /// `<name>-key.pem`.
    pub(crate) fn key(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}-key.pem"))
    }
}

fn subject(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

fn write(dir: &Path, name: &str, cert_pem: String, key_pem: String) {
    std::fs::write(dir.join(format!("{name}.pem")), cert_pem).expect("write a certificate");
    std::fs::write(dir.join(format!("{name}-key.pem")), key_pem).expect("write a key");
}

fn ca(dir: &Path, name: &str, cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = subject(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key_pem = key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(params, key).expect("a self-signed CA");
    write(dir, name, issuer.pem(), key_pem);
    issuer
}

fn leaf(
    dir: &Path,
    name: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    usages: &[ExtendedKeyUsagePurpose],
    names: &[&str],
) {
    let key = KeyPair::generate().expect("a key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("certificate params");
    params.distinguished_name = subject(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages.to_vec();
    let cert = params
        .signed_by(&key, issuer)
        .expect("a signed certificate");
    write(dir, name, cert.pem(), key.serialize_pem());
}
