//! Key files and the keys derived from them.
//!
//! A key file holds one random 256-bit master key. Three keys are derived from it with BLAKE3's
//! key-derivation mode: the chunk-id key (keyed BLAKE3 of the plaintext, so equal plaintexts do not show
//! across keys), the XChaCha20-Poly1305 encryption key, and the MAC key for manifests and indexes.
//! The key file is never written into the store; the store keeps only its fingerprint.

use std::fs;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::Error;

const CTX_ID: &str = "lifeboat snapstore 2026-12 chunk id";
const CTX_ENC: &str = "lifeboat snapstore 2026-12 chunk encryption";
const CTX_MAC: &str = "lifeboat snapstore 2026-12 manifest mac";
const CTX_FP: &str = "lifeboat snapstore 2026-12 key fingerprint";

/// The on-disk key file (JSON, mode 0600).
#[derive(Serialize, Deserialize)]
struct KeyFileJson {
    version: u32,
    kind: String,
    created_at: String,
    fingerprint: String,
    key: String,
}

/// A loaded encryption key with its derived sub-keys.
#[derive(Clone)]
pub struct CryptKey {
    id_key: [u8; 32],
    mac_key: [u8; 32],
    cipher: XChaCha20Poly1305,
    fingerprint: String,
}

impl std::fmt::Debug for CryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn fingerprint_of(master: &[u8; 32]) -> String {
    let fp = blake3::derive_key(CTX_FP, master);
    fp[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl CryptKey {
    /// Build from a master key.
    pub fn from_master(master: [u8; 32]) -> Self {
        let enc = blake3::derive_key(CTX_ENC, &master);
        Self {
            id_key: blake3::derive_key(CTX_ID, &master),
            mac_key: blake3::derive_key(CTX_MAC, &master),
            cipher: XChaCha20Poly1305::new((&enc).into()),
            fingerprint: fingerprint_of(&master),
        }
    }

    /// Short public fingerprint (`aa:bb:…`, 8 bytes) that identifies the key without revealing it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Keyed chunk id of a plaintext.
    pub fn chunk_id(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.id_key, data).as_bytes()
    }

    /// MAC over `data` (manifests, indexes).
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.mac_key, data).as_bytes()
    }

    /// Encrypt with a random 192-bit nonce; the chunk id is bound as associated data.
    pub fn encrypt(&self, id: &[u8; 32], data: &[u8]) -> Vec<u8> {
        let nonce: [u8; 24] = rand::random();
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: data, aad: id })
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(24 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypt what [`CryptKey::encrypt`] produced; fails on any change or a wrong key.
    pub fn decrypt(&self, id: &[u8; 32], data: &[u8]) -> Result<Vec<u8>, Error> {
        if data.len() < 24 + 16 {
            return Err(Error::Corrupt("encrypted chunk too short".into()));
        }
        let (nonce, ct) = data.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: id })
            .map_err(|_| Error::Corrupt("chunk does not decrypt (damaged, or another key)".into()))
    }
}

/// Constant-time equality of two digests/MACs.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Create a new random key file at `path` (fails if it exists; mode 0600). Returns the loaded key.
/// This is what `lifeboat backup key create` calls. Keep the file away from the store.
pub fn create_key(path: &Path) -> Result<CryptKey, Error> {
    let master: [u8; 32] = rand::random();
    let key = CryptKey::from_master(master);
    let json = KeyFileJson {
        version: 1,
        kind: "lifeboat-snapstore-key".into(),
        created_at: chrono::Utc::now().to_rfc3339(),
        fingerprint: key.fingerprint.clone(),
        key: hex::encode(master),
    };
    let body = serde_json::to_vec_pretty(&json).expect("key file serializes");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| Error::io(format!("create key file {}", path.display()), e))?;
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("write key file {}", path.display()), e))?;
    Ok(key)
}

/// Load a key file written by [`create_key`].
pub fn load_key(path: &Path) -> Result<CryptKey, Error> {
    let body =
        fs::read(path).map_err(|e| Error::io(format!("read key file {}", path.display()), e))?;
    let json: KeyFileJson = serde_json::from_slice(&body).map_err(|e| {
        Error::Key(format!(
            "{} is not a Lifeboat key file: {e}",
            path.display()
        ))
    })?;
    if json.kind != "lifeboat-snapstore-key" || json.version != 1 {
        return Err(Error::Key(format!(
            "{} is not a Lifeboat key file (kind {:?}, version {})",
            path.display(),
            json.kind,
            json.version
        )));
    }
    let raw = hex::decode(&json.key)
        .map_err(|_| Error::Key(format!("{}: key is not hex", path.display())))?;
    let master: [u8; 32] = raw
        .try_into()
        .map_err(|_| Error::Key(format!("{}: key is not 32 bytes", path.display())))?;
    let key = CryptKey::from_master(master);
    if !ct_eq(key.fingerprint.as_bytes(), json.fingerprint.as_bytes()) {
        return Err(Error::Key(format!(
            "{}: fingerprint does not match the key (file damaged)",
            path.display()
        )));
    }
    Ok(key)
}
