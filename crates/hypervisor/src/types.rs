use lifeboat_core::PowerState;
use serde::{Deserialize, Serialize};

/// A driver error. Serialisable: it crosses the agent protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum HvError {
    /// No such VM on this host.
    #[error("no such vm: {0}")]
    NotFound(String),
    /// The VM is not in a state that allows the operation.
    #[error("invalid vm state: {0}")]
    InvalidState(String),
    /// A failure injected by the fake driver.
    #[error("injected failure: {0}")]
    Injected(String),
    /// An operation timed out.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The host is unreachable (agent down).
    #[error("host unreachable: {0}")]
    Unreachable(String),
    /// Not supported by this driver or host.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Anything else (I/O, QMP, qemu-img).
    #[error("{0}")]
    Other(String),
}

impl HvError {
    /// Whether the VM's state refused the operation (the VM exists but
    /// is not in a state that allows it).
    pub fn refuses_state(&self) -> bool {
        matches!(self, HvError::InvalidState(_))
    }
}

/// An image the driver can boot or copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageRef {
    /// Image id.
    pub id: String,
    /// Disk file (qcow2/raw), if the image has one.
    pub disk: Option<String>,
    /// Kernel for direct boot.
    pub kernel: Option<String>,
    /// Initramfs for direct boot.
    pub initrd: Option<String>,
    /// Extra kernel command line.
    pub cmdline: Option<String>,
    /// The image's disk in the snapshot store (instead of `disk`): the host
    /// restores it once into a local cache and boots overlays of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreDisk>,
}

/// One disk of a snapshot in the snapshot store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreDisk {
    /// Where the store is (no secrets: the key file and S3 credentials are the host's).
    pub store: lifeboat_datastore::StoreLocation,
    /// Snapshot id.
    pub snapshot: String,
    /// Disk name in the snapshot (`root`).
    pub disk: String,
    /// What the stored bytes are: `raw` (a disk, the default) or `qcow2`
    /// (an uploaded qcow2 file, checked and converted on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// As [`VmSpec::root_from`]: an instant restore — the VM boots at once from an NBD
    /// export of the snapshot that the host serves from the store (chunks fetched on
    /// demand) while a block job copies the disk into the local qcow2 in the background
    /// ([`crate::Hypervisor::restore_status`]). Raw disks only (not uploaded qcow2 files).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub instant: bool,
}

/// Progress of an instant restore ([`crate::Hypervisor::restore_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RestoreProgress {
    /// Snapshot restored from.
    pub snapshot: String,
    /// Disk of that snapshot.
    pub disk: String,
    /// The copy is complete: the local disk no longer needs the store.
    pub done: bool,
    /// A copy job runs now (false while the VM is off: the copy resumes at its next boot).
    pub copying: bool,
    /// Bytes of the disk the current copy job has done (QEMU's job offset) and its total.
    pub copied: u64,
    /// Disk size.
    pub total: u64,
    /// Copy jobs started (more than one: it was resumed after a failure, a crash or a
    /// host agent restart).
    pub jobs: u32,
    /// The last failure of a copy job or of the export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Reads of the store export answered since this host agent started serving it.
    pub served_reads: u64,
    /// Bytes those reads returned.
    pub served_bytes: u64,
    /// Milliseconds from the restore's start until the copy finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
}

/// What a [`crate::Hypervisor::backup_disk`] call stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskBackupRequest {
    /// The store to write into.
    pub store: lifeboat_datastore::StoreLocation,
    /// Snapshot kind: `backup`, `image`, `shelve`, `dr`, `manager`.
    pub kind: String,
    /// Server id (manifest metadata).
    pub server: String,
    /// Nova backup_type (rotation group).
    #[serde(default)]
    pub backup_type: Option<String>,
    /// Image the server was built from.
    #[serde(default)]
    pub image: Option<String>,
    /// Flavor.
    #[serde(default)]
    pub flavor: Option<String>,
    /// Free-form properties for the manifest (image id, name).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// Also read the stored disk back and compute its MD5/SHA-512
    /// (Glance's checksum and os_hash_value of the raw data).
    #[serde(default)]
    pub digest: bool,
}

