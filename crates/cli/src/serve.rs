//! `lifeboat serve` and `lifeboat agent`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use lifeboat_engine::{Engine, EngineConfig, GuestImage};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use lifeboat_hypervisor::Hypervisor;

/// Hypervisor driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverKind {
    /// Real QEMU virtual machines.
    Qemu,
    /// The in-process test double (no VMs).
    Fake,
}

/// Accelerator of a qemu host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    /// KVM when the guest kernel boots under it within a deadline, else TCG.
    Auto,
    /// KVM (a VM it cannot boot fails at once and the host falls back to TCG).
    Kvm,
    /// Emulation.
    Tcg,
}

impl From<AccelArg> for lifeboat_hypervisor::qemu::Accel {
    fn from(a: AccelArg) -> Self {
        use lifeboat_hypervisor::qemu::Accel;
        match a {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        }
    }
}

/// Where the snapshot store is (backups, images, shelved disks).
#[derive(Debug, Clone, Args)]
pub struct SnapstoreArgs {
    /// Store directory (manager default: `<data-dir>/snapstore`; host agents
    /// on the manager's machine use the directory the manager names).
    #[arg(long = "snapstore", env = "LIFEBOAT_SNAPSTORE")]
    pub dir: Option<PathBuf>,
    /// S3 endpoint URL instead of a directory (credentials from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of each process).
    #[arg(long = "snapstore-s3-endpoint", env = "LIFEBOAT_SNAPSTORE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 bucket.
    #[arg(long = "snapstore-s3-bucket", env = "LIFEBOAT_SNAPSTORE_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long = "snapstore-s3-prefix", default_value = "")]
    pub s3_prefix: String,
    /// Key file of an encrypted store (`lifeboat backup key create`); never
    /// keep it inside the store.
    #[arg(long = "snapstore-key", env = "LIFEBOAT_SNAPSTORE_KEY")]
    pub key_file: Option<PathBuf>,
}

impl SnapstoreArgs {
    /// The location, if any option was given.
    fn location(&self) -> anyhow::Result<Option<lifeboat_datastore::StoreLocation>> {
        use lifeboat_datastore::{S3Location, StoreLocation};
        let s3 = match (&self.s3_endpoint, &self.s3_bucket) {
            (Some(e), Some(b)) => Some(S3Location {
                endpoint: e.clone(),
                bucket: b.clone(),
                prefix: self.s3_prefix.clone(),
                region: None,
            }),
            (None, None) => None,
            _ => bail!("--snapstore-s3-endpoint and --snapstore-s3-bucket go together"),
        };
        if self.dir.is_some() && s3.is_some() {
            bail!("give either --snapstore DIR or --snapstore-s3-endpoint, not both");
        }
        if self.dir.is_none() && s3.is_none() {
            if self.key_file.is_some() {
                bail!("--snapstore-key needs --snapstore DIR or --snapstore-s3-endpoint");
            }
            return Ok(None);
        }
        let abs = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Ok(Some(StoreLocation {
            dir: self.dir.as_ref().map(abs),
            s3,
            key_file: self.key_file.as_ref().map(abs),
        }))
    }
}

