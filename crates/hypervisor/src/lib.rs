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

/// A bidirectional byte stream (a serial console).
pub trait ConsoleIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> ConsoleIo for T {}

/// An open serial console ([`Hypervisor::open_console`]).
pub type ConsoleStream = Box<dyn ConsoleIo>;

/// The one list of host primitives. Invokes `$callback!` with every
/// primitive as `Variant => fn method(arg: BorrowedType as OwnedType, ..) -> Ret;`
/// (with its doc comment). The [`Hypervisor`] trait here and the host agent's
/// wire enum, dispatch and HTTP client (`lifeboat-agent`) are all generated
/// from it: a new primitive is one entry here plus its driver implementations.
#[macro_export]
macro_rules! host_primitives {
    ($callback:ident) => {
        $callback! {
            /// Host facts: capacity, accelerator.
            HostInfo => fn host_info() -> $crate::HostInfo;
            /// Creates the VM's disks and definition (does not start it).
            Define => fn define(spec: &$crate::VmSpec as $crate::VmSpec) -> ();
            /// Stops the VM if needed and removes it and its disks.
            Destroy => fn destroy(name: &str as String) -> ();
            /// Powers the VM on.
            Start => fn start(name: &str as String) -> ();
            /// Powers off: graceful (ACPI) up to `timeout_secs`, then hard; 0 = hard at once.
            Stop => fn stop(name: &str as String, timeout_secs: u64 as u64) -> ();
            /// Reboots, soft (guest) or hard (reset).
            Reboot => fn reboot(name: &str as String, hard: bool as bool) -> ();
            /// Pauses vCPUs.
            Pause => fn pause(name: &str as String) -> ();
            /// Resumes vCPUs.
            Unpause => fn unpause(name: &str as String) -> ();
            /// Saves RAM state to disk and stops the process.
            Suspend => fn suspend(name: &str as String) -> ();
            /// Restores a suspended VM.
            Resume => fn resume(name: &str as String) -> ();
            /// Boots the rescue image with the server's disk as a second disk.
            Rescue => fn rescue(name: &str as String, image: &$crate::ImageRef as $crate::ImageRef) -> ();
            /// Boots the server's own disk again.
            Unrescue => fn unrescue(name: &str as String) -> ();
            /// Replaces the root disk with a fresh copy of `image` (same identity).
            Rebuild => fn rebuild(name: &str as String, image: &$crate::ImageRef as $crate::ImageRef) -> ();
            /// Applies new sizes; the old disk is kept until confirm/revert.
            Resize => fn resize(name: &str as String, size: &$crate::VmSize as $crate::VmSize) -> ();
            /// Drops the pre-resize disk.
            ConfirmResize => fn confirm_resize(name: &str as String) -> ();
            /// Returns to the pre-resize disk and size.
            RevertResize => fn revert_resize(name: &str as String) -> ();
            /// Copies the root disk (crash-consistent if running) to `dest`.
            SnapshotDisk => fn snapshot_disk(name: &str as String, dest: &str as String) -> $crate::SnapshotInfo;
            /// Where the instant restore of the VM's root disk ([`StoreDisk::instant`]) is:
            /// None when the VM was not instant-restored. Also advances it: resumes a copy that
            /// stopped (failure, crash, host agent restart) and finishes one that completed.
            RestoreStatus => fn restore_status(name: &str as String) -> Option<$crate::RestoreProgress>;
            /// Backs the root disk up into the snapshot store (crash-consistent
            /// if running; incremental against the VM's last snapshot).
            BackupDisk => fn backup_disk(name: &str as String, req: &$crate::DiskBackupRequest as $crate::DiskBackupRequest) -> $crate::DiskBackupInfo;
            /// The last `lines` lines of the serial console (all if None).
            ConsoleOutput => fn console_output(name: &str as String, lines: Option<usize> as Option<usize>) -> String;
            /// Injects an NMI (crash dump).
            CrashDump => fn crash_dump(name: &str as String) -> ();
            /// Sets a guest user's password through the guest agent.
            SetPassword => fn set_password(name: &str as String, user: &str as String, password: &str as String) -> ();
            /// Runs a named maintenance procedure in the guest.
            RunMaintenance => fn run_maintenance(name: &str as String, procedure: &str as String) -> String;
            /// Releases host resources but keeps disks (shelve offload); the VM must be stopped.
            Offload => fn offload(name: &str as String) -> ();
            /// Prepares this host to receive `spec` by migration; returns the target.
            PrepareIncoming => fn prepare_incoming(spec: &$crate::VmSpec as $crate::VmSpec) -> $crate::MigrationTarget;
            /// Migrates a VM to `target` (live if running), then removes it here.
            MigrateTo => fn migrate_to(name: &str as String, target: &$crate::MigrationTarget as $crate::MigrationTarget) -> ();
            /// Completes an incoming migration on this host.
            FinishIncoming => fn finish_incoming(name: &str as String) -> ();
            /// Path of a Unix socket on this host connected to the VM's interactive
            /// serial console (the console proxy bridges a websocket to it).
            ConsoleSocket => fn console_socket(name: &str as String) -> String;
            /// Power/running status of one VM.
            Status => fn status(name: &str as String) -> $crate::VmStatus;
            /// Every VM this host knows.
            List => fn list() -> Vec<$crate::VmStatus>;
            /// Plugs a NIC into the VM: a running VM gets it at once (QMP `netdev_add` on the
            /// port's tap + `device_add`, PCI hot-plug), a stopped one at its next boot.
            /// Idempotent; returns the PCI slot of every NIC of the VM.
            AttachNic => fn attach_nic(name: &str as String, nic: &$crate::Nic as $crate::Nic) -> Vec<$crate::NicSlot>;
            /// Unplugs the port's NIC (`device_del`, waiting until the guest released it, then
            /// `netdev_del`); a NIC that is not there is already detached. Returns the PCI slot
            /// of every NIC left.
            DetachNic => fn detach_nic(name: &str as String, port_id: &str as String) -> Vec<$crate::NicSlot>;
            /// Brings the host's network data plane to `state` (idempotent, whole state in);
            /// false when the host has none (its NICs are user-mode, see `qemu::net`).
            NetSync => fn net_sync(state: &$crate::HostNetState as $crate::HostNetState) -> bool;
        }
    };
}