/// What a disk backup did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskBackupInfo {
    /// New snapshot id.
    pub snapshot: String,
    /// Disk name in the snapshot.
    pub disk: String,
    /// Disk size (guest-visible bytes).
    pub size: u64,
    /// Parent snapshot (incremental), if any.
    pub parent: Option<String>,
    /// `full`, `bitmap` or `hash`.
    pub mode: String,
    /// Bytes read from the disk.
    pub read_bytes: u64,
    /// Stored bytes newly written.
    pub new_stored_bytes: u64,
    /// Whether the VM was running (live, crash-consistent backup).
    pub live: bool,
    /// Whether the guest's filesystems were frozen for it.
    pub frozen: bool,
    /// Why an incremental fell back to reading everything, if it did.
    pub note: Option<String>,
    /// MD5 of the raw disk (hex), when asked for.
    pub md5: Option<String>,
    /// SHA-512 of the raw disk (hex), when asked for.
    pub sha512: Option<String>,
}

/// Sizes of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VmSize {
    /// vCPUs.
    pub vcpus: u32,
    /// RAM MiB.
    pub ram_mb: u64,
    /// Root disk GiB.
    pub disk_gb: u64,
    /// Ephemeral disk GiB.
    pub ephemeral_gb: u64,
    /// Swap MiB.
    pub swap_mb: u64,
}

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// Port id.
    pub port_id: String,
    /// MAC.
    pub mac: String,
    /// IPv4 address.
    pub ip: String,
    /// Prefix length.
    pub prefix: u8,
    /// Gateway.
    pub gateway: String,
    /// PCI slot of the NIC on the VM's bus, when it was fixed by a hot-plug (the slots of a VM
    /// whose NICs changed while it ran are kept, so that a migration target or the next boot
    /// builds the same device layout). None: the slot follows from the NIC's place on the
    /// command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_slot: Option<u8>,
}

/// Where a NIC of a VM sits on its PCI bus (see [`Nic::pci_slot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSlot {
    /// Port id.
    pub port_id: String,
    /// PCI slot.
    pub slot: u8,
}

/// Everything a driver needs to define a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Hypervisor name (`instance-0000002a`): the key on the host.
    pub name: String,
    /// Server UUID.
    pub server_id: String,
    /// Guest hostname.
    pub hostname: String,
    /// Sizes.
    pub size: VmSize,
    /// Boot image.
    pub image: ImageRef,
    /// Network interfaces.
    pub nics: Vec<Nic>,
    /// Base64 user data.
    pub user_data: Option<String>,
    /// Existing root disk to use instead of a copy of the image (restore, recovery).
    pub root_disk: Option<String>,
    /// Root disk restored from the snapshot store (unshelve): a full copy,
    /// not an overlay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_from: Option<StoreDisk>,
    /// Nova's `config_drive: true`: what the ISO 9660 `config-2` drive the VM gets carries
    /// (the metadata service's documents for this instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_drive: Option<lifeboat_hostnet::InstanceMetadata>,
}

/// Running status of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStatus {
    /// Hypervisor name.
    pub name: String,
    /// Power state.
    pub power_state: PowerState,
    /// Whether the guest agent said ready since the last (re)boot.
    pub guest_ready: bool,
    /// Process id, if a process runs it.
    pub pid: Option<u32>,
}

/// Host facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Driver.
    pub driver: String,
    /// Accelerator in use (`kvm`, `tcg`, `none`).
    pub accelerator: String,
    /// vCPUs offered.
    pub vcpus: u32,
    /// RAM MiB offered.
    pub ram_mb: u64,
    /// Disk GiB offered.
    pub disk_gb: u64,
}

/// A snapshot's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Where it was written.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Disk format.
    pub format: String,
}

/// Where an incoming migration is received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationTarget {
    /// Receiving host.
    pub host: String,
    /// Migration URI (e.g. `tcp:127.0.0.2:49152`), driver-specific.
    pub uri: String,
    /// Disk destination (path or NBD URI).
    pub disk: String,
}

/// What the metadata service on this host answers for one address of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEntry {
    /// Network the request comes from.
    pub network_id: String,
    /// Source address (the port's fixed IP).
    pub ip: std::net::IpAddr,
    /// The instance behind it.
    pub instance: lifeboat_hostnet::InstanceMetadata,
}

/// A host's whole network data plane as the manager wants it (see `net_sync`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostNetState {
    /// Networks, security groups, tap ports, served networks and routers.
    pub desired: lifeboat_hostnet::DesiredState,
    /// Instances behind the addresses of the networks this host serves.
    #[serde(default)]
    pub metadata: Vec<MetadataEntry>,
}