/// `lifeboat serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (all fronts share it).
    #[arg(long, default_value = "127.0.0.1:8774", env = "LIFEBOAT_LISTEN")]
    pub listen: SocketAddr,
    /// Data directory (database, images, credentials).
    #[arg(long, default_value = "lifeboat-data", env = "LIFEBOAT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://PATH` (default: `<data-dir>/lifeboat.db`) or `postgres://...`.
    #[arg(long, env = "LIFEBOAT_DATABASE")]
    pub database: Option<String>,
    /// Driver of the in-process host (default: qemu when qemu-system-x86_64 is installed).
    #[arg(long, value_enum, env = "LIFEBOAT_DRIVER")]
    pub driver: Option<DriverKind>,
    /// Name of the in-process host.
    #[arg(long, default_value = "host1")]
    pub host_name: String,
    /// Availability zone of every host (the in-process host and the
    /// agents); `nova` is the zone OpenStack clients expect by default.
    #[arg(long, default_value = "nova")]
    pub availability_zone: String,
    /// Remote host agents, `NAME=https://127.0.0.2:8775[,pin=sha256:HEX]`
    /// (repeatable). The pin is the agent's certificate fingerprint (the
    /// agent prints it and writes `<agent-data-dir>/tls/agent.sha256`); once
    /// given it is kept in `<data-dir>/agent-pins/NAME`.
    #[arg(long = "agent")]
    pub agents: Vec<String>,
    /// Public URL of this instance (for links and the service catalog).
    #[arg(long, env = "LIFEBOAT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds a deleted server stays restorable (0: delete at once).
    #[arg(long, default_value_t = 0)]
    pub reclaim_instance_interval: u64,
    /// Seconds before a shelved server is offloaded (0: at once, -1: never).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub shelved_offload_time: i64,
    /// Directory with the guest image (vmlinux, initramfs.cpio.gz).
    #[arg(long, env = "LIFEBOAT_GUEST_DIR")]
    pub guest_dir: Option<PathBuf>,
    /// Seconds between power-state syncs.
    #[arg(long, default_value_t = 5)]
    pub sync_interval: u64,
    /// Missed heartbeats (one per sync interval) before a host is marked
    /// down and its servers may be evacuated.
    #[arg(long, default_value_t = 3)]
    pub host_down_after: u32,
    /// Honour the test hooks (`LIFEBOAT_TEST_HANG_AT`, `LIFEBOAT_FAKE_FAIL`).
    /// Never set this in production.
    #[arg(
        long,
        env = lifeboat_engine::TEST_HOOKS_ENV,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub enable_test_hooks: bool,
    /// Accelerator of the in-process qemu host.
    #[arg(long, value_enum, default_value = "auto", env = "LIFEBOAT_ACCEL")]
    pub accel: AccelArg,
    /// Address the in-process qemu host receives migrations on (RAM and NBD disks).
    #[arg(long, default_value = "127.0.0.1")]
    pub migration_address: std::net::IpAddr,
    /// RAM (MiB) the in-process qemu host keeps for itself and does not offer to VMs.
    #[arg(long, default_value_t = 0)]
    pub reserved_host_memory_mb: u64,
    /// Speed limit (bytes/s, 0: none) of the background copy of an instant restore
    /// (`restore_backup`) on the qemu host.
    #[arg(long, default_value_t = 0, env = "LIFEBOAT_RESTORE_COPY_SPEED")]
    pub restore_copy_speed: u64,
    /// The snapshot store.
    #[command(flatten)]
    pub snapstore: SnapstoreArgs,
    /// Put the VMs' NICs on the network data plane: the namespace `lbh-<NAME>` holds this
    /// host's bridges, taps, DHCP, metadata service and routers (needs root, dnsmasq and
    /// nftables). Without it NICs are user-mode with no network (see docs/ARCHITECTURE.md).
    #[arg(long, env = "LIFEBOAT_DATAPLANE")]
    pub dataplane: Option<String>,
    /// Join the fabric `lbf-<NAME>` that links the host agents of this machine (VXLAN), so a
    /// network spans hosts and live migration keeps connectivity. Needs `--dataplane`.
    #[arg(long, env = "LIFEBOAT_FABRIC", requires = "dataplane")]
    pub fabric: Option<String>,
}

