//! `lifeboat server-group`: placement groups of servers (affinity,
//! anti-affinity and their soft forms) through the native API. A server
//! joins one at create with `lifeboat server create --group`.

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::{print_derived, print_object, rows};
use crate::ClientOpts;

/// A group's placement policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    /// All members on one host.
    Affinity,
    /// Members on different hosts (at most --max-per-host on one).
    AntiAffinity,
    /// Members preferably on one host.
    SoftAffinity,
    /// Members preferably on different hosts.
    SoftAntiAffinity,
}

impl Policy {
    fn wire(self) -> &'static str {
        match self {
            Policy::Affinity => "affinity",
            Policy::AntiAffinity => "anti-affinity",
            Policy::SoftAffinity => "soft-affinity",
            Policy::SoftAntiAffinity => "soft-anti-affinity",
        }
    }
}

/// Server group commands.
#[derive(Debug, Subcommand)]
pub enum ServerGroupCmd {
    /// List server groups.
    List {
        /// Every project's (admin).
        #[arg(long)]
        all_projects: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create a server group.
    Create {
        /// Name.
        name: String,
        /// Placement policy.
        #[arg(long, value_enum)]
        policy: Policy,
        /// anti-affinity only: most members on one host.
        #[arg(long)]
        max_per_host: Option<u32>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a server group and its members.
    Show {
        /// Group id or name.
        group: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a server group (its servers stay where they are).
    Delete {
        /// Group id or name.
        group: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// The id of the group named by id or (unique) name.
pub async fn resolve(c: &Client, key: &str) -> anyhow::Result<String> {
    let all = c.get("/api/v1/server-groups").await?;
    let groups = rows(&all);
    if let Some(g) = groups.iter().find(|g| g["id"] == key) {
        return Ok(g["id"].as_str().unwrap_or_default().to_string());
    }
    let named: Vec<&Value> = groups.iter().filter(|g| g["name"] == key).collect();
    match named.as_slice() {
        [g] => Ok(g["id"].as_str().unwrap_or_default().to_string()),
        // Not one of the caller's own: an id the API itself judges (an
        // admin may name any project's group).
        [] => Ok(crate::network::seg(key)),
        _ => bail!("more than one server group is named {key}: use its id"),
    }
}

const COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("POLICY", "/policy"),
    ("MAX_PER_HOST", "/max_server_per_host"),
    ("MEMBERS", "/_members"),
    ("PROJECT", "/project_id"),
];

/// `lifeboat server-group`.
pub async fn server_group(cmd: ServerGroupCmd) -> anyhow::Result<()> {
    use ServerGroupCmd as G;
    match cmd {
        G::List { all_projects, opts } => {
            let c = Client::login(&opts).await?;
            let path = if all_projects {
                "/api/v1/server-groups?all_projects=true"
            } else {
                "/api/v1/server-groups"
            };
            let l = c.get(path).await?;
            print_derived(
                opts.output,
                &l,
                |g| g["_members"] = json!(rows(&g["members"]).len()),
                COLS,
            );
        }
        G::Create {
            name,
            policy,
            max_per_host,
            opts,
        } => {
            if max_per_host.is_some() && policy != Policy::AntiAffinity {
                bail!("--max-per-host applies to --policy anti-affinity only");
            }
            let c = Client::login(&opts).await?;
            let mut body = json!({"name": name, "policy": policy.wire()});
            if let Some(n) = max_per_host {
                body["max_server_per_host"] = json!(n);
            }
            let g = c.post("/api/v1/server-groups", body).await?;
            print_object(opts.output, &g);
        }
        G::Show { group, opts } => {
            let c = Client::login(&opts).await?;
            let id = resolve(&c, &group).await?;
            let g = c.get(&format!("/api/v1/server-groups/{id}")).await?;
            print_object(opts.output, &g);
        }
        G::Delete { group, opts } => {
            let c = Client::login(&opts).await?;
            let id = resolve(&c, &group).await?;
            c.delete(&format!("/api/v1/server-groups/{id}")).await?;
            print_object(opts.output, &json!({"deleted": id}));
        }
    }
    Ok(())
}
