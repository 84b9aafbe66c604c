//! TLS of the manager–agent channel.
//!
//! - The manager keeps a CA in `<data-dir>/ca/` (directory 0700, `ca.key`
//!   0600, `ca.crt`). At each start it issues itself a short-lived client
//!   certificate signed by that CA ([`ManagerCa::client_identity`]); the key
//!   lives only in memory.
//! - An agent makes its own key and self-signed server certificate on first
//!   start (`<agent-data-dir>/tls/`, key 0600; the key never leaves the host)
//!   and prints its SHA-256 fingerprint, also written to `agent.sha256`.
//! - The manager pins that fingerprint: it talks to an agent only when the
//!   agent's certificate is exactly the pinned one ([`client_config`]).
//! - The agent requires a client certificate chained to the manager's CA
//!   ([`server_config`], given `ca.crt`) and, inside TLS, the bearer token.
//!
//! So each side authenticates the other, nothing (SetPassword's hash, tokens)
//! crosses in clear, and neither private key is ever copied.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// A TLS set-up error, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

fn err(what: impl std::fmt::Display) -> TlsError {
    TlsError(what.to_string())
}

type Result<T> = std::result::Result<T, TlsError>;

/// The crypto provider every TLS config here uses (ring).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `sha256:<hex>` of a certificate's DER bytes: the agent's pin.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// `sha256:<hex>` of a parsed pin.
pub fn fingerprint_of_digest(d: &[u8; 32]) -> String {
    format!("sha256:{}", hex::encode(d))
}

/// Parses a pin: `sha256:` followed by 64 hex digits (colons allowed, any case,
/// as `openssl x509 -fingerprint -sha256` prints them).
pub fn parse_pin(s: &str) -> Result<[u8; 32]> {
    let body = s
        .trim()
        .strip_prefix("sha256:")
        .or_else(|| s.trim().strip_prefix("SHA256:"))
        .ok_or_else(|| err(format!("pin {s:?}: expected sha256:<64 hex digits>")))?;
    let hexd: String = body.chars().filter(|c| *c != ':').collect();
    let v =
        hex::decode(hexd.to_ascii_lowercase()).map_err(|_| err(format!("pin {s:?}: not hex")))?;
    v.try_into()
        .map_err(|_| err(format!("pin {s:?}: expected 32 bytes (SHA-256)")))
}

/// Creates `dir` 0700 (and its parents).
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| err(format!("chmod 0700 {}: {e}", dir.display())))
}

/// Writes `data` to `path` with `mode`, atomically (temp file + rename), so a
/// crash never leaves a half-written key.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| err(format!("writing {}: {e}", tmp.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| err(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| err(format!("writing {}: {e}", path.display())))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| err(format!("reading {}: {e}", path.display())))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

fn random_serial(params: &mut CertificateParams) {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[0] &= 0x7f; // positive
    params.serial_number = Some(SerialNumber::from_slice(&b));
}

/// The CA's subject: fixed, so the CA can be rebuilt from its key alone.
fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Lifeboat");
    dn.push(DnType::CommonName, "Lifeboat manager CA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// The manager's certificate authority in `<data-dir>/ca/`.
pub struct ManagerCa {
    dir: PathBuf,
    key: KeyPair,
    /// The CA certificate rebuilt from the key (same subject and key as
    /// `ca.crt`, so what it signs chains to `ca.crt`).
    issuer: rcgen::Certificate,
}

impl ManagerCa {
    /// Opens the CA in `dir`, creating it (0700 dir, 0600 key, 10 years) on first use.
    pub fn open_or_create(dir: &Path) -> Result<ManagerCa> {
        private_dir(dir)?;
        let key_path = dir.join("ca.key");
        let crt_path = dir.join("ca.crt");
        let key = if key_path.exists() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(format!("chmod 0600 {}: {e}", key_path.display())))?;
            KeyPair::from_pem(&read(&key_path)?)
                .map_err(|e| err(format!("{}: {e}", key_path.display())))?
        } else {
            let key = KeyPair::generate().map_err(err)?;
            write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            let _ = std::fs::remove_file(&crt_path);
            key
        };
        if !crt_path.exists() {
            let mut p = ca_params();
            validity(&mut p, 3650);
            random_serial(&mut p);
            let crt = p.self_signed(&key).map_err(err)?;
            write_file(&crt_path, crt.pem().as_bytes(), 0o644)?;
        }
        let issuer = ca_params().self_signed(&key).map_err(err)?;
        Ok(ManagerCa {
            dir: dir.to_path_buf(),
            key,
            issuer,
        })
    }

    /// `ca.crt`: what agents are given (`lifeboat agent --manager-ca`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A fresh client certificate (30 days) for the manager, signed by the CA.
    pub fn client_identity(&self) -> Result<Identity> {
        let mut p = CertificateParams::new(vec!["lifeboat-manager".to_string()]).map_err(err)?;
        p.distinguished_name
            .push(DnType::CommonName, "lifeboat-manager");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        validity(&mut p, 30);
        random_serial(&mut p);
        let key = KeyPair::generate().map_err(err)?;
        let crt = p.signed_by(&key, &self.issuer, &self.key).map_err(err)?;
        Ok(Identity {
            cert: crt.der().clone(),
            key: key.serialize_der(),
        })
    }
}