/// `lifeboat agent` options.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.2:8775")]
    pub listen: SocketAddr,
    /// Host name.
    #[arg(long)]
    pub name: String,
    /// Driver.
    #[arg(long, value_enum, default_value = "fake")]
    pub driver: DriverKind,
    /// State directory of this host.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// File holding the shared agent token (the manager's `<data-dir>/agent-token`).
    #[arg(long)]
    pub token_file: PathBuf,
    /// The manager's CA certificate (`<manager-data-dir>/ca/ca.crt`, printed by
    /// `lifeboat ca`): only a client certificate it signed may connect.
    #[arg(long)]
    pub manager_ca: PathBuf,
    /// Directory of this agent's TLS key and certificate (default `<data-dir>/tls`).
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// Extra names (DNS or IP) in the agent's certificate, made on first start.
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// Accelerator (qemu driver).
    #[arg(long, value_enum, default_value = "auto", env = "LIFEBOAT_ACCEL")]
    pub accel: AccelArg,
    /// Directory with the guest image (vmlinux, initramfs.cpio.gz) the
    /// accelerator probe boots.
    #[arg(long, env = "LIFEBOAT_GUEST_DIR")]
    pub guest_dir: Option<PathBuf>,
    /// Address this host receives migrations on (RAM and NBD disks); other
    /// hosts must reach it. Default: the `--listen` address.
    #[arg(long)]
    pub migration_address: Option<std::net::IpAddr>,
    /// RAM (MiB) this qemu host keeps for itself and does not offer to VMs.
    #[arg(long, default_value_t = 0)]
    pub reserved_host_memory_mb: u64,
    /// Speed limit (bytes/s, 0: none) of the background copy of an instant restore
    /// (`restore_backup`) on the qemu host.
    #[arg(long, default_value_t = 0, env = "LIFEBOAT_RESTORE_COPY_SPEED")]
    pub restore_copy_speed: u64,
    /// Put the VMs' NICs on the network data plane: the namespace `lbh-<NAME>` holds this
    /// host's bridges, taps, DHCP, metadata service and routers (needs root, dnsmasq and
    /// nftables). Without it NICs are user-mode with no network (see docs/ARCHITECTURE.md).
    #[arg(long, env = "LIFEBOAT_DATAPLANE")]
    pub dataplane: Option<String>,
    /// Join the fabric `lbf-<NAME>` that links the host agents of this machine (VXLAN), so a
    /// network spans hosts and live migration keeps connectivity. Needs `--dataplane`.
    #[arg(long, env = "LIFEBOAT_FABRIC", requires = "dataplane")]
    pub fabric: Option<String>,
    /// Honour the fake driver's failure injection (`LIFEBOAT_FAKE_FAIL`).
    /// Never set this in production.
    #[arg(
        long,
        env = "LIFEBOAT_ENABLE_TEST_HOOKS",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub enable_test_hooks: bool,
    /// The snapshot store as this host reaches it, overriding the location
    /// the manager names (another machine: its own S3 credentials and key
    /// file path). Default: the manager's.
    #[command(flatten)]
    pub snapstore: SnapstoreArgs,
}

/// `lifeboat ca` options.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// The manager's data directory.
    #[arg(long, default_value = "lifeboat-data", env = "LIFEBOAT_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// Creates the manager CA if needed; prints its certificate's path.
pub fn ca(a: CaArgs) -> anyhow::Result<()> {
    private_dir(&a.data_dir)?;
    let ca = lifeboat_agent::tls::ManagerCa::open_or_create(&a.data_dir.join("ca"))?;
    println!("{}", ca.cert_path().display());
    Ok(())
}

/// One `--agent NAME=URL[,pin=sha256:HEX]`, with the pin given or kept in
/// `<data-dir>/agent-pins/NAME` (written when given).
fn agent_spec(data_dir: &Path, spec: &str) -> anyhow::Result<(String, String, [u8; 32])> {
    let (name, rest) = spec.split_once('=').with_context(|| {
        format!("--agent {spec}: expected NAME=https://HOST:PORT[,pin=sha256:HEX]")
    })?;
    let (url, pin) = match rest.split_once(",pin=") {
        Some((u, p)) => (u, Some(p)),
        None => (rest, None),
    };
    if name.is_empty() || name.contains(['/', '.']) {
        bail!("--agent {spec}: bad host name {name:?}");
    }
    if !url.starts_with("https://") {
        bail!("--agent {spec}: agents are reached over TLS only: use https://");
    }
    let pins = data_dir.join("agent-pins");
    let file = pins.join(name);
    let pin = match pin {
        Some(p) => {
            let parsed = lifeboat_agent::tls::parse_pin(p)?;
            private_dir(&pins)?;
            lifeboat_engine::write_private(
                &file,
                lifeboat_agent::tls::fingerprint_of_digest(&parsed).as_bytes(),
            )?;
            parsed
        }
        None => match std::fs::read_to_string(&file) {
            Ok(p) => lifeboat_agent::tls::parse_pin(&p)
                .with_context(|| format!("pin of agent {name} in {}", file.display()))?,
            Err(_) => bail!(
                "--agent {spec}: no pin for agent {name}: pass --agent {name}={url},pin=sha256:... \
                 with the fingerprint the agent printed at start (also in <agent-data-dir>/tls/agent.sha256)"
            ),
        },
    };
    Ok((name.to_string(), url.to_string(), pin))
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

fn qemu_installed() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()))
        .unwrap_or(false)
}

