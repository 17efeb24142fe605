//! Leaf certificates for the MITM proxy: one rustls `ServerConfig` per host
//! name, signed by the egress CA and cached, so every connection to the
//! same host shares one config (and its TLS session cache: returning
//! clients resume instead of verifying a certificate chain again).
//!
//! All leaves share one ECDSA P-256 key made when the proxy starts (never
//! the CA key: the CA key only signs certificates). The guest-facing TLS
//! prefers AES-128-GCM with SHA-256 over the client's order (as Go's TLS
//! server does): SHA-256 has CPU instructions where SHA-384 often has none,
//! and it is TLS 1.3's mandatory suite.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Authority;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{CipherSuite, ServerConfig};

/// Validity of a leaf certificate.
const LEAF_DAYS: i64 = 365;
/// A cached config is replaced after this long (well inside the validity).
const CACHE_TTL: Duration = Duration::from_secs(LEAF_DAYS as u64 * 86_400 / 2);
/// Leaves start this long ago (clock skew between host and guest).
const NOT_BEFORE_SKEW: time::Duration = time::Duration::minutes(1);
/// The guest-facing order of cipher suites (the rest keep the provider's).
const PREFERRED: &[CipherSuite] = &[
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
];

/// Leaf certificates could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeafError {
    /// rcgen.
    #[error("leaf certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls.
    #[error("leaf TLS config: {0}")]
    Tls(#[from] rustls::Error),
}

struct Cached {
    cfg: Arc<ServerConfig>,
    made: Instant,
}

/// Issues and caches per-host `ServerConfig`s (hudsucker's
/// `CertificateAuthority`).
pub struct LeafAuthority {
    issuer: Issuer<'static, KeyPair>,
    key: KeyPair,
    provider: Arc<CryptoProvider>,
    capacity: usize,
    cache: Mutex<HashMap<String, Cached>>,
    /// Served when a certificate cannot be made for a name: a leaf for a
    /// name no client asks for, so the handshake fails at the client.
    fallback: Arc<ServerConfig>,
}

impl std::fmt::Debug for LeafAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafAuthority")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl LeafAuthority {
    /// An authority signing with `issuer`, caching up to `capacity` names.
    pub fn new(issuer: Issuer<'static, KeyPair>, capacity: usize) -> Result<Self, LeafError> {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|s| {
            PREFERRED
                .iter()
                .position(|p| *p == s.suite())
                .unwrap_or(usize::MAX)
        });
        let key = KeyPair::generate()?;
        let provider = Arc::new(provider);
        let fallback = Arc::new(build(&issuer, &key, &provider, "unknown.invalid")?);
        Ok(LeafAuthority {
            issuer,
            key,
            provider,
            capacity: capacity.max(1),
            cache: Mutex::new(HashMap::new()),
            fallback,
        })
    }

    /// The config for `host`, from the cache or made now.
    pub fn config_for(&self, host: &str) -> Arc<ServerConfig> {
        if let Some(c) = self.lookup(host) {
            return c;
        }
        match build(&self.issuer, &self.key, &self.provider, host) {
            Ok(cfg) => {
                let cfg = Arc::new(cfg);
                self.insert(host, cfg.clone());
                cfg
            }
            Err(e) => {
                tracing::warn!("proxy: no leaf certificate for {host:?}: {e}");
                self.fallback.clone()
            }
        }
    }

    fn lookup(&self, host: &str) -> Option<Arc<ServerConfig>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(host)
            .filter(|c| c.made.elapsed() < CACHE_TTL)
            .map(|c| c.cfg.clone())
    }

    fn insert(&self, host: &str, cfg: Arc<ServerConfig>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.capacity && !cache.contains_key(host) {
            cache.retain(|_, c| c.made.elapsed() < CACHE_TTL);
            if cache.len() >= self.capacity {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, c)| c.made)
                    .map(|(h, _)| h.clone());
                if let Some(h) = oldest {
                    cache.remove(&h);
                }
            }
        }
        cache.insert(
            host.to_string(),
            Cached {
                cfg,
                made: Instant::now(),
            },
        );
    }
}

/// Sign a leaf for `host` with `key` and build its config.
fn build(
    issuer: &Issuer<'static, KeyPair>,
    key: &KeyPair,
    provider: &Arc<CryptoProvider>,
    host: &str,
) -> Result<ServerConfig, LeafError> {
    let mut params = CertificateParams::default();
    let mut serial = [0u8; 16];
    provider
        .secure_random
        .fill(&mut serial)
        .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
    serial[0] &= 0x7f; // positive
    params.serial_number = Some(serial.to_vec().into());
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - NOT_BEFORE_SKEW;
    params.not_after = now + time::Duration::days(LEAF_DAYS);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, host);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(host.try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert: CertificateDer<'static> = params.signed_by(key, issuer)?.into();
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut cfg = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.ignore_client_order = true;
    // One resumption ticket per handshake (rustls sends two by default): a
    // client spends one per new connection, so one replaces it; the second
    // costs both sides a random fill, a cache entry and a record.
    cfg.send_tls13_tickets = 1;
    Ok(cfg)
}

impl hudsucker::certificate_authority::CertificateAuthority for LeafAuthority {
    async fn gen_server_config(&self, authority: &Authority) -> Arc<ServerConfig> {
        self.config_for(authority.host())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(capacity: usize) -> LeafAuthority {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::ca::Ca::load_or_create(dir.path()).unwrap();
        ca.leaf_authority_with(capacity).unwrap()
    }

    #[test]
    fn one_config_per_host_with_aes128_first_and_bounded_cache() {
        let a = authority(2);
        let x1 = a.config_for("a.test");
        let x2 = a.config_for("a.test");
        assert!(Arc::ptr_eq(&x1, &x2), "cached");
        assert!(x1.ignore_client_order);
        assert_eq!(
            x1.crypto_provider().cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(
            x1.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let y = a.config_for("b.test");
        assert!(!Arc::ptr_eq(&x1, &y));
        a.config_for("c.test");
        assert_eq!(a.cache.lock().unwrap().len(), 2, "capacity");
    }

    /// A TLS handshake in memory; returns the negotiated suite.
    fn handshake(
        server: Arc<ServerConfig>,
        ca_pem: &str,
        name: &str,
    ) -> Result<CipherSuite, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut s = rustls::ServerConnection::new(server)?;
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(c.negotiated_cipher_suite().unwrap().suite());
            }
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn leaf_names_the_host_chains_to_the_ca_and_aes128_wins() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::ca::Ca::load_or_create(dir.path()).unwrap();
        let a = ca.leaf_authority_with(4).unwrap();
        let cfg = a.config_for("api.example.test");
        // The ring client offers AES-256 first; the server's order wins.
        assert_eq!(
            handshake(cfg.clone(), &ca.cert_pem, "api.example.test").unwrap(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let err = handshake(cfg, &ca.cert_pem, "other.test").unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
        // Another CA's client does not trust it.
        let other = tempfile::tempdir().unwrap();
        let other = crate::ca::Ca::load_or_create(other.path()).unwrap();
        assert!(handshake(
            a.config_for("api.example.test"),
            &other.cert_pem,
            "api.example.test"
        )
        .is_err());
    }
}
