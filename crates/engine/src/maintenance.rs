//! The maintenance service: procedures run inside a guest by its guest
//! agent (`run_maintenance`, the scripts of the guest image's
//! `/etc/lifeboat/maintenance.d`). The `run_maintenance` server action
//! starts one; its output is logged as an event of the workflow.

use crate::ComputeError;

/// A procedure name the guest agent accepts: a script name, never a path.
pub(crate) fn check_procedure(name: &str) -> Result<(), ComputeError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ComputeError::BadRequest(format!(
            "Invalid maintenance procedure {name:?}: a script name of letters, digits, '-' and '_'"
        )))
    }
}