/// How a qemu host is set up.
struct QemuOptions {
    accel: AccelArg,
    guest_dir: Option<PathBuf>,
    migration_address: std::net::IpAddr,
    /// RAM (MiB) not offered to VMs.
    reserved_ram_mb: u64,
    /// Speed limit of instant restores' background copy (bytes/s, 0: none).
    restore_copy_speed: u64,
    /// Honour `LIFEBOAT_FAKE_FAIL` (fake driver).
    test_hooks: bool,
    /// This host's own snapshot store location (overrides the manager's).
    snapstore: Option<lifeboat_datastore::StoreLocation>,
    /// The network data plane (`--dataplane`, `--fabric`).
    dataplane: Option<lifeboat_hypervisor::qemu::net::DataplaneConfig>,
}

fn dataplane_of(
    name: &Option<String>,
    fabric: &Option<String>,
) -> Option<lifeboat_hypervisor::qemu::net::DataplaneConfig> {
    name.as_ref()
        .map(|n| lifeboat_hypervisor::qemu::net::DataplaneConfig {
            name: n.clone(),
            fabric: fabric.clone(),
        })
}

async fn make_driver(
    kind: DriverKind,
    host: &str,
    state_dir: &Path,
    q: QemuOptions,
) -> anyhow::Result<Arc<dyn Hypervisor>> {
    std::fs::create_dir_all(state_dir)?;
    match kind {
        DriverKind::Fake => {
            let mut cfg = FakeConfig::from_env_with_hooks(host, q.test_hooks);
            cfg.state_file = Some(state_dir.join(format!("fake-{host}.json")));
            Ok(Arc::new(FakeDriver::new(cfg)))
        }
        DriverKind::Qemu => {
            if !qemu_installed() {
                bail!("--driver qemu: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)");
            }
            use lifeboat_hypervisor::qemu::{ProbeImage, QemuConfig, QemuDriver};
            let mut cfg = QemuConfig::new(state_dir, host);
            cfg.accel = q.accel.into();
            cfg.probe_image = q.guest_dir.as_deref().and_then(ProbeImage::in_dir);
            cfg.migration_address = q.migration_address.to_string();
            cfg.reserved_ram_mb = q.reserved_ram_mb;
            cfg.restore_copy_speed = q.restore_copy_speed;
            cfg.snapstore = q.snapstore.clone();
            cfg.dataplane = q.dataplane.clone();
            let d = QemuDriver::new(cfg)
                .await
                .map_err(|e| anyhow::anyhow!("starting the qemu driver: {e}"))?;
            eprintln!(
                "lifeboat: host {host}: accelerator {} ({})",
                d.accel().name(),
                d.accel_reason()
            );
            Ok(Arc::new(d))
        }
    }
}

/// Reads or creates the shared agent token (0600).
fn agent_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("agent-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
        eprintln!(
            "lifeboat: {} was empty: writing a new agent token",
            path.display()
        );
    }
    use rand_token::token;
    let t = token();
    lifeboat_engine::write_private(&path, t.as_bytes())?;
    Ok(t)
}

mod rand_token {
    /// 32 bytes from the operating system's generator, hex-encoded.
    pub fn token() -> String {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}

fn default_guest_dir() -> Option<PathBuf> {
    let mut cands = vec![PathBuf::from("guest/out")];
    if let Ok(exe) = std::env::current_exe() {
        for anc in exe.ancestors().skip(1).take(4) {
            cands.push(anc.join("guest/out"));
        }
    }
    cands.into_iter().find(|d| d.join("vmlinux").is_file())
}

/// Creates `dir` (and parents) if needed and makes it 0700: it holds the
/// database, credentials and tokens.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))?;
    Ok(())
}

