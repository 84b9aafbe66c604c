//! The compute service: servers (`servers`: read, list, update, metadata,
//! tags, instance actions), their creation (`create`) and their actions
//! (`actions`: the action table's check, then a record update or a workflow),
//! their workflow kinds (`workflows`), the power-state sync action
//! (`power_sync`), restore from a backup (`restore`) and the project quotas
//! (`quota`).

pub(crate) mod actions;
mod create;
pub(crate) mod power_sync;
pub(crate) mod quota;
pub(crate) mod restore;
mod servers;
pub(crate) mod workflows;

use lifeboat_core::ids;

use crate::ComputeError;
use crate::Resource;

pub(crate) fn not_found(id: &str) -> ComputeError {
    ComputeError::NotFound {
        kind: Resource::Server,
        id: id.into(),
    }
}

pub(crate) fn generate_password() -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..12)
        .map(|_| ids::ALNUM[rng.gen_range(0..ids::ALNUM.len())] as char)
        .collect()
}

/// Nova's hostname sanitisation: lowercase, [a-z0-9-], at most 63 chars.
pub fn sanitize_hostname(name: &str) -> String {
    let mut h: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    h = h.trim_matches('-').to_string();
    h.truncate(63);
    if h.is_empty() {
        "server".into()
    } else {
        h
    }
}
