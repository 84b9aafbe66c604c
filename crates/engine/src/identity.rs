//! Identity: the admin bootstrap, users, projects, roles, password
//! checks, bearer tokens and AWS-style access keys.

use std::path::{Path, PathBuf};

use chrono::Duration as ChronoDuration;
use lifeboat_core::{ids, now, AccessKey, Actor, Project, Role, RoleAssignment, Time, Token, User};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ComputeError, Engine, Reason, Resource};

/// What the first start writes to `<data-dir>/admin-credentials.json` (0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminCredentials {
    /// User name.
    pub username: String,
    /// Generated password.
    pub password: String,
    /// Project name.
    pub project: String,
    /// Project id.
    pub project_id: String,
    /// Access key id for the AWS fronts.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who.
    pub actor: Actor,
    /// The bearer token (shown once).
    pub token: String,
    /// Issued.
    pub issued_at: Time,
    /// Expiry.
    pub expires_at: Time,
}

/// PBKDF2-HMAC-SHA256 iterations for new hashes (OWASP's 2023 advice).
/// Older hashes with fewer rounds still verify and are upgraded on login.
pub const PBKDF2_ROUNDS: u32 = 600_000;

/// How long a token lives.
const TOKEN_LIFETIME_HOURS: i64 = 12;

fn random_string(n: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Hashes a password as `pbkdf2-sha256$<rounds>$<salt hex>$<hash hex>`.
pub fn hash_password(password: &str) -> String {
    let salt: [u8; 16] = rand::rngs::OsRng.gen();
    let out = lifeboat_passwords::pbkdf2_sha256(password.as_bytes(), &salt, PBKDF2_ROUNDS);
    format!(
        "pbkdf2-sha256${PBKDF2_ROUNDS}${}${}",
        hex::encode(salt),
        hex::encode(out)
    )
}

/// The iteration count of a stored hash (None when it is not ours).
pub fn hash_rounds(stored: &str) -> Option<u32> {
    let mut it = stored.split('$');
    (it.next() == Some("pbkdf2-sha256"))
        .then(|| it.next()?.parse().ok())
        .flatten()
}

/// A hash of nothing anybody knows, checked when a user name is unknown
/// so that the answer takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_string(32, ids::ALNUM)))
}

