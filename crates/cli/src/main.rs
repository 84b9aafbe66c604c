//! `lifeboat`: the server (`lifeboat serve`), the host agent
//! (`lifeboat agent`) and the command-line client for the native API.

mod backup;
mod client;
mod commands;
mod network;
mod output;
mod serve;
mod server_group;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Output format of client commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable table.
    Table,
    /// JSON.
    Json,
}

/// Lifeboat keeps servers alive.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by client commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// Lifeboat URL.
    #[arg(
        long,
        env = "LIFEBOAT_URL",
        default_value = "http://127.0.0.1:8774",
        global = true
    )]
    pub url: String,
    /// Credentials file written by `lifeboat serve` (used when no --user).
    #[arg(long, env = "LIFEBOAT_CREDENTIALS", global = true)]
    pub credentials: Option<PathBuf>,
    /// User name.
    #[arg(long, env = "LIFEBOAT_USER", global = true)]
    pub user: Option<String>,
    /// Password.
    #[arg(long, env = "LIFEBOAT_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,
    /// Project name or id.
    #[arg(long, env = "LIFEBOAT_PROJECT", global = true)]
    pub project: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Lifeboat (API fronts, engine, in-process host agent).
    Serve(serve::ServeArgs),
    /// Run a host agent for a multi-host setup.
    Agent(serve::AgentArgs),
    /// Create (if needed) the manager's agent CA in a data dir and print the
    /// path of its certificate, which agents take as `--manager-ca`.
    Ca(serve::CaArgs),
    /// Manage servers.
    #[command(subcommand)]
    Server(commands::ServerCmd),
    /// Show the event log.
    Events(commands::EventsArgs),
    /// Show workflows.
    #[command(subcommand)]
    Workflow(commands::WorkflowCmd),
    /// List flavors.
    #[command(subcommand)]
    Flavor(commands::FlavorCmd),
    /// List images, snapshots and backups.
    #[command(subcommand)]
    Image(commands::ImageCmd),
    /// List hosts (admin).
    #[command(subcommand)]
    Host(commands::HostCmd),
    /// Manage projects (admin).
    #[command(subcommand)]
    Project(commands::ProjectCmd),
    /// Manage users (admin).
    #[command(subcommand)]
    User(commands::UserCmd),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage subnets.
    #[command(subcommand)]
    Subnet(network::SubnetCmd),
    /// Manage ports (endpoints: MAC and fixed IPs that outlive servers).
    #[command(subcommand)]
    Port(network::PortCmd),
    /// Manage floating IPs.
    #[command(subcommand)]
    FloatingIp(network::FloatingIpCmd),
    /// Manage security groups and their rules.
    #[command(subcommand)]
    SecurityGroup(network::SecurityGroupCmd),
    /// Manage routers: gateways to external networks and interfaces on subnets.
    #[command(subcommand)]
    Router(network::RouterCmd),
    /// Manage server groups (affinity and anti-affinity placement).
    #[command(subcommand)]
    ServerGroup(server_group::ServerGroupCmd),
    /// Print a clouds.yaml for the OpenStack clients.
    OpenstackConfig(commands::OpenstackConfigArgs),
    /// Snapshot store: create, list, show, restore, delete, verify, prune, gc, key create.
    Backup {
        #[command(flatten)]
        store: backup::StoreOpts,
        #[command(subcommand)]
        cmd: backup::BackupCmd,
    },
}

fn main() {
    let cli = Cli::parse();
    // The snapshot store is synchronous (rayon); it runs outside the Tokio runtime.
    let command = match cli.command {
        Command::Backup { store, cmd } => {
            if let Err(e) = backup::run(store, cmd) {
                eprintln!("error: {e:#}");
                std::process::exit(1);
            }
            return;
        }
        c => c,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        match command {
            Command::Serve(a) => serve::serve(a).await,
            Command::Agent(a) => serve::agent(a).await,
            Command::Ca(a) => serve::ca(a),
            Command::Server(c) => commands::server(c).await,
            Command::Events(a) => commands::events(a).await,
            Command::Workflow(c) => commands::workflow(c).await,
            Command::Flavor(c) => commands::flavor(c).await,
            Command::Image(c) => commands::image(c).await,
            Command::Host(c) => commands::host(c).await,
            Command::Project(c) => commands::project(c).await,
            Command::User(c) => commands::user(c).await,
            Command::Network(c) => network::network(c).await,
            Command::Subnet(c) => network::subnet(c).await,
            Command::Port(c) => network::port(c).await,
            Command::FloatingIp(c) => network::floating_ip(c).await,
            Command::SecurityGroup(c) => network::security_group(c).await,
            Command::Router(c) => network::router(c).await,
            Command::ServerGroup(c) => server_group::server_group(c).await,
            Command::OpenstackConfig(a) => commands::openstack_config(a).await,
            Command::Backup { .. } => unreachable!("handled before the runtime starts"),
        }
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
