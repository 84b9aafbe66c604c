//! The Lifeboat engine: the compute service every front calls.
//!
//! It owns the rules' application (via `lifeboat-core`), the store, the host
//! agents and the durable workflow runner. A front parses and authenticates
//! a request, calls one [`Engine`] method with an [`Actor`], and renders the
//! result or the [`ComputeError`] in its vendor's format.

mod backup;
mod catalog;
mod compute;
mod console;
mod error;
mod hosts;
mod identity;
mod maintenance;
mod network;
mod requests;
mod secrets;
mod server_groups;
mod steps;
mod workflow;

pub use backup::{parse_store_location, store_location, ShelvedDisk};
pub use catalog::flavor_access::FlavorAccess;
pub use catalog::image_upload::{NewImage, CONTAINER_FORMATS, DISK_FORMATS};
pub use catalog::{GuestImage, DEFAULT_IMAGE_ID};
pub use compute::quota::{Limits, QuotaTarget, QuotaUsage, QUOTA_DEFAULTS};
pub use compute::restore::InstantRestore;
pub use console::ConsoleTarget;
pub use error::{Class, ComputeError, Field, OverQuota, QuotaExceeded, Reason, Resource};
pub use identity::{
    hash_password, hash_rounds, verify_password, write_private, AdminCredentials, Authenticated,
    PBKDF2_ROUNDS,
};
pub use lifeboat_hypervisor::RestoreProgress;
pub use network::neutron;
pub use requests::*;
pub use server_groups::ServerGroup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{Actor, Host, NewEvent};
use lifeboat_hypervisor::Hypervisor;
use lifeboat_store::Store;
use tokio::sync::{broadcast, RwLock};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Data directory (images, backups, credentials).
    pub data_dir: PathBuf,
    /// Soft delete: seconds a deleted server stays restorable (0 = delete at once).
    pub reclaim_instance_interval: u64,
    /// Seconds a shelved server waits before offload (0 = at once, negative = never).
    pub shelved_offload_time: i64,
    /// Seconds between power-state reconciliations.
    pub sync_interval: Duration,
    /// Test hook (set only when test hooks are enabled explicitly, see
    /// [`test_hooks_enabled`]): `kind:step` at which the workflow runner
    /// stops for good right after persisting that step as started, or
    /// `kind:step:after` to stop right after the step's side effect is done
    /// and persisted (for SIGKILL tests).
    pub hang_at: Option<String>,
    /// Consecutive missed heartbeats (one per `sync_interval`) before a host
    /// is marked down and its servers may be evacuated.
    pub host_down_after: u32,
    /// Seconds to wait for a guest to report ready.
    pub ready_timeout: Duration,
    /// Virtual CPUs placed per host CPU (Nova's initial_cpu_allocation_ratio).
    pub cpu_allocation_ratio: f64,
    /// Base URL of the serial console proxy (`ws://host:port/console/serial`);
    /// None disables serial consoles.
    pub serial_console_url: Option<String>,
    /// The snapshot store (backups, images, shelved disks), handed to the
    /// host agents (default: `<data_dir>/snapstore`).
    pub snapstore: lifeboat_datastore::StoreLocation,
}

impl EngineConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: PathBuf) -> EngineConfig {
        EngineConfig {
            reclaim_instance_interval: 0,
            shelved_offload_time: 0,
            sync_interval: Duration::from_secs(5),
            hang_at: None,
            host_down_after: 3,
            ready_timeout: Duration::from_secs(300),
            cpu_allocation_ratio: 4.0,
            serial_console_url: None,
            snapstore: lifeboat_datastore::StoreLocation::dir(data_dir.join("snapstore")),
            data_dir,
        }
    }
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `f` with `request_id` as the id of the request being served: every
/// workflow (instance action) it starts records that id, so a front can
/// answer with the same id in its response header.
pub async fn with_request_id<F: std::future::Future>(request_id: String, f: F) -> F::Output {
    REQUEST_ID.scope(request_id, f).await
}

/// The id of the request being served ([`with_request_id`]), if any.
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Environment variable that enables the test hooks
/// (`LIFEBOAT_TEST_HANG_AT`, `LIFEBOAT_FAKE_FAIL`); `serve --enable-test-hooks`
/// does the same.
pub const TEST_HOOKS_ENV: &str = "LIFEBOAT_ENABLE_TEST_HOOKS";

