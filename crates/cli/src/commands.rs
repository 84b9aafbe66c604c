//! Client commands.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;
use crate::output::{print_derived, print_list, print_object};
use crate::{ClientOpts, OutputFormat};

const SERVER_COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("STATUS", "/status"),
    ("TASK", "/task_state"),
    ("POWER", "/power_state"),
    ("HOST", "/host"),
    ("FLAVOR", "/flavor/original_name"),
];

/// Options of actions that can wait for the server to settle.
#[derive(Debug, Args)]
pub struct Target {
    /// Server id or name.
    pub server: String,
    /// Wait until the action finishes, showing progress.
    #[arg(long)]
    pub wait: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// Server commands.
#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// Create a server.
    Create {
        /// Name.
        name: String,
        /// Flavor id or name.
        #[arg(long, default_value = "m1.nano")]
        flavor: String,
        /// Image id or name (default image when absent).
        #[arg(long)]
        image: Option<String>,
        /// Network id or name (repeatable).
        #[arg(long = "network")]
        networks: Vec<String>,
        /// Existing port id or name (repeatable): the server takes its MAC and fixed IPs.
        #[arg(long = "port")]
        ports: Vec<String>,
        /// Key pair name.
        #[arg(long)]
        key_name: Option<String>,
        /// Metadata `KEY=VALUE` (repeatable).
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// Number of servers.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Availability zone.
        #[arg(long)]
        availability_zone: Option<String>,
        /// Server group id or name to join (its policy places the server).
        #[arg(long)]
        group: Option<String>,
        /// Wait until ACTIVE.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List servers.
    List {
        /// Every project (admin).
        #[arg(long)]
        all_projects: bool,
        /// Status filter.
        #[arg(long)]
        status: Option<String>,
        /// Name filter (substring).
        #[arg(long)]
        name: Option<String>,
        /// Page size.
        #[arg(long)]
        limit: Option<i64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a server.
    Show(Target),
    /// Delete a server.
    Delete(Target),
    /// Reboot (soft, or hard with --hard).
    Reboot {
        #[command(flatten)]
        t: Target,
        /// Hard reboot.
        #[arg(long)]
        hard: bool,
    },
    /// Power off.
    Stop(Target),
    /// Power on.
    Start(Target),
    /// Pause.
    Pause(Target),
    /// Unpause.
    Unpause(Target),
    /// Suspend.
    Suspend(Target),
    /// Resume.
    Resume(Target),
    /// Leave rescue mode.
    Unrescue(Target),
    /// Shelve.
    Shelve(Target),
    /// Offload a shelved server.
    ShelveOffload(Target),
    /// Unshelve.
    Unshelve(Target),
    /// Confirm a resize.
    ConfirmResize(Target),
    /// Revert a resize.
    RevertResize(Target),
    /// Restore a soft-deleted server; with --backup, restore the server from a
    /// backup: its VM is replaced by one made from the snapshot, keeping the
    /// server's id and ports (MAC, fixed and floating IPs).
    Restore {
        #[command(flatten)]
        t: Target,
        /// Snapshot to restore from: a store snapshot id, or the id of a
        /// backup or snapshot image of the server.
        #[arg(long)]
        backup: Option<String>,
        /// Restore the whole disk before booting (default: boot at once from
        /// the store and copy the disk in the background).
        #[arg(long, requires = "backup")]
        full: bool,
    },
    /// Delete a soft-deleted server now.
    ForceDelete(Target),
    /// Inject an NMI.
    TriggerCrashDump(Target),
    /// Lock.
    Lock {
        #[command(flatten)]
        t: Target,
        /// Reason.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Unlock.
    Unlock(Target),
    /// Rescue.
    Rescue {
        #[command(flatten)]
        t: Target,
        /// Rescue image.
        #[arg(long)]
        image: Option<String>,
    },
    /// Resize to a flavor.
    Resize {
        #[command(flatten)]
        t: Target,
        /// Flavor id or name.
        #[arg(long)]
        flavor: String,
    },
    /// Rebuild from an image.
    Rebuild {
        #[command(flatten)]
        t: Target,
        /// Image id or name.
        #[arg(long)]
        image: String,
    },
    /// Cold-migrate (admin).
    Migrate {
        #[command(flatten)]
        t: Target,
        /// Target host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Live-migrate (admin).
    LiveMigrate {
        #[command(flatten)]
        t: Target,
        /// Target host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Rebuild on another host when its host is down (admin).
    Evacuate {
        #[command(flatten)]
        t: Target,
        /// Target host.
        #[arg(long)]
        host: Option<String>,
    },
    /// Snapshot the disk into an image.
    Image {
        #[command(flatten)]
        t: Target,
        /// Image name.
        #[arg(long)]
        name: String,
    },
    /// Back up the disk, keeping `rotation` backups of the type.
    Backup {
        #[command(flatten)]
        t: Target,
        /// Backup name.
        #[arg(long)]
        name: String,
        /// Backup type (daily, weekly, ...).
        #[arg(long = "type", default_value = "daily")]
        backup_type: String,
        /// Backups of this type to keep.
        #[arg(long, default_value_t = 1)]
        rotation: u32,
    },
    /// Set the admin password (read from LIFEBOAT_NEW_PASSWORD or stdin).
    SetPassword(Target),
    /// Reset the state to active or error (admin).
    ResetState {
        #[command(flatten)]
        t: Target,
        /// active or error.
        #[arg(long)]
        state: String,
    },
    /// Print the console log.
    Console {
        #[command(flatten)]
        t: Target,
        /// Last N lines.
        #[arg(long)]
        lines: Option<i64>,
    },
    /// Wait until the server settles.
    Wait(Target),
}

/// `lifeboat events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this server (id or name).
    #[arg(long)]
    pub server: Option<String>,
    /// Only this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Newest N.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Keep printing new events.
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[command(flatten)]
    pub opts: ClientOpts,
}

/// Workflow commands.
#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    /// Recent workflows.
    List {
        /// Only this server.
        #[arg(long)]
        server: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// One workflow with its steps.
    Show {
        /// Workflow id.
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Flavor commands.
#[derive(Debug, Subcommand)]
pub enum FlavorCmd {
    /// List flavors.
    List(ClientOptsOnly),
}

/// Image commands.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List images.
    List(ClientOptsOnly),
    /// Delete an image.
    Delete {
        /// Image id.
        id: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Host commands.
#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// List hosts.
    List(ClientOptsOnly),
}

/// Project commands.
#[derive(Debug, Subcommand)]
pub enum ProjectCmd {
    /// List projects.
    List(ClientOptsOnly),
    /// Create a project.
    Create {
        /// Name.
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// User commands.
#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user with a role on a project (password from LIFEBOAT_NEW_PASSWORD or stdin).
    Create {
        /// Name.
        name: String,
        /// Project name or id.
        #[arg(long = "in-project")]
        in_project: String,
        /// Role: reader, member or admin.
        #[arg(long, default_value = "member")]
        role: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Only the shared client options.
#[derive(Debug, Args)]
pub struct ClientOptsOnly {
    #[command(flatten)]
    opts: ClientOpts,
}

/// `lifeboat openstack-config`.
#[derive(Debug, Args)]
pub struct OpenstackConfigArgs {
    /// Cloud name in clouds.yaml.
    #[arg(long, default_value = "lifeboat")]
    pub cloud: String,
    #[command(flatten)]
    pub opts: ClientOpts,
}

async fn resolve(c: &Client, key: &str) -> anyhow::Result<String> {
    if key.len() == 36 && key.chars().filter(|ch| *ch == '-').count() == 4 {
        return Ok(key.to_string());
    }
    let list = c
        .get(&format!("/api/v1/servers?name={}", urlencode(key)))
        .await?;
    let matches: Vec<&Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == key)
        .collect();
    match matches.as_slice() {
        [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
        [] => bail!("no server named or with id {key}"),
        _ => bail!("{} servers are named {key}: use the id", matches.len()),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn read_secret(what: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("LIFEBOAT_NEW_PASSWORD") {
        return Ok(p);
    }
    eprintln!("{what}: ");
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    let s = s.trim_end_matches(['\r', '\n']).to_string();
    if s.is_empty() {
        bail!("empty {what}");
    }
    Ok(s)
}

/// Polls a server until it has no task (or is gone), with a progress spinner.
async fn wait(c: &Client, id: &str, fmt: OutputFormat, deleting: bool) -> anyhow::Result<Value> {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("template"),
    );
    if fmt == OutputFormat::Json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let s = match c.get(&format!("/api/v1/servers/{id}")).await {
            Ok(s) => s,
            Err(e) if deleting && e.to_string().contains("(404") => {
                pb.finish_with_message("deleted");
                return Ok(json!({"id": id, "status": "DELETED"}));
            }
            Err(e) => return Err(e),
        };
        let status = s["status"].as_str().unwrap_or("?").to_string();
        let task = s["task_state"].as_str().map(str::to_string);
        let mut step = String::new();
        if let Some(w) = s["task_workflow"].as_str() {
            if let Ok(wf) = c.get(&format!("/api/v1/workflows/{w}")).await {
                let steps = wf["steps"].as_array().cloned().unwrap_or_default();
                let done = steps.iter().filter(|x| x["state"] == "done").count();
                if let Some(cur) = steps.iter().find(|x| x["state"] == "running") {
                    step = format!(
                        " step {}/{} {}",
                        done + 1,
                        steps.len(),
                        cur["name"].as_str().unwrap_or("")
                    );
                }
            }
        }
        let msg = format!("{status} {}{step}", task.clone().unwrap_or_default());
        if msg != last {
            pb.set_message(msg.clone());
            if pb.is_hidden() && fmt == OutputFormat::Table {
                eprintln!("{msg}");
            }
            last = msg;
        }
        let settled = task.is_none() && status != "BUILD";
        if settled && (!deleting || status == "DELETED" || status == "SOFT_DELETED") {
            pb.finish_and_clear();
            if status == "ERROR" {
                let fault = s["fault"]["message"].as_str().unwrap_or("unknown fault");
                bail!("server {id} is in ERROR: {fault}");
            }
            return Ok(s);
        }
        if start.elapsed() > Duration::from_secs(1800) {
            bail!("gave up waiting after 30 minutes ({last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn act(t: Target, body: Value) -> anyhow::Result<()> {
    let c = Client::login(&t.opts).await?;
    let id = resolve(&c, &t.server).await?;
    let out = c
        .post(&format!("/api/v1/servers/{id}/actions"), body)
        .await?;
    if t.wait {
        let s = wait(&c, &id, t.opts.output, false).await?;
        print_object(t.opts.output, &s);
    } else {
        print_object(t.opts.output, &out);
    }
    Ok(())
}

/// `server restore --backup`: starts restore_backup; with --wait, shows the
/// workflow's steps, then a progress bar of the background copy until the
/// disk no longer needs the store, and prints the server.
async fn restore_backup(t: Target, snapshot: &str, full: bool) -> anyhow::Result<()> {
    let c = Client::login(&t.opts).await?;
    let id = resolve(&c, &t.server).await?;
    let out = c
        .post(
            &format!("/api/v1/servers/{id}/actions"),
            json!({"action": "restore_backup", "snapshot": snapshot, "instant": !full}),
        )
        .await?;
    if !t.wait {
        print_object(t.opts.output, &out);
        return Ok(());
    }
    let start = Instant::now();
    let mut s = wait(&c, &id, t.opts.output, false).await?;
    let usable = start.elapsed();
    if t.opts.output == OutputFormat::Table {
        eprintln!(
            "server {id} is {} after {:.1} s{}",
            s["status"].as_str().unwrap_or("?"),
            usable.as_secs_f64(),
            if full {
                ""
            } else {
                "; its disk is copied from the store in the background"
            }
        );
    }
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed:>4} [{bar:30}] {bytes}/{total_bytes} {msg}",
        )
        .expect("template")
        .progress_chars("=> "),
    );
    if t.opts.output == OutputFormat::Json || !std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut last_msg = String::new();
    loop {
        let r = &s["restore"];
        if r.is_null() || r["done"] == true {
            break;
        }
        pb.set_length(r["total"].as_u64().unwrap_or(0));
        pb.set_position(r["copied"].as_u64().unwrap_or(0));
        let msg = if r["copying"] == true {
            "copying from the store".to_string()
        } else {
            format!(
                "waiting for the copy to resume{}",
                r["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )
        };
        if msg != last_msg {
            pb.set_message(msg.clone());
            if pb.is_hidden() && t.opts.output == OutputFormat::Table {
                eprintln!("restore: {msg}");
            }
            last_msg = msg;
        }
        if start.elapsed() > Duration::from_secs(6 * 3600) {
            bail!("gave up waiting for the background copy after 6 hours");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        s = c.get(&format!("/api/v1/servers/{id}")).await?;
    }
    pb.finish_and_clear();
    if s["restore"]["done"] == true && t.opts.output == OutputFormat::Table {
        eprintln!(
            "restore complete: the disk is local after {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    print_object(t.opts.output, &s);
    Ok(())
}

/// Runs a server command.
pub async fn server(cmd: ServerCmd) -> anyhow::Result<()> {
    use ServerCmd as S;
    match cmd {
        S::Create { name, flavor, image, networks, ports, key_name, meta, count, availability_zone, group, wait: w, opts } => {
            let c = Client::login(&opts).await?;
            let mut hints = serde_json::Map::new();
            if let Some(g) = group {
                hints.insert("group".into(), json!(crate::server_group::resolve(&c, &g).await?));
            }
            let mut metadata = serde_json::Map::new();
            for m in meta {
                let (k, v) = m.split_once('=').ok_or_else(|| anyhow!("--meta {m}: expected KEY=VALUE"))?;
                metadata.insert(k.into(), json!(v));
            }
            let mut nets: Vec<Value> = networks.iter().map(|n| json!({"network_id": n})).collect();
            for p in &ports {
                let port = c.get(&format!("/api/v1/ports/{}", crate::network::seg(p))).await?;
                nets.push(json!({"port_id": port["id"]}));
            }
            let created = c
                .post(
                    "/api/v1/servers",
                    json!({"name": name, "flavor": flavor, "image": image, "networks": nets, "key_name": key_name,
                           "metadata": metadata, "min_count": count, "max_count": count,
                           "availability_zone": availability_zone, "scheduler_hints": hints}),
                )
                .await?;
            let list = created.as_array().cloned().unwrap_or_default();
            if w {
                let mut out = vec![];
                for cr in &list {
                    let id = cr["server"]["id"].as_str().unwrap_or_default();
                    let mut s = wait(&c, id, opts.output, false).await?;
                    s["admin_pass"] = cr["admin_pass"].clone();
                    out.push(s);
                }
                print_list(opts.output, &out, &[("ID", "/id"), ("NAME", "/name"), ("STATUS", "/status"), ("ADMIN_PASS", "/admin_pass")]);
            } else {
                print_list(
                    opts.output,
                    &list,
                    &[("ID", "/server/id"), ("NAME", "/server/name"), ("STATUS", "/server/status"), ("ADMIN_PASS", "/admin_pass")],
                );
            }
        }
        S::List { all_projects, status, name, limit, opts } => {
            let c = Client::login(&opts).await?;
            let mut q = vec![];
            if all_projects {
                q.push("all_projects=true".to_string());
            }
            if let Some(s) = status {
                q.push(format!("status={}", urlencode(&s)));
            }
            if let Some(n) = name {
                q.push(format!("name={}", urlencode(&n)));
            }
            if let Some(l) = limit {
                q.push(format!("limit={l}"));
            }
            let list = c.get(&format!("/api/v1/servers?{}", q.join("&"))).await?;
            print_list(opts.output, list.as_array().map(|v| v.as_slice()).unwrap_or(&[]), SERVER_COLS);
        }
        S::Show(t) => {
            let c = Client::login(&t.opts).await?;
            let id = resolve(&c, &t.server).await?;
            let s = c.get(&format!("/api/v1/servers/{id}")).await?;
            print_object(t.opts.output, &s);
        }
        S::Wait(t) => {
            let c = Client::login(&t.opts).await?;
            let id = resolve(&c, &t.server).await?;
            let s = wait(&c, &id, t.opts.output, false).await?;
            print_object(t.opts.output, &s);
        }
        S::Delete(t) => {
            let c = Client::login(&t.opts).await?;
            let id = resolve(&c, &t.server).await?;
            let out = c.call(reqwest::Method::DELETE, &format!("/api/v1/servers/{id}"), None).await?;
            if t.wait {
                let s = wait(&c, &id, t.opts.output, true).await?;
                print_object(t.opts.output, &s);
            } else {
                print_object(t.opts.output, &out);
            }
        }
        S::Reboot { t, hard } => act(t, json!({"action": "reboot", "hard": hard})).await?,
        S::Stop(t) => act(t, json!({"action": "stop"})).await?,
        S::Start(t) => act(t, json!({"action": "start"})).await?,
        S::Pause(t) => act(t, json!({"action": "pause"})).await?,
        S::Unpause(t) => act(t, json!({"action": "unpause"})).await?,
        S::Suspend(t) => act(t, json!({"action": "suspend"})).await?,
        S::Resume(t) => act(t, json!({"action": "resume"})).await?,
        S::Unrescue(t) => act(t, json!({"action": "unrescue"})).await?,
        S::Shelve(t) => act(t, json!({"action": "shelve"})).await?,
        S::ShelveOffload(t) => act(t, json!({"action": "shelve_offload"})).await?,
        S::Unshelve(t) => act(t, json!({"action": "unshelve"})).await?,
        S::ConfirmResize(t) => act(t, json!({"action": "confirm_resize"})).await?,
        S::RevertResize(t) => act(t, json!({"action": "revert_resize"})).await?,
        S::Restore { t, backup: None, .. } => act(t, json!({"action": "restore"})).await?,
        S::Restore { t, backup: Some(b), full } => restore_backup(t, &b, full).await?,
        S::ForceDelete(t) => act(t, json!({"action": "force_delete"})).await?,
        S::TriggerCrashDump(t) => act(t, json!({"action": "trigger_crash_dump"})).await?,
        S::Lock { t, reason } => act(t, json!({"action": "lock", "reason": reason})).await?,
        S::Unlock(t) => act(t, json!({"action": "unlock"})).await?,
        S::Rescue { t, image } => act(t, json!({"action": "rescue", "image": image})).await?,
        S::Resize { t, flavor } => act(t, json!({"action": "resize", "flavor": flavor})).await?,
        S::Rebuild { t, image } => act(t, json!({"action": "rebuild", "image": image})).await?,
        S::Migrate { t, host } => act(t, json!({"action": "migrate", "host": host})).await?,
        S::LiveMigrate { t, host } => act(t, json!({"action": "live_migrate", "host": host})).await?,
        S::Evacuate { t, host } => act(t, json!({"action": "evacuate", "host": host})).await?,
        S::Image { t, name } => act(t, json!({"action": "create_image", "name": name})).await?,
        S::Backup { t, name, backup_type, rotation } => {
            act(t, json!({"action": "create_backup", "name": name, "backup_type": backup_type, "rotation": rotation})).await?
        }
        S::SetPassword(t) => {
            let p = read_secret("new admin password")?;
            act(t, json!({"action": "change_password", "admin_pass": p})).await?
        }
        S::ResetState { t, state } => act(t, json!({"action": "reset_state", "state": state})).await?,
        S::Console { t, lines } => {
            let c = Client::login(&t.opts).await?;
            let id = resolve(&c, &t.server).await?;
            let out = c
                .post(&format!("/api/v1/servers/{id}/actions"), json!({"action": "console_output", "length": lines}))
                .await?;
            if t.opts.output == OutputFormat::Json {
                print_object(t.opts.output, &out);
            } else {
                print!("{}", out["output"].as_str().unwrap_or_default());
            }
        }
    }
    Ok(())
}

/// `lifeboat events`.
pub async fn events(a: EventsArgs) -> anyhow::Result<()> {
    let c = Client::login(&a.opts).await?;
    let server = match &a.server {
        Some(s) => Some(resolve(&c, s).await?),
        None => None,
    };
    let mut after: Option<i64> = None;
    loop {
        let mut q = vec![format!("limit={}", a.limit)];
        if let Some(s) = &server {
            q.push(format!("server_id={s}"));
        }
        if let Some(w) = &a.workflow {
            q.push(format!("workflow_id={w}"));
        }
        if let Some(x) = after {
            q.push(format!("after={x}"));
        }
        let evs = c.get(&format!("/api/v1/events?{}", q.join("&"))).await?;
        let rows = evs.as_array().cloned().unwrap_or_default();
        if let Some(last) = rows.last() {
            after = last["id"].as_i64();
        }
        if a.opts.output == OutputFormat::Json && a.follow {
            for r in &rows {
                println!("{r}");
            }
        } else if !rows.is_empty() || !a.follow {
            print_list(
                a.opts.output,
                &rows,
                &[
                    ("ID", "/id"),
                    ("TIME", "/time"),
                    ("LEVEL", "/level"),
                    ("SERVER", "/server_id"),
                    ("STEP", "/step"),
                    ("MESSAGE", "/message"),
                ],
            );
        }
        if !a.follow {
            return Ok(());
        }
        if after.is_none() {
            after = Some(0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `lifeboat workflow`.
pub async fn workflow(cmd: WorkflowCmd) -> anyhow::Result<()> {
    match cmd {
        WorkflowCmd::List { server, opts } => {
            let c = Client::login(&opts).await?;
            let path = match server {
                Some(s) => format!("/api/v1/servers/{}/workflows", resolve(&c, &s).await?),
                None => "/api/v1/workflows".into(),
            };
            let list = c.get(&path).await?;
            print_list(
                opts.output,
                list.as_array().map(|v| v.as_slice()).unwrap_or(&[]),
                &[
                    ("ID", "/id"),
                    ("KIND", "/kind"),
                    ("STATE", "/state"),
                    ("SERVER", "/server_id"),
                    ("CREATED", "/created_at"),
                    ("ERROR", "/error"),
                ],
            );
        }
        WorkflowCmd::Show { id, opts } => {
            let c = Client::login(&opts).await?;
            let w = c.get(&format!("/api/v1/workflows/{id}")).await?;
            if opts.output == OutputFormat::Json {
                print_object(opts.output, &w);
            } else {
                println!(
                    "{} {} {} ({})",
                    w["id"].as_str().unwrap_or(""),
                    w["kind"].as_str().unwrap_or(""),
                    w["state"].as_str().unwrap_or(""),
                    w["request_id"].as_str().unwrap_or("")
                );
                print_list(
                    opts.output,
                    w["steps"].as_array().map(|v| v.as_slice()).unwrap_or(&[]),
                    &[
                        ("STEP", "/name"),
                        ("STATE", "/state"),
                        ("ATTEMPTS", "/attempts"),
                        ("STARTED", "/started_at"),
                        ("FINISHED", "/finished_at"),
                    ],
                );
            }
        }
    }
    Ok(())
}

/// `lifeboat flavor`.
pub async fn flavor(cmd: FlavorCmd) -> anyhow::Result<()> {
    let FlavorCmd::List(o) = cmd;
    let c = Client::login(&o.opts).await?;
    let l = c.get("/api/v1/flavors").await?;
    print_list(
        o.opts.output,
        l.as_array().map(|v| v.as_slice()).unwrap_or(&[]),
        &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("VCPUS", "/vcpus"),
            ("RAM", "/ram"),
            ("DISK", "/disk"),
            ("EPHEMERAL", "/ephemeral"),
            ("SWAP", "/swap"),
        ],
    );
    Ok(())
}

/// `lifeboat image`.
pub async fn image(cmd: ImageCmd) -> anyhow::Result<()> {
    match cmd {
        ImageCmd::List(o) => {
            let c = Client::login(&o.opts).await?;
            let l = c.get("/api/v1/images").await?;
            print_list(
                o.opts.output,
                l.as_array().map(|v| v.as_slice()).unwrap_or(&[]),
                &[
                    ("ID", "/id"),
                    ("NAME", "/name"),
                    ("KIND", "/kind"),
                    ("STATUS", "/status"),
                    ("SIZE", "/size"),
                    ("SERVER", "/instance_uuid"),
                ],
            );
        }
        ImageCmd::Delete { id, opts } => {
            let c = Client::login(&opts).await?;
            c.call(
                reqwest::Method::DELETE,
                &format!("/api/v1/images/{id}"),
                None,
            )
            .await?;
            print_object(opts.output, &json!({"deleted": id}));
        }
    }
    Ok(())
}

/// `lifeboat host`.
pub async fn host(cmd: HostCmd) -> anyhow::Result<()> {
    let HostCmd::List(o) = cmd;
    let c = Client::login(&o.opts).await?;
    let l = c.get("/api/v1/hosts").await?;
    // Raw numbers (vcpus, MiB, GiB) stay as they are in JSON.
    let num = |r: &Value, p: &str| r.pointer(p).and_then(Value::as_u64);
    print_derived(
        o.opts.output,
        &l,
        |r| {
            let vcpus = num(r, "/capacity/vcpus").map(crate::output::human_count);
            let ram = num(r, "/capacity/ram_mb").map(crate::output::human_mib);
            let disk = num(r, "/capacity/disk_gb").map(|g| crate::output::human_mib(g * 1024));
            r["_vcpus"] = json!(vcpus);
            r["_ram"] = json!(ram);
            r["_disk"] = json!(disk);
        },
        &[
            ("NAME", "/name"),
            ("ENDPOINT", "/endpoint"),
            ("ZONE", "/availability_zone"),
            ("DRIVER", "/driver"),
            ("ACCEL", "/accelerator"),
            ("UP", "/up"),
            ("VCPUS", "/_vcpus"),
            ("RAM", "/_ram"),
            ("DISK", "/_disk"),
        ],
    );
    Ok(())
}

/// `lifeboat project`.
pub async fn project(cmd: ProjectCmd) -> anyhow::Result<()> {
    match cmd {
        ProjectCmd::List(o) => {
            let c = Client::login(&o.opts).await?;
            let l = c.get("/api/v1/projects").await?;
            print_list(
                o.opts.output,
                l.as_array().map(|v| v.as_slice()).unwrap_or(&[]),
                &[("ID", "/id"), ("NAME", "/name"), ("ENABLED", "/enabled")],
            );
        }
        ProjectCmd::Create { name, opts } => {
            let c = Client::login(&opts).await?;
            let p = c.post("/api/v1/projects", json!({"name": name})).await?;
            print_object(opts.output, &p);
        }
    }
    Ok(())
}

/// `lifeboat user`.
pub async fn user(cmd: UserCmd) -> anyhow::Result<()> {
    let UserCmd::Create {
        name,
        in_project,
        role,
        opts,
    } = cmd;
    let password = read_secret("password for the new user")?;
    let c = Client::login(&opts).await?;
    let u = c
        .post(
            "/api/v1/users",
            json!({"name": name, "password": password, "project": in_project, "role": role}),
        )
        .await?;
    print_object(opts.output, &u);
    Ok(())
}

/// `lifeboat openstack-config`: a clouds.yaml for this instance.
pub async fn openstack_config(a: OpenstackConfigArgs) -> anyhow::Result<()> {
    let path = a.opts.credentials.clone().unwrap_or_else(|| {
        std::path::PathBuf::from(
            std::env::var("LIFEBOAT_DATA_DIR").unwrap_or_else(|_| "lifeboat-data".into()),
        )
        .join("admin-credentials.json")
    });
    let (user, password, project) = match (&a.opts.user, &a.opts.password) {
        (Some(u), Some(p)) => (
            u.clone(),
            p.clone(),
            a.opts.project.clone().unwrap_or_else(|| "admin".into()),
        ),
        _ => {
            let c: Value = serde_json::from_str(
                &std::fs::read_to_string(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?,
            )?;
            (
                c["username"].as_str().unwrap_or_default().to_string(),
                c["password"].as_str().unwrap_or_default().to_string(),
                a.opts
                    .project
                    .clone()
                    .unwrap_or_else(|| c["project"].as_str().unwrap_or("admin").to_string()),
            )
        }
    };
    let url = a.opts.url.trim_end_matches('/');
    let doc = json!({
        "clouds": {
            a.cloud.clone(): {
                "auth": {
                    "auth_url": format!("{url}/identity/v3"),
                    "username": user,
                    "password": password,
                    "project_name": project,
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": "RegionOne",
                "identity_api_version": 3,
                "interface": "public",
            }
        }
    });
    if a.opts.output == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", to_yaml(&doc, 0));
    }
    Ok(())
}

/// A minimal YAML writer for nested maps of strings and numbers.
fn to_yaml(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            match val {
                Value::Object(_) => {
                    out.push_str(&format!("{pad}{k}:\n"));
                    out.push_str(&to_yaml(val, indent + 2));
                }
                Value::String(s) => out.push_str(&format!(
                    "{pad}{k}: {}\n",
                    serde_json::to_string(s).expect("json")
                )),
                other => out.push_str(&format!("{pad}{k}: {other}\n")),
            }
        }
    }
    out
}