/// Checks a password against [`hash_password`]'s output (constant-time
/// comparison of the derived key).
pub fn verify_password(password: &str, stored: &str) -> bool {
    use subtle::ConstantTimeEq;
    let parts: Vec<&str> = stored.split('$').collect();
    let [alg, rounds, salt, hash] = parts.as_slice() else {
        return false;
    };
    let (Ok(rounds), Ok(salt), Ok(hash)) =
        (rounds.parse::<u32>(), hex::decode(salt), hex::decode(hash))
    else {
        return false;
    };
    if *alg != "pbkdf2-sha256" || hash.len() != 32 || rounds == 0 {
        return false;
    }
    let out = lifeboat_passwords::pbkdf2_sha256(password.as_bytes(), &salt, rounds);
    out.ct_eq(hash.as_slice()).into()
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// How long a validated token is answered from memory at most (writes made
/// through this process's store end it at once; this bounds writes made by
/// another process on the same database).
pub(crate) const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

/// Tokens kept at most in the cache (it is emptied when full).
const TOKEN_CACHE_MAX: usize = 10_000;

/// A validated token's actor, as of an identity generation.
#[derive(Clone)]
pub(crate) struct TokenCacheEntry {
    actor: Actor,
    issued_at: Time,
    expires_at: Time,
    generation: u64,
    at: std::time::Instant,
}

/// Validated tokens by token hash ([`Engine::validate_token`]).
#[derive(Default)]
pub(crate) struct TokenCache(std::sync::Mutex<std::collections::HashMap<String, TokenCacheEntry>>);

impl TokenCache {
    /// The entry of `key` if it is of `generation` and younger than the TTL.
    fn lookup(&self, key: &str, generation: u64) -> Option<TokenCacheEntry> {
        let map = self.0.lock().unwrap();
        map.get(key)
            .filter(|c| c.generation == generation && c.at.elapsed() < TOKEN_CACHE_TTL)
            .cloned()
    }

    fn keep(&self, key: String, e: TokenCacheEntry) {
        let mut map = self.0.lock().unwrap();
        if map.len() >= TOKEN_CACHE_MAX {
            map.clear();
        }
        map.insert(key, e);
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

impl Engine {
    /// On first start creates the `admin` project and user with a random
    /// password and an access key pair, writes them to
    /// `<data-dir>/admin-credentials.json` (mode 0600) and returns its path.
    /// Returns None when already bootstrapped.
    pub async fn bootstrap_identity(&self) -> Result<Option<PathBuf>, ComputeError> {
        if self.inner.store.setting("bootstrapped").await?.is_some() {
            return Ok(None);
        }
        let password = random_string(24, ids::ALNUM);
        let project = self.create_project("admin", "Administrators").await?;
        let user = self
            .create_user("admin", &password, &project.id, Role::Admin)
            .await?;
        let key = self.create_access_key(&user.id, &project.id).await?;
        let creds = AdminCredentials {
            username: user.name,
            password,
            project: project.name,
            project_id: project.id,
            access_key_id: key.access_key_id,
            secret_access_key: key.secret_access_key,
        };
        std::fs::create_dir_all(&self.inner.cfg.data_dir)
            .map_err(|e| ComputeError::Internal(format!("data dir: {e}")))?;
        let path = self.inner.cfg.data_dir.join("admin-credentials.json");
        write_private(
            &path,
            &serde_json::to_vec_pretty(&creds).expect("serialisable"),
        )
        .map_err(|e| ComputeError::Internal(format!("{}: {e}", path.display())))?;
        self.inner.store.set_setting("bootstrapped", "1").await?;
        Ok(Some(path))
    }

    /// Creates a project.
    pub async fn create_project(
        &self,
        name: &str,
        description: &str,
    ) -> Result<Project, ComputeError> {
        if name.trim().is_empty() || name.chars().count() > 64 {
            return Err(ComputeError::BadRequest(
                "a project name takes 1 to 64 characters, not all blank".into(),
            ));
        }
        let p = Project {
            id: ids::prefixed("", 32, ids::HEX),
            name: name.into(),
            description: description.into(),
            enabled: true,
        };
        self.inner.store.insert(&p).await.map_err(|e| match e {
            lifeboat_store::StoreError::Duplicate(_) => ComputeError::Rejected(Reason::NameTaken {
                kind: Resource::Project,
                name: name.into(),
            }),
            e => e.into(),
        })?;
        Ok(p)
    }

    /// A project by id or name.
    pub async fn project(&self, key: &str) -> Result<Project, ComputeError> {
        if let Some(p) = self.inner.store.get::<Project>(key).await? {
            return Ok(p);
        }
        self.inner
            .store
            .find_by_name::<Project>("", key)
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Project,
                id: key.into(),
            })
    }

    /// Every project.
    pub async fn projects(&self) -> Result<Vec<Project>, ComputeError> {
        Ok(self.inner.store.list().await?)
    }

    /// Creates a user with a role on a project.
    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        project_id: &str,
        role: Role,
    ) -> Result<User, ComputeError> {
        if name.trim().is_empty() || name.chars().count() > 255 {
            return Err(ComputeError::BadRequest(
                "a user name takes 1 to 255 characters, not all blank".into(),
            ));
        }
        if password.len() < 8 {
            return Err(ComputeError::BadRequest(
                "password must have at least 8 characters".into(),
            ));
        }
        let pw = password.to_string();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .map_err(|e| ComputeError::Internal(format!("password hash: {e}")))?;
        let u = User {
            id: ids::prefixed("", 32, ids::HEX),
            name: name.into(),
            password_hash,
            default_project_id: Some(project_id.into()),
            enabled: true,
        };
        self.inner.store.insert(&u).await.map_err(|e| match e {
            lifeboat_store::StoreError::Duplicate(_) => ComputeError::Rejected(Reason::NameTaken {
                kind: Resource::User,
                name: name.into(),
            }),
            e => e.into(),
        })?;
        self.assign_role(&u.id, project_id, role).await?;
        Ok(u)
    }

    /// A user by id or name.
    pub async fn user(&self, key: &str) -> Result<User, ComputeError> {
        if let Some(u) = self.inner.store.get::<User>(key).await? {
            return Ok(u);
        }
        self.inner
            .store
            .find_by_name::<User>("", key)
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::User,
                id: key.into(),
            })
    }

    /// Every user.
    pub async fn users(&self) -> Result<Vec<User>, ComputeError> {
        Ok(self.inner.store.list().await?)
    }

    /// Grants a role on a project.
    pub async fn assign_role(
        &self,
        user_id: &str,
        project_id: &str,
        role: Role,
    ) -> Result<(), ComputeError> {
        self.inner
            .store
            .put(&RoleAssignment {
                user_id: user_id.into(),
                project_id: project_id.into(),
                role: role.as_str().into(),
            })
            .await?;
        Ok(())
    }

    /// Creates an access key pair for a user in a project.
    pub async fn create_access_key(
        &self,
        user_id: &str,
        project_id: &str,
    ) -> Result<AccessKey, ComputeError> {
        let k = AccessKey {
            access_key_id: format!(
                "AKIA{}",
                random_string(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
            ),
            secret_access_key: random_string(40, ids::ALNUM),
            user_id: user_id.into(),
            project_id: project_id.into(),
            created_at: now(),
        };
        self.inner.store.insert(&k).await?;
        Ok(k)
    }

    /// The actor behind an access key id, with the secret to verify a signature.
    /// An unknown key is `NotFound { kind: Resource::AccessKey }`; an AWS front renders
    /// it as its own invalid-token error.
    pub async fn access_key(
        &self,
        access_key_id: &str,
    ) -> Result<(AccessKey, Actor), ComputeError> {
        let k: AccessKey =
            self.inner
                .store
                .get(access_key_id)
                .await?
                .ok_or_else(|| ComputeError::NotFound {
                    kind: Resource::AccessKey,
                    id: access_key_id.into(),
                })?;
        let actor = self.actor_for(&k.user_id, &k.project_id).await?;
        Ok((k, actor))
    }

    pub(crate) async fn actor_for(
        &self,
        user_id: &str,
        project_id: &str,
    ) -> Result<Actor, ComputeError> {
        let user: User = self
            .inner
            .store
            .get::<User>(user_id)
            .await?
            .filter(|u| u.enabled)
            .ok_or_else(|| {
                ComputeError::Unauthorized(
                    "The request you have made requires authentication.".into(),
                )
            })?;
        let role = self
            .inner
            .store
            .role_of(user_id, project_id)
            .await?
            .ok_or_else(|| {
                ComputeError::Unauthorized(format!(
                    "User {user_id} has no access to project {project_id}"
                ))
            })?;
        Ok(Actor {
            user_id: user.id,
            user_name: user.name,
            project_id: project_id.into(),
            role,
        })
    }

    /// Checks a user's password and issues a token scoped to `project`
    /// (id or name; the user's default project when None).
    ///
    /// An unknown user name costs the same hash as a wrong password, and a
    /// hash made with fewer than [`PBKDF2_ROUNDS`] is replaced on success.
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
        project: Option<&str>,
    ) -> Result<Authenticated, ComputeError> {
        let unauthorized = || {
            ComputeError::Unauthorized("The request you have made requires authentication.".into())
        };
        let found = self.user(user).await.ok();
        let stored = found
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().to_string());
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &stored))
            .await
            .map_err(|e| ComputeError::Internal(format!("password check: {e}")))?;
        let Some(mut u) = found.filter(|u| ok && u.enabled) else {
            return Err(unauthorized());
        };
        if hash_rounds(&u.password_hash).is_some_and(|r| r < PBKDF2_ROUNDS) {
            let pw = password.to_string();
            u.password_hash = tokio::task::spawn_blocking(move || hash_password(&pw))
                .await
                .map_err(|e| ComputeError::Internal(format!("password hash: {e}")))?;
            self.inner.store.put(&u).await?;
        }
        let project_id = match project {
            Some(p) => self.project(p).await.map_err(|_| unauthorized())?.id,
            None => u.default_project_id.clone().ok_or_else(unauthorized)?,
        };
        let actor = self.actor_for(&u.id, &project_id).await?;
        self.issue_token(actor).await
    }

    /// Issues a token for an already authenticated actor, valid for 12 hours.
    pub async fn issue_token(&self, actor: Actor) -> Result<Authenticated, ComputeError> {
        let expires_at = now() + ChronoDuration::hours(TOKEN_LIFETIME_HOURS);
        self.issue_token_until(actor, expires_at).await
    }

    /// Issues a token that expires at `expires_at` (token rescoping keeps
    /// the parent token's expiry, as Keystone does).
    pub async fn issue_token_until(
        &self,
        actor: Actor,
        expires_at: Time,
    ) -> Result<Authenticated, ComputeError> {
        let token = format!("lb{}", random_string(46, ids::ALNUM));
        let issued_at = now();
        self.inner
            .store
            .put(&Token {
                id_hash: token_hash(&token),
                user_id: actor.user_id.clone(),
                project_id: actor.project_id.clone(),
                issued_at,
                expires_at,
                revoked: false,
            })
            .await?;
        Ok(Authenticated {
            actor,
            token,
            issued_at,
            expires_at,
        })
    }

    /// The actor of a valid token. A token validated in the last
    /// [`TOKEN_CACHE_TTL`] is answered from memory, unless a user, role,
    /// token, project or access key was written since (the store's
    /// identity generation), so a request does not read the token, its
    /// user and its roles again each time.
    pub async fn validate_token(&self, token: &str) -> Result<Authenticated, ComputeError> {
        let key = token_hash(token);
        let generation = self.inner.store.identity_generation();
        if let Some(c) = self.inner.token_cache.lookup(&key, generation) {
            if c.expires_at > now() {
                return Ok(Authenticated {
                    actor: c.actor,
                    token: token.into(),
                    issued_at: c.issued_at,
                    expires_at: c.expires_at,
                });
            }
        }
        let found = self.validate_token_in_store(token).await?;
        self.inner.token_cache.keep(
            key,
            TokenCacheEntry {
                actor: found.actor.clone(),
                issued_at: found.issued_at,
                expires_at: found.expires_at,
                generation,
                at: std::time::Instant::now(),
            },
        );
        Ok(found)
    }

    /// [`Engine::validate_token`] read from the store.
    async fn validate_token_in_store(&self, token: &str) -> Result<Authenticated, ComputeError> {
        let t: Token = self
            .inner
            .store
            .get::<Token>(&token_hash(token))
            .await?
            .filter(|t| !t.revoked && t.expires_at > now())
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Token,
                id: "(token)".into(),
            })?;
        let actor = self.actor_for(&t.user_id, &t.project_id).await?;
        Ok(Authenticated {
            actor,
            token: token.into(),
            issued_at: t.issued_at,
            expires_at: t.expires_at,
        })
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, token: &str) -> Result<(), ComputeError> {
        let mut t: Token = self
            .inner
            .store
            .get(&token_hash(token))
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Token,
                id: "(token)".into(),
            })?;
        t.revoked = true;
        self.inner.store.put(&t).await?;
        Ok(())
    }

    /// Roles held by a user on a project.
    pub async fn roles_of(
        &self,
        user_id: &str,
        project_id: &str,
    ) -> Result<Vec<Role>, ComputeError> {
        let all: Vec<RoleAssignment> = self.inner.store.list_by_owner(user_id).await?;
        Ok(all
            .iter()
            .filter(|a| a.project_id == project_id)
            .filter_map(|a| Role::parse(&a.role))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn password_hash_round_trip() {
        let h = super::hash_password("correct horse");
        assert!(super::verify_password("correct horse", &h));
        assert!(!super::verify_password("wrong horse", &h));
        assert!(!super::verify_password("x", "garbage"));
        assert_ne!(h, super::hash_password("correct horse"), "salted");
        assert_eq!(super::hash_rounds(&h), Some(super::PBKDF2_ROUNDS));
        const { assert!(super::PBKDF2_ROUNDS >= 600_000) };
    }

    /// 600k rounds stay fast in debug builds (the passwords crate is
    /// optimised in every profile; unoptimised it takes ~9 s).
    #[test]
    fn hashing_is_optimised() {
        let t = std::time::Instant::now();
        super::hash_password("x");
        assert!(
            t.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            t.elapsed()
        );
    }

    /// A 60k-round hash from before still verifies.
    #[test]
    fn old_hashes_verify() {
        let salt = [7u8; 16];
        let out = lifeboat_passwords::pbkdf2_sha256(b"old password", &salt, 60_000);
        let old = format!(
            "pbkdf2-sha256$60000${}${}",
            hex::encode(salt),
            hex::encode(out)
        );
        assert!(super::verify_password("old password", &old));
        assert!(!super::verify_password("other", &old));
        assert_eq!(super::hash_rounds(&old), Some(60_000));
        assert!(!super::verify_password("x", "pbkdf2-sha256$0$00$00"));
    }
}