/// Runs the manager.
pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    private_dir(&a.data_dir)?;
    let data_dir = a.data_dir.canonicalize()?;
    let db = a
        .database
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("lifeboat.db").display()));
    let store = lifeboat_store::Store::open(&db)
        .await
        .with_context(|| format!("opening database {}", redact(&db)))?;
    // One manager per database until multi-manager operation exists: a
    // second one would resume the same workflows and fight over servers.
    let _manager_lock = store.lock_manager().await.map_err(|e| {
        anyhow::anyhow!(
            "another `lifeboat serve` is already running on database {}: {e}; \
             stop it first (only one manager per database is supported)",
            redact(&db)
        )
    })?;
    let mut cfg = EngineConfig::new(data_dir.clone());
    cfg.reclaim_instance_interval = a.reclaim_instance_interval;
    cfg.shelved_offload_time = a.shelved_offload_time;
    cfg.sync_interval = std::time::Duration::from_secs(a.sync_interval.max(1));
    cfg.host_down_after = a.host_down_after.max(1);
    if let Some(loc) = a.snapstore.location()? {
        cfg.snapstore = loc;
    }
    // Open (create) the store now: a wrong key or an unreachable bucket is
    // said at start, not at the first backup.
    {
        let loc = cfg.snapstore.clone();
        tokio::task::spawn_blocking(move || loc.open())
            .await?
            .with_context(|| format!("opening the snapshot store {}", cfg.snapstore.describe()))?;
    }
    let hang_at = std::env::var("LIFEBOAT_TEST_HANG_AT").ok();
    if a.enable_test_hooks {
        eprintln!("lifeboat: warning: test hooks enabled (never in production)");
        cfg.hang_at = hang_at;
    } else if hang_at.is_some() {
        eprintln!(
            "lifeboat: warning: LIFEBOAT_TEST_HANG_AT ignored (test hooks are off; --enable-test-hooks)"
        );
    }
    let public = a
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", a.listen));
    cfg.serial_console_url = Some(format!(
        "{}/console/serial",
        public
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    ));
    let engine = Engine::new(store, cfg);
    if let Some(path) = engine.bootstrap_identity().await? {
        eprintln!(
            "lifeboat: first start: admin credentials written to {} (mode 0600)",
            path.display()
        );
    } else {
        eprintln!(
            "lifeboat: admin credentials are in {}",
            data_dir.join("admin-credentials.json").display()
        );
    }
    let guest_dir = a.guest_dir.clone().or_else(default_guest_dir);
    let guest = GuestImage {
        kernel: guest_dir
            .as_ref()
            .map(|d| d.join("vmlinux"))
            .filter(|p| p.is_file()),
        initrd: guest_dir
            .as_ref()
            .map(|d| d.join("initramfs.cpio.gz"))
            .filter(|p| p.is_file()),
    };
    engine.bootstrap_catalog(&guest).await?;
    // Default: real VMs when QEMU and the guest image are both there, the
    // fake driver otherwise (said once, so nobody mistakes it for real VMs).
    let driver = a.driver.unwrap_or_else(|| {
        if qemu_installed() && guest.kernel.is_some() {
            DriverKind::Qemu
        } else {
            eprintln!(
                "lifeboat: using the fake driver (no VMs): {} (pass --driver qemu to insist)",
                if qemu_installed() {
                    "no guest image found; run bash guest/build-image.sh or pass --guest-dir"
                } else {
                    "qemu-system-x86_64 is not installed; run scripts/setup.sh"
                }
            );
            DriverKind::Fake
        }
    });
    if driver == DriverKind::Qemu && guest.kernel.is_none() {
        eprintln!(
            "lifeboat: warning: no guest image found (run guest/build-image.sh or pass --guest-dir); servers cannot boot"
        );
    }
    let hv = make_driver(
        driver,
        &a.host_name,
        &data_dir.join("hosts").join(&a.host_name),
        QemuOptions {
            accel: a.accel,
            guest_dir: guest_dir.clone(),
            migration_address: a.migration_address,
            reserved_ram_mb: a.reserved_host_memory_mb,
            restore_copy_speed: a.restore_copy_speed,
            test_hooks: a.enable_test_hooks,
            snapstore: None,
            dataplane: dataplane_of(&a.dataplane, &a.fabric),
        },
    )
    .await?;
    engine
        .add_host(&a.host_name, "local", &a.availability_zone, hv)
        .await?;
    let token = agent_token(&data_dir)?;
    // The CA exists from the first start, so agents can be given ca.crt.
    let ca = lifeboat_agent::tls::ManagerCa::open_or_create(&data_dir.join("ca"))?;
    let agents = a
        .agents
        .iter()
        .map(|spec| agent_spec(&data_dir, spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client_id = ca.client_identity()?;
    for (name, url, pin) in &agents {
        let (name, url) = (name.as_str(), url.as_str());
        let tls = lifeboat_agent::tls::client_config(*pin, &client_id)?;
        let remote = Arc::new(lifeboat_agent::RemoteAgent::new(url, &token, tls));
        // An unreachable agent does not stop the manager: its host is
        // registered down, so its servers can be evacuated.
        let up = engine
            .add_host_or_down(name, url, &a.availability_zone, remote)
            .await
            .with_context(|| format!("agent {name} at {url}"))?;
        if !up {
            eprintln!(
                "lifeboat: warning: agent {name} at {url} is unreachable; host {name} is down"
            );
        }
    }
    engine.start().await?;

    let app = lifeboat_api_native::router(engine.clone())
        .merge(lifeboat_api_openstack::router(
            engine.clone(),
            public.clone(),
        ))
        .fallback(|uri: axum::http::Uri| async move {
            lifeboat_api_openstack::not_found(uri.path())
                .unwrap_or_else(lifeboat_api_native::not_found_response)
        });
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    eprintln!(
        "lifeboat: serving on {public} (driver {driver:?}, database {})",
        redact(&db)
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Runs a host agent.
pub async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    init_tracing();
    private_dir(&a.data_dir)?;
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("reading {}", a.token_file.display()))?
        .trim()
        .to_string();
    if token.is_empty() {
        bail!(
            "{} is empty: the agent token must be the manager's <data-dir>/agent-token",
            a.token_file.display()
        );
    }
    if a.enable_test_hooks {
        eprintln!("lifeboat agent: warning: test hooks enabled (never in production)");
    }
    let migration_address = a.migration_address.unwrap_or_else(|| {
        let ip = a.listen.ip();
        if ip.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            ip
        }
    });
    let qemu = QemuOptions {
        accel: a.accel,
        guest_dir: a.guest_dir.clone().or_else(default_guest_dir),
        migration_address,
        reserved_ram_mb: a.reserved_host_memory_mb,
        restore_copy_speed: a.restore_copy_speed,
        test_hooks: a.enable_test_hooks,
        snapstore: a.snapstore.location()?,
        dataplane: dataplane_of(&a.dataplane, &a.fabric),
    };
    let ca_pem = std::fs::read(&a.manager_ca).with_context(|| {
        format!(
            "reading --manager-ca {} (the manager's <data-dir>/ca/ca.crt)",
            a.manager_ca.display()
        )
    })?;
    let mut names = vec![a.name.clone()];
    if !a.listen.ip().is_unspecified() {
        names.push(a.listen.ip().to_string());
    }
    names.push(migration_address.to_string());
    names.extend(a.tls_names.iter().cloned());
    names.dedup();
    let tls_dir = a.tls_dir.clone().unwrap_or_else(|| a.data_dir.join("tls"));
    let id = lifeboat_agent::tls::Identity::agent_open_or_create(&tls_dir, &names)?;
    let tls = lifeboat_agent::tls::server_config(&id, &ca_pem)?;
    let hv = make_driver(a.driver, &a.name, &a.data_dir, qemu).await?;
    let app = lifeboat_agent::router(hv, token);
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    eprintln!(
        "lifeboat agent {}: certificate {} (on the manager: --agent {}=https://{},pin={})",
        a.name,
        id.fingerprint(),
        a.name,
        a.listen,
        id.fingerprint()
    );
    eprintln!("lifeboat agent {}: serving on https://{}", a.name, a.listen);
    lifeboat_agent::tls::serve(listener, tls, app, shutdown_signal()).await?;
    Ok(())
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("signal handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("lifeboat: shutting down");
}
