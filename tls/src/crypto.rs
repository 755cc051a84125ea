//! The crypto every TLS config of Switchyard uses: ring, TLS 1.3 suites in the order
//! browsers offer them, and session tickets that let a returning client skip the
//! certificate.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, ServerConfig};

/// ring's provider with `TLS13_AES_128_GCM_SHA256` as the first suite, as browsers
/// offer it. A server takes the client's order, so this matters on the client side (the
/// gateway's hand-offs, the bench): rustls' own order puts AES-256-GCM-SHA384 first,
/// and SHA-384 has no x86 instructions where SHA-256 has them (SHA-NI).
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Makes `config` issue stateless session tickets, encrypted with a key that changes
/// every 6 hours (a ticket is good for 12), so any client that holds one resumes, however
/// many connections came since. rustls' default keeps the last 256 sessions in memory, which a server with
/// thousands of clients evicts long before they return. A resumed TLS 1.3 handshake
/// still runs a fresh key exchange (rustls allows only `psk_dhe_ke`), so the traffic
/// keeps forward secrecy; it skips the certificate and its signature.
pub fn issue_session_tickets(config: &mut ServerConfig) -> Result<(), rustls::Error> {
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_128_gcm_comes_first_and_no_suite_is_lost() {
        let ours = provider();
        let theirs = rustls::crypto::ring::default_provider();
        assert_eq!(
            ours.cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(ours.cipher_suites.len(), theirs.cipher_suites.len());
        for suite in &theirs.cipher_suites {
            assert!(ours
                .cipher_suites
                .iter()
                .any(|s| s.suite() == suite.suite()));
        }
    }
}