/// Generates the [`Hypervisor`] trait from [`host_primitives!`].
macro_rules! define_hypervisor_trait {
    ($( $(#[doc = $doc:literal])* $variant:ident => fn $method:ident( $( $arg:ident : $bty:ty as $oty:ty ),* ) -> $ret:ty; )*) => {
        /// Every lifecycle primitive a server action needs (generated from
        /// [`host_primitives!`]). All calls are idempotent where the workflow
        /// engine may repeat them after a crash: `define` of an existing VM
        /// with the same spec, `destroy` of a missing VM, `start` of a
        /// running VM and `stop` of a stopped VM succeed.
        #[async_trait]
        pub trait Hypervisor: Send + Sync {
            /// Driver name (`qemu`, `fake`, `remote`).
            fn driver(&self) -> &'static str;
            /// Opens the VM's serial console as a byte stream. Local drivers
            /// connect to [`Hypervisor::console_socket`]; the host agent's
            /// client carries the stream through the agent, so the console of
            /// a VM on another machine works.
            async fn open_console(&self, name: &str) -> HvResult<ConsoleStream> {
                let path = self.console_socket(name).await?;
                let s = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| HvError::Other(format!("console of {name}: {e}")))?;
                Ok(Box::new(s))
            }
            $(
                $(#[doc = $doc])*
                async fn $method(&self $(, $arg: $bty)*) -> HvResult<$ret>;
            )*
        }
    };
}

host_primitives!(define_hypervisor_trait);

/// Lends a wire (owned) argument to a trait method that takes it borrowed
/// (`String` → `&str`, `VmSpec` → `&VmSpec`) or by value (`u64`, `bool`).
/// Used by code generated from [`host_primitives!`].
pub trait Lend<'a, B> {
    /// The argument as the trait method takes it.
    fn lend(&'a self) -> B;
}

impl<'a> Lend<'a, &'a str> for String {
    fn lend(&'a self) -> &'a str {
        self
    }
}

impl<'a, T> Lend<'a, &'a T> for T {
    fn lend(&'a self) -> &'a T {
        self
    }
}

macro_rules! lend_by_value {
    ($($t:ty),*) => {$(
        impl<'a> Lend<'a, $t> for $t {
            fn lend(&'a self) -> $t {
                *self
            }
        }
    )*};
}
lend_by_value!(u64, bool, Option<usize>);

/// Turns a trait method's argument into its wire (owned) form; the
/// counterpart of [`Lend`].
pub trait Own<O> {
    /// The owned form.
    fn own(self) -> O;
}

impl Own<String> for &str {
    fn own(self) -> String {
        self.to_string()
    }
}

impl<T: Clone> Own<T> for &T {
    fn own(self) -> T {
        self.clone()
    }
}

macro_rules! own_by_value {
    ($($t:ty),*) => {$(
        impl Own<$t> for $t {
            fn own(self) -> $t {
                self
            }
        }
    )*};
}
own_by_value!(u64, bool, Option<usize>);
