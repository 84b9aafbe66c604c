//! Workflow secrets: the admin passwords of create, rebuild, evacuate,
//! changePassword and rescue.
//!
//! A secret never enters a workflow's params, its events or any API
//! response. It is sealed (XChaCha20-Poly1305, bound to its workflow id and
//! name) with a key kept in `<data-dir>/secret-key` (mode 0600), written to
//! the store's `workflow_secrets` table in the same transaction as its
//! workflow (so a resumed workflow still has it), read only by the step that
//! applies it, and deleted once applied or when the workflow ends. The
//! database therefore never holds a plaintext password, and holds none at
//! all for a finished workflow.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use lifeboat_store::SealedSecret;
use rand::RngCore;

use crate::{ComputeError, Engine};

/// Name of the admin password secret.
pub(crate) const ADMIN_PASS: &str = "admin_pass";

/// An admin password on its way to a workflow (never serialised).
pub(crate) struct AdminPass(pub String);

impl std::fmt::Debug for AdminPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminPass(***)")
    }
}

fn internal(e: impl std::fmt::Display) -> ComputeError {
    ComputeError::Internal(format!("secret store: {e}"))
}

impl Engine {
    fn vault(&self) -> Result<XChaCha20Poly1305, ComputeError> {
        let mut slot = self.inner.vault_key.lock().unwrap();
        if let Some(k) = slot.as_ref() {
            return Ok(XChaCha20Poly1305::new(k.into()));
        }
        let path = self.inner.cfg.data_dir.join("secret-key");
        let key: [u8; 32] = match std::fs::read_to_string(&path) {
            Ok(hexed) => hex::decode(hexed.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| internal(format!("{} is not a 32-byte hex key", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut k);
                std::fs::create_dir_all(&self.inner.cfg.data_dir).map_err(internal)?;
                crate::write_private(&path, hex::encode(k).as_bytes()).map_err(internal)?;
                k
            }
            Err(e) => return Err(internal(format!("{}: {e}", path.display()))),
        };
        *slot = Some(key);
        Ok(XChaCha20Poly1305::new((&key).into()))
    }

    /// Seals `value` as secret `name` of workflow `workflow_id`.
    pub(crate) fn seal_secret(
        &self,
        workflow_id: &str,
        name: &str,
        value: &str,
    ) -> Result<SealedSecret, ComputeError> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = format!("{workflow_id}/{name}");
        let ct = self
            .vault()?
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(internal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(SealedSecret {
            name: name.to_string(),
            sealed: hex::encode(out),
        })
    }

    /// The secret `name` of a workflow, if it still has it.
    pub(crate) async fn workflow_secret(
        &self,
        workflow_id: &str,
        name: &str,
    ) -> Result<Option<String>, ComputeError> {
        let Some(sealed) = self.inner.store.workflow_secret(workflow_id, name).await? else {
            return Ok(None);
        };
        let raw = hex::decode(sealed).map_err(internal)?;
        if raw.len() < 24 {
            return Err(internal("sealed secret too short"));
        }
        let aad = format!("{workflow_id}/{name}");
        let pt = self
            .vault()?
            .decrypt(
                XNonce::from_slice(&raw[..24]),
                Payload {
                    msg: &raw[24..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| internal("a sealed secret does not open with this data dir's key"))?;
        String::from_utf8(pt).map(Some).map_err(internal)
    }

    /// Deletes every secret of a workflow (best effort: a leftover is
    /// removed at the next start).
    pub(crate) async fn forget_secrets(&self, workflow_id: &str) {
        if let Err(e) = self.inner.store.delete_workflow_secrets(workflow_id).await {
            tracing::warn!(workflow = %workflow_id, "cannot delete workflow secrets: {e}");
        }
    }
}