/// Whether `LIFEBOAT_ENABLE_TEST_HOOKS` is set to `1` (or `true`).
pub fn test_hooks_enabled() -> bool {
    matches!(
        std::env::var(TEST_HOOKS_ENV).as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

/// A registered host and the agent that drives it.
#[derive(Clone)]
pub(crate) struct HostHandle {
    pub host: Host,
    pub agent: Arc<dyn Hypervisor>,
    pub up: bool,
    /// Heartbeats missed in a row.
    pub missed: u32,
}

pub(crate) struct Inner {
    pub store: Store,
    pub cfg: EngineConfig,
    pub hosts: RwLock<HashMap<String, HostHandle>>,
    pub events: broadcast::Sender<lifeboat_core::Event>,
    pub running: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Woken each time a workflow run of this process ends (`workflow.rs`).
    pub run_ended: tokio::sync::Notify,
    /// Tokens validated in the last seconds (`identity.rs`).
    pub token_cache: identity::TokenCache,
    /// Serialises "pick a host, then claim it" so concurrent builds cannot
    /// overcommit a host (one manager; several managers need a DB lock).
    pub placement: tokio::sync::Mutex<()>,
    /// Console tokens (single use, see `console`).
    pub consoles: std::sync::Mutex<HashMap<String, console::ConsoleGrant>>,
    /// Key sealing workflow secrets (loaded from the data dir on first use).
    pub vault_key: std::sync::Mutex<Option<[u8; 32]>>,
    /// What each host's data plane was last told (`network/dataplane.rs`).
    pub dataplane: network::dataplane::DataplaneCache,
    /// Slots of workflows running steps at once, handed out first come,
    /// first served (`workflow.rs`).
    pub slots: tokio::sync::Semaphore,
}

/// The compute service. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// An engine over `store`. Call [`Engine::bootstrap`] and
    /// [`Engine::add_host`], then [`Engine::start`].
    pub fn new(store: Store, cfg: EngineConfig) -> Engine {
        let (tx, _) = broadcast::channel(1024);
        Engine {
            inner: Arc::new(Inner {
                store,
                cfg,
                hosts: RwLock::new(HashMap::new()),
                events: tx,
                running: Default::default(),
                run_ended: tokio::sync::Notify::new(),
                token_cache: Default::default(),
                placement: tokio::sync::Mutex::new(()),
                consoles: Default::default(),
                vault_key: Default::default(),
                dataplane: Default::default(),
                slots: tokio::sync::Semaphore::new(workflow::MAX_RUNNING),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.cfg
    }

    /// Resumes or rolls back every unfinished workflow and starts the
    /// periodic tasks (power-state sync, soft-delete reclaim).
    pub async fn start(&self) -> Result<(), ComputeError> {
        // Interface changes a crash interrupted first: no workflow that resumes (a boot)
        // may find a port bound whose attach never finished.
        self.settle_interface_ops().await?;
        self.recover().await?;
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(me.inner.cfg.sync_interval).await;
                if let Err(e) = me.periodic().await {
                    tracing::warn!("periodic task: {e}");
                }
            }
        });
        Ok(())
    }

    /// Subscribes to new events as they are logged.
    pub fn subscribe(&self) -> broadcast::Receiver<lifeboat_core::Event> {
        self.inner.events.subscribe()
    }

    /// Appends an event to the log (and to subscribers).
    pub(crate) async fn event(&self, e: NewEvent) {
        match self.inner.store.append_event(&e).await {
            Ok(id) => self.notify_event(id, e),
            Err(err) => tracing::error!("cannot log event: {err}"),
        }
    }

    /// Tells the subscribers of an event the log stored as `id`.
    pub(crate) fn notify_event(&self, id: i64, e: NewEvent) {
        let _ = self.inner.events.send(lifeboat_core::Event {
            id,
            time: lifeboat_core::now(),
            level: e.level,
            server_id: e.server_id,
            project_id: e.project_id,
            workflow_id: e.workflow_id,
            step: e.step,
            message: e.message,
        });
    }

    /// Reads the event log: admins see all, others their project's events.
    pub async fn events(
        &self,
        actor: &Actor,
        mut q: lifeboat_store::EventQuery,
    ) -> Result<Vec<lifeboat_core::Event>, ComputeError> {
        if !actor.is_admin() {
            q.project_id = Some(actor.project_id.clone());
        }
        Ok(self.inner.store.events(&q).await?)
    }
}
