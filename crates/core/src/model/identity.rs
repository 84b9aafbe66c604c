use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Time;

/// A project (tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    /// Id (32 hex chars, Keystone style).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Enabled.
    pub enabled: bool,
}

/// A user. The password is kept only as a salted hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Id (32 hex chars).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `sha256$<salt hex>$<hash hex>` of the password, iterated.
    pub password_hash: String,
    /// Default project.
    pub default_project_id: Option<String>,
    /// Enabled.
    pub enabled: bool,
}

/// A role a user holds on a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleAssignment {
    /// User id.
    pub user_id: String,
    /// Project id.
    pub project_id: String,
    /// Role name: admin, member or reader.
    pub role: String,
}

/// An AWS-style access key pair bound to a user and project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    /// Access key id (`AKIA...`).
    pub access_key_id: String,
    /// Secret (needed to verify SigV4 signatures; never logged).
    pub secret_access_key: String,
    /// Owner.
    pub user_id: String,
    /// Project the key acts in.
    pub project_id: String,
    /// Created.
    pub created_at: Time,
}

/// A bearer token (Keystone-style).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// SHA-256 of the token value (the value itself is never stored).
    pub id_hash: String,
    /// User.
    pub user_id: String,
    /// Project scope.
    pub project_id: String,
    /// Issued.
    pub issued_at: Time,
    /// Expires.
    pub expires_at: Time,
    /// Revoked.
    pub revoked: bool,
}

/// An SSH keypair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Keypair {
    /// Name, unique per user.
    pub name: String,
    /// Owner.
    pub user_id: String,
    /// Public key.
    pub public_key: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// ssh or x509.
    pub key_type: String,
    /// Created.
    pub created_at: Time,
}