/// A certificate and its private key (PKCS#8 DER).
pub struct Identity {
    /// The certificate.
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Identity {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }

    /// `sha256:<hex>` of the certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// The agent's identity in `dir` (`agent.key` 0600, `agent.crt`,
    /// `agent.sha256`), made on first use: a self-signed server certificate
    /// for `names` (DNS names or IP addresses), valid 10 years.
    pub fn agent_open_or_create(dir: &Path, names: &[String]) -> Result<Identity> {
        private_dir(dir)?;
        let key_path = dir.join("agent.key");
        let crt_path = dir.join("agent.crt");
        if key_path.exists() && crt_path.exists() {
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| err(format!("{}: {e}", key_path.display())))?;
            let PrivateKeyDer::Pkcs8(key) = key else {
                return Err(err(format!(
                    "{}: expected a PKCS#8 key",
                    key_path.display()
                )));
            };
            let cert = CertificateDer::from_pem_file(&crt_path)
                .map_err(|e| err(format!("{}: {e}", crt_path.display())))?;
            let id = Identity {
                cert,
                key: key.secret_pkcs8_der().to_vec(),
            };
            write_file(
                &dir.join("agent.sha256"),
                id.fingerprint().as_bytes(),
                0o644,
            )?;
            return Ok(id);
        }
        let mut p = CertificateParams::default();
        p.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        for n in names {
            p.subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.clone().try_into().map_err(err)?),
                });
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut p, 3650);
        random_serial(&mut p);
        let key = KeyPair::generate().map_err(err)?;
        let crt = p.self_signed(&key).map_err(err)?;
        write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&crt_path, crt.pem().as_bytes(), 0o644)?;
        let id = Identity {
            cert: crt.der().clone(),
            key: key.serialize_der(),
        };
        write_file(
            &dir.join("agent.sha256"),
            id.fingerprint().as_bytes(),
            0o644,
        )?;
        Ok(id)
    }
}

