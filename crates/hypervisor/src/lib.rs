//! Hypervisor drivers behind one trait.
//!
//! [`Hypervisor`] is every lifecycle primitive the server actions need. The
//! manager never calls a driver directly: it calls the host agent of the
//! server's host (`lifeboat-agent`), which implements the same trait over
//! HTTP/JSON or in-process. Drivers:
//! - [`fake::FakeDriver`]: an in-process test double with delays, failure
//!   injection and optional persistence (so it survives a process restart).
//! - [`qemu::QemuDriver`]: real QEMU/KVM virtual machines.

pub mod fake;
pub mod qemu;
mod types;

pub use types::*;

use async_trait::async_trait;

/// Result of a driver call.
pub type HvResult<T> = Result<T, HvError>;

/// Every lifecycle primitive a server action needs. All calls are
/// idempotent where the workflow engine may repeat them after a crash:
/// `define` of an existing VM with the same spec, `destroy` of a missing VM,
/// `start` of a running VM and `stop` of a stopped VM succeed.
#[async_trait]
pub trait Hypervisor: Send + Sync {
    /// Driver name (`qemu`, `fake`).
    fn driver(&self) -> &'static str;
    /// Host facts: capacity, accelerator.
    async fn host_info(&self) -> HvResult<HostInfo>;
    /// Creates the VM's disks and definition (does not start it).
    async fn define(&self, spec: &VmSpec) -> HvResult<()>;
    /// Stops the VM if needed and removes it and its disks.
    async fn destroy(&self, name: &str) -> HvResult<()>;
    /// Powers the VM on.
    async fn start(&self, name: &str) -> HvResult<()>;
    /// Powers off: graceful (ACPI) up to `timeout_secs`, then hard; 0 = hard at once.
    async fn stop(&self, name: &str, timeout_secs: u64) -> HvResult<()>;
    /// Reboots, soft (guest) or hard (reset).
    async fn reboot(&self, name: &str, hard: bool) -> HvResult<()>;
    /// Pauses vCPUs.
    async fn pause(&self, name: &str) -> HvResult<()>;
    /// Resumes vCPUs.
    async fn unpause(&self, name: &str) -> HvResult<()>;
    /// Saves RAM state to disk and stops the process.
    async fn suspend(&self, name: &str) -> HvResult<()>;
    /// Restores a suspended VM.
    async fn resume(&self, name: &str) -> HvResult<()>;
    /// Boots the rescue image with the server's disk as a second disk.
    async fn rescue(&self, name: &str, rescue_image: &ImageRef) -> HvResult<()>;
    /// Boots the server's own disk again.
    async fn unrescue(&self, name: &str) -> HvResult<()>;
    /// Replaces the root disk with a fresh copy of `image` (same identity).
    async fn rebuild(&self, name: &str, image: &ImageRef) -> HvResult<()>;
    /// Applies new sizes; the old disk is kept until confirm/revert.
    async fn resize(&self, name: &str, size: &VmSize) -> HvResult<()>;
    /// Drops the pre-resize disk.
    async fn confirm_resize(&self, name: &str) -> HvResult<()>;
    /// Returns to the pre-resize disk and size.
    async fn revert_resize(&self, name: &str) -> HvResult<()>;
    /// Copies the root disk (crash-consistent if running) to `dest`.
    async fn snapshot_disk(&self, name: &str, dest: &str) -> HvResult<SnapshotInfo>;
    /// The last `lines` lines of the serial console (all if None).
    async fn console_output(&self, name: &str, lines: Option<usize>) -> HvResult<String>;
    /// Injects an NMI (crash dump).
    async fn crash_dump(&self, name: &str) -> HvResult<()>;
    /// Sets a guest user's password through the guest agent.
    async fn set_password(&self, name: &str, user: &str, password: &str) -> HvResult<()>;
    /// Runs a named maintenance procedure in the guest.
    async fn run_maintenance(&self, name: &str, procedure: &str) -> HvResult<String>;
    /// Releases host resources but keeps disks (shelve offload); the VM must be stopped.
    async fn offload(&self, name: &str) -> HvResult<()>;
    /// Prepares this host to receive `spec` by migration; returns the target.
    async fn prepare_incoming(&self, spec: &VmSpec) -> HvResult<MigrationTarget>;
    /// Migrates a VM to `target` (live if running), then removes it here.
    async fn migrate_to(&self, name: &str, target: &MigrationTarget) -> HvResult<()>;
    /// Completes an incoming migration on this host.
    async fn finish_incoming(&self, name: &str) -> HvResult<()>;
    /// Path of a Unix socket on this host connected to the VM's interactive
    /// serial console (the console proxy bridges a websocket to it).
    async fn console_socket(&self, name: &str) -> HvResult<String>;
    /// Power/running status of one VM.
    async fn status(&self, name: &str) -> HvResult<VmStatus>;
    /// Every VM this host knows.
    async fn list(&self) -> HvResult<Vec<VmStatus>>;
}