/// The agent's TLS: its own certificate, and client certificates required
/// and chained to the manager's CA (`ca_pem`, the manager's `ca.crt`).
pub fn server_config(id: &Identity, ca_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots
            .add(c.map_err(|e| err(format!("manager CA: {e}")))?)
            .map_err(|e| err(format!("manager CA: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(err("manager CA: no certificate in the file"));
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| err(format!("manager CA: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![id.cert.clone()], id.key())
        .map_err(|e| err(format!("agent certificate: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The manager's TLS to one agent: the agent's certificate must be the
/// pinned one; the manager shows its CA-signed client certificate.
pub fn client_config(pin: [u8; 32], client: &Identity) -> Result<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinVerifier {
            pin,
            provider: provider(),
        }))
        .with_client_auth_cert(vec![client.cert.clone()], client.key())
        .map_err(|e| err(format!("manager client certificate: {e}")))?;
    // HTTP/1.1: the console is an HTTP upgrade.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts exactly the pinned end-entity certificate (SHA-256 of its DER,
/// compared in constant time) and checks that the peer holds its key.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        use subtle::ConstantTimeEq;
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if bool::from(got.ct_eq(&self.pin)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "agent certificate {} does not match the pinned sha256:{}",
                fingerprint(end_entity),
                hex::encode(self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` completes. A
/// handshake that fails (plain HTTP, no or a wrong client certificate) or
/// takes over 10 s closes the connection before any request is read.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => r?,
            _ = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, "agent TLS handshake refused: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "agent TLS handshake timed out");
                        return;
                    }
                };
            let svc = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, "agent connection: {e}");
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// An agent serving `app` over TLS on 127.0.0.1, a manager CA, and the
    /// pinned client config that reaches it.
    pub struct Fixture {
        pub url: String,
        pub client: rustls::ClientConfig,
        pub ca: ManagerCa,
        pub agent: Identity,
        pub dir: tempfile::TempDir,
    }

    pub async fn serve_app(app: axum::Router) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = ManagerCa::open_or_create(&dir.path().join("ca")).unwrap();
        let agent =
            Identity::agent_open_or_create(&dir.path().join("tls"), &["127.0.0.1".into()]).unwrap();
        let ca_pem = std::fs::read(ca.cert_path()).unwrap();
        let cfg = server_config(&agent, &ca_pem).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, cfg, app, std::future::pending()));
        let pin = parse_pin(&agent.fingerprint()).unwrap();
        let client = client_config(pin, &ca.client_identity().unwrap()).unwrap();
        Fixture {
            url: format!("https://{addr}"),
            client,
            ca,
            agent,
            dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::serve_app;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn app() -> axum::Router {
        axum::Router::new().route("/v1/health", axum::routing::get(|| async { "ok" }))
    }

    async fn get(cfg: rustls::ClientConfig, url: &str) -> std::result::Result<String, String> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(cfg)
            .build()
            .unwrap();
        match http.get(format!("{url}/v1/health")).send().await {
            Ok(r) => Ok(r.text().await.unwrap()),
            Err(e) => Err(crate::client::chain(&e)),
        }
    }

    #[test]
    fn pins_parse() {
        let fp = fingerprint(b"x");
        assert_eq!(
            parse_pin(&fp).unwrap().to_vec(),
            Sha256::digest(b"x").to_vec()
        );
        let colons: String = hex::encode_upper(Sha256::digest(b"x"))
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            parse_pin(&format!("SHA256:{colons}")).unwrap(),
            parse_pin(&fp).unwrap()
        );
        assert!(parse_pin("abcd").is_err());
        assert!(parse_pin("sha256:abcd").is_err());
        assert!(parse_pin("sha256:zz").is_err());
    }

    #[test]
    fn ca_and_agent_files_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let ca = ManagerCa::open_or_create(&ca_dir).unwrap();
        assert_eq!(mode(&ca_dir), 0o700);
        assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
        let crt = std::fs::read(ca.cert_path()).unwrap();
        drop(ca);
        let again = ManagerCa::open_or_create(&ca_dir).unwrap();
        assert_eq!(std::fs::read(again.cert_path()).unwrap(), crt, "CA kept");
        let tls = dir.path().join("tls");
        let a =
            Identity::agent_open_or_create(&tls, &["host2".into(), "127.0.0.2".into()]).unwrap();
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join("agent.key")), 0o600);
        let b = Identity::agent_open_or_create(&tls, &["other".into()]).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint(), "agent certificate kept");
        assert_eq!(
            std::fs::read_to_string(tls.join("agent.sha256")).unwrap(),
            a.fingerprint()
        );
    }

    #[tokio::test]
    async fn pinned_mutual_tls_works() {
        let f = serve_app(app()).await;
        assert_eq!(get(f.client.clone(), &f.url).await.unwrap(), "ok");
        // A CA reopened from its files (a manager restart) still signs
        // client certificates the agent accepts.
        let ca = ManagerCa::open_or_create(&f.dir.path().join("ca")).unwrap();
        let pin = parse_pin(&f.agent.fingerprint()).unwrap();
        let cfg = client_config(pin, &ca.client_identity().unwrap()).unwrap();
        assert_eq!(get(cfg, &f.url).await.unwrap(), "ok");
        let _ = &f.ca;
    }

    #[tokio::test]
    async fn plain_http_no_or_foreign_client_certificate_are_refused() {
        let f = serve_app(app()).await;
        // Plain HTTP to the agent's port gets no HTTP answer.
        let plain = f.url.replacen("https://", "http://", 1);
        let r = get(f.client.clone(), &plain).await;
        assert!(r.is_err(), "plain HTTP answered: {r:?}");
        // Nor does a raw request on the socket.
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(plain.trim_start_matches("http://"))
                .await
                .unwrap();
            s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            assert!(
                !buf.starts_with(b"HTTP/"),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
        }
        // TLS without a client certificate.
        let pin = parse_pin(&f.agent.fingerprint()).unwrap();
        let anon = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pin,
                provider: provider(),
            }))
            .with_no_client_auth();
        assert!(get(anon, &f.url).await.is_err(), "no client certificate");
        // A client certificate from another CA (another manager).
        let other = tempfile::tempdir().unwrap();
        let other_ca = ManagerCa::open_or_create(other.path()).unwrap();
        let foreign = client_config(pin, &other_ca.client_identity().unwrap()).unwrap();
        assert!(
            get(foreign, &f.url).await.is_err(),
            "foreign client certificate"
        );
    }

    #[tokio::test]
    async fn manager_refuses_an_agent_whose_certificate_is_not_the_pin() {
        let f = serve_app(app()).await;
        // Another agent identity: same CA client cert, wrong pin.
        let other = tempfile::tempdir().unwrap();
        let impostor = Identity::agent_open_or_create(other.path(), &["x".into()]).unwrap();
        let wrong = parse_pin(&impostor.fingerprint()).unwrap();
        let cfg = client_config(wrong, &f.ca.client_identity().unwrap()).unwrap();
        let e = get(cfg, &f.url).await.unwrap_err();
        assert!(e.contains("does not match the pinned"), "{e}");
    }
}
