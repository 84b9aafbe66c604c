//! `lifeboat network|subnet|port|floating-ip|security-group|router`: the
//! networking resources of the native API. Every resource is named by id
//! or name (a floating IP also by its address).

use clap::Subcommand;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::output::{print_derived, print_list, print_object, rows};
use crate::ClientOpts;

/// One path segment, percent-encoded (names may hold anything).
pub(crate) fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A JSON object of the options that were given.
fn body(pairs: Vec<(&str, Option<Value>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    }
    Value::Object(m)
}

/// Parses `subnet=ID,ip=ADDR` (either part optional) into a fixed IP.
fn fixed_ip(s: &str) -> anyhow::Result<Value> {
    let mut o = Map::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("subnet", v)) => {
                o.insert("subnet".into(), json!(v));
            }
            Some(("ip", v)) | Some(("ip_address", v)) => {
                o.insert("ip_address".into(), json!(v));
            }
            _ => anyhow::bail!("--fixed-ip takes subnet=ID_OR_NAME,ip=ADDRESS (got {part:?})"),
        }
    }
    if o.is_empty() {
        anyhow::bail!("--fixed-ip takes subnet=ID_OR_NAME,ip=ADDRESS");
    }
    Ok(Value::Object(o))
}

/// Parses `START-END` into an allocation pool.
fn pool(s: &str) -> anyhow::Result<Value> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("--pool takes START-END (got {s:?})"))?;
    Ok(json!({"start": a.trim(), "end": b.trim()}))
}

/// Network commands.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// List networks.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a network.
    Show {
        /// Id or name.
        network: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create a network.
    Create {
        /// Name.
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Visible to every project (admin).
        #[arg(long)]
        shared: bool,
        /// Carries floating IPs (admin).
        #[arg(long)]
        external: bool,
        /// MTU.
        #[arg(long)]
        mtu: Option<u32>,
        /// Ports of this network have no security groups or anti-spoofing.
        #[arg(long)]
        disable_port_security: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a network.
    Delete {
        /// Id or name.
        network: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

const NET_COLS: &[(&str, &str)] = &[
    ("ID", "/id"),
    ("NAME", "/name"),
    ("EXTERNAL", "/external"),
    ("SHARED", "/shared"),
    ("SUBNETS", "/subnets"),
];

/// `lifeboat network`.
pub async fn network(cmd: NetworkCmd) -> anyhow::Result<()> {
    match cmd {
        NetworkCmd::List { opts } => {
            let c = Client::login(&opts).await?;
            print_list(
                opts.output,
                rows(&c.get("/api/v1/networks").await?),
                NET_COLS,
            );
        }
        NetworkCmd::Show { network, opts } => {
            let c = Client::login(&opts).await?;
            let v = c
                .get(&format!("/api/v1/networks/{}", seg(&network)))
                .await?;
            print_object(opts.output, &v);
        }
        NetworkCmd::Create {
            name,
            description,
            shared,
            external,
            mtu,
            disable_port_security,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let b = body(vec![
                ("name", Some(json!(name))),
                ("description", description.map(Value::from)),
                ("shared", shared.then_some(json!(true))),
                ("external", external.then_some(json!(true))),
                ("mtu", mtu.map(Value::from)),
                (
                    "port_security_enabled",
                    disable_port_security.then_some(json!(false)),
                ),
            ]);
            print_object(opts.output, &c.post("/api/v1/networks", b).await?);
        }
        NetworkCmd::Delete { network, opts } => {
            let c = Client::login(&opts).await?;
            c.delete(&format!("/api/v1/networks/{}", seg(&network)))
                .await?;
            deleted(&opts, "network", &network);
        }
    }
    Ok(())
}

fn deleted(opts: &ClientOpts, what: &str, key: &str) {
    if opts.output == crate::OutputFormat::Json {
        println!("{}", json!({"deleted": what, "id": key}));
    } else {
        println!("deleted {what} {key}");
    }
}

/// Subnet commands.
#[derive(Debug, Subcommand)]
pub enum SubnetCmd {
    /// List subnets.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create a subnet.
    Create {
        /// Name.
        name: String,
        /// Network id or name.
        #[arg(long)]
        network: String,
        /// CIDR (`10.1.0.0/24`, `fd00::/64`).
        #[arg(long)]
        cidr: String,
        /// Gateway address (default: the first address).
        #[arg(long, conflicts_with = "no_gateway")]
        gateway: Option<String>,
        /// No gateway.
        #[arg(long)]
        no_gateway: bool,
        /// Allocation pool START-END (repeatable).
        #[arg(long = "pool")]
        pools: Vec<String>,
        /// DNS server (repeatable).
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// No DHCP on this subnet.
        #[arg(long)]
        no_dhcp: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a subnet.
    Delete {
        /// Id or name.
        subnet: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `lifeboat subnet`.
pub async fn subnet(cmd: SubnetCmd) -> anyhow::Result<()> {
    match cmd {
        SubnetCmd::List { opts } => {
            let c = Client::login(&opts).await?;
            print_list(
                opts.output,
                rows(&c.get("/api/v1/subnets").await?),
                &[
                    ("ID", "/id"),
                    ("NAME", "/name"),
                    ("NETWORK", "/network_id"),
                    ("CIDR", "/cidr"),
                    ("GATEWAY", "/gateway_ip"),
                    ("DHCP", "/enable_dhcp"),
                ],
            );
        }
        SubnetCmd::Create {
            name,
            network,
            cidr,
            gateway,
            no_gateway,
            pools,
            dns,
            no_dhcp,
            opts,
        } => {
            let pools = pools
                .iter()
                .map(|p| pool(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let c = Client::login(&opts).await?;
            let gateway = if no_gateway {
                Some(Value::Null)
            } else {
                gateway.map(Value::from)
            };
            let b = body(vec![
                ("name", Some(json!(name))),
                ("network", Some(json!(network))),
                ("cidr", Some(json!(cidr))),
                ("gateway_ip", gateway),
                (
                    "allocation_pools",
                    (!pools.is_empty()).then(|| json!(pools)),
                ),
                ("dns_nameservers", (!dns.is_empty()).then(|| json!(dns))),
                ("enable_dhcp", no_dhcp.then_some(json!(false))),
            ]);
            print_object(opts.output, &c.post("/api/v1/subnets", b).await?);
        }
        SubnetCmd::Delete { subnet, opts } => {
            let c = Client::login(&opts).await?;
            c.delete(&format!("/api/v1/subnets/{}", seg(&subnet)))
                .await?;
            deleted(&opts, "subnet", &subnet);
        }
    }
    Ok(())
}

/// Port commands.
#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// List ports.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a port.
    Show {
        /// Id or name.
        port: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create a port: a fixed endpoint (MAC, address) to give a server.
    Create {
        /// Name.
        name: String,
        /// Network id or name.
        #[arg(long)]
        network: String,
        /// MAC address (default: generated).
        #[arg(long)]
        mac: Option<String>,
        /// Fixed IP `subnet=ID_OR_NAME,ip=ADDRESS`, either part optional (repeatable).
        #[arg(long = "fixed-ip")]
        fixed_ips: Vec<String>,
        /// Security group id or name (repeatable; default: `default`).
        #[arg(long = "security-group")]
        security_groups: Vec<String>,
        /// No security groups or anti-spoofing on this port.
        #[arg(long)]
        disable_port_security: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Change a port.
    Set {
        /// Id or name.
        port: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// Replace the fixed IPs: `subnet=ID_OR_NAME,ip=ADDRESS` (repeatable).
        #[arg(long = "fixed-ip")]
        fixed_ips: Vec<String>,
        /// Replace the security groups (repeatable).
        #[arg(long = "security-group", conflicts_with = "no_security_group")]
        security_groups: Vec<String>,
        /// Remove every security group.
        #[arg(long)]
        no_security_group: bool,
        /// Port security on or off.
        #[arg(long)]
        port_security: Option<bool>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a port.
    Delete {
        /// Id or name.
        port: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `lifeboat port`.
pub async fn port(cmd: PortCmd) -> anyhow::Result<()> {
    match cmd {
        PortCmd::List { opts } => {
            let c = Client::login(&opts).await?;
            let l = c.get("/api/v1/ports").await?;
            print_derived(
                opts.output,
                &l,
                |p| {
                    let ips: Vec<Value> = rows(&p["fixed_ips"])
                        .iter()
                        .map(|f| f["ip_address"].clone())
                        .collect();
                    p["_ips"] = json!(ips);
                },
                &[
                    ("ID", "/id"),
                    ("NAME", "/name"),
                    ("MAC", "/mac_address"),
                    ("FIXED IPS", "/_ips"),
                    ("SERVER", "/server_id"),
                    ("STATUS", "/status"),
                ],
            );
        }
        PortCmd::Show { port, opts } => {
            let c = Client::login(&opts).await?;
            let v = c.get(&format!("/api/v1/ports/{}", seg(&port))).await?;
            print_object(opts.output, &v);
        }
        PortCmd::Create {
            name,
            network,
            mac,
            fixed_ips,
            security_groups,
            disable_port_security,
            opts,
        } => {
            let ips = fixed_ips
                .iter()
                .map(|f| fixed_ip(f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let c = Client::login(&opts).await?;
            let b = body(vec![
                ("name", Some(json!(name))),
                ("network", Some(json!(network))),
                ("mac_address", mac.map(Value::from)),
                ("fixed_ips", (!ips.is_empty()).then(|| json!(ips))),
                (
                    "security_groups",
                    (!security_groups.is_empty()).then(|| json!(security_groups)),
                ),
                (
                    "port_security_enabled",
                    disable_port_security.then_some(json!(false)),
                ),
            ]);
            print_object(opts.output, &c.post("/api/v1/ports", b).await?);
        }
        PortCmd::Set {
            port,
            name,
            fixed_ips,
            security_groups,
            no_security_group,
            port_security,
            opts,
        } => {
            let ips = fixed_ips
                .iter()
                .map(|f| fixed_ip(f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let groups = if no_security_group {
                Some(json!([]))
            } else {
                (!security_groups.is_empty()).then(|| json!(security_groups))
            };
            let b = body(vec![
                ("name", name.map(Value::from)),
                ("fixed_ips", (!ips.is_empty()).then(|| json!(ips))),
                ("security_groups", groups),
                ("port_security_enabled", port_security.map(Value::from)),
            ]);
            if b.as_object().is_some_and(|o| o.is_empty()) {
                anyhow::bail!("nothing to change: give --name, --fixed-ip, --security-group, --no-security-group or --port-security");
            }
            let c = Client::login(&opts).await?;
            let v = c
                .call(
                    reqwest::Method::PATCH,
                    &format!("/api/v1/ports/{}", seg(&port)),
                    Some(b),
                )
                .await?;
            print_object(opts.output, &v);
        }
        PortCmd::Delete { port, opts } => {
            let c = Client::login(&opts).await?;
            c.delete(&format!("/api/v1/ports/{}", seg(&port))).await?;
            deleted(&opts, "port", &port);
        }
    }
    Ok(())
}

/// Floating IP commands.
#[derive(Debug, Subcommand)]
pub enum FloatingIpCmd {
    /// List floating IPs.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a floating IP.
    Show {
        /// Id or address.
        floating_ip: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Allocate a floating IP.
    Create {
        /// External network id or name (default: the only external one).
        #[arg(long)]
        network: Option<String>,
        /// Address wanted.
        #[arg(long)]
        address: Option<String>,
        /// Port id or name to associate at once.
        #[arg(long)]
        port: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Map a floating IP onto a port (it follows the port to any server).
    Associate {
        /// Id or address.
        floating_ip: String,
        /// Port id or name.
        port: String,
        /// Fixed IP of the port, when it has several.
        #[arg(long)]
        fixed_ip: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Unmap a floating IP from its port.
    Disassociate {
        /// Id or address.
        floating_ip: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Release a floating IP.
    Delete {
        /// Id or address.
        floating_ip: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `lifeboat floating-ip`.
pub async fn floating_ip(cmd: FloatingIpCmd) -> anyhow::Result<()> {
    let patch = |c: Client, key: String, b: Value| async move {
        c.call(
            reqwest::Method::PATCH,
            &format!("/api/v1/floating-ips/{}", seg(&key)),
            Some(b),
        )
        .await
    };
    match cmd {
        FloatingIpCmd::List { opts } => {
            let c = Client::login(&opts).await?;
            print_list(
                opts.output,
                rows(&c.get("/api/v1/floating-ips").await?),
                &[
                    ("ID", "/id"),
                    ("ADDRESS", "/address"),
                    ("FIXED IP", "/fixed_ip_address"),
                    ("PORT", "/port_id"),
                    ("STATUS", "/status"),
                ],
            );
        }
        FloatingIpCmd::Show { floating_ip, opts } => {
            let c = Client::login(&opts).await?;
            let v = c
                .get(&format!("/api/v1/floating-ips/{}", seg(&floating_ip)))
                .await?;
            print_object(opts.output, &v);
        }
        FloatingIpCmd::Create {
            network,
            address,
            port,
            description,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let b = body(vec![
                ("network", network.map(Value::from)),
                ("address", address.map(Value::from)),
                ("port", port.map(Value::from)),
                ("description", description.map(Value::from)),
            ]);
            print_object(opts.output, &c.post("/api/v1/floating-ips", b).await?);
        }
        FloatingIpCmd::Associate {
            floating_ip,
            port,
            fixed_ip,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let b = body(vec![
                ("port", Some(json!(port))),
                ("fixed_ip_address", fixed_ip.map(Value::from)),
            ]);
            print_object(opts.output, &patch(c, floating_ip, b).await?);
        }
        FloatingIpCmd::Disassociate { floating_ip, opts } => {
            let c = Client::login(&opts).await?;
            let v = patch(c, floating_ip, json!({"port": null})).await?;
            print_object(opts.output, &v);
        }
        FloatingIpCmd::Delete { floating_ip, opts } => {
            let c = Client::login(&opts).await?;
            c.delete(&format!("/api/v1/floating-ips/{}", seg(&floating_ip)))
                .await?;
            deleted(&opts, "floating IP", &floating_ip);
        }
    }
    Ok(())
}

/// Security group commands.
#[derive(Debug, Subcommand)]
pub enum SecurityGroupCmd {
    /// List security groups.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a security group and its rules.
    Show {
        /// Id or name.
        group: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create a security group.
    Create {
        /// Name.
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a security group.
    Delete {
        /// Id or name.
        group: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Add a rule: `--protocol tcp --port 22 --remote-ip 0.0.0.0/0`.
    RuleAdd {
        /// Group id or name.
        group: String,
        /// Outgoing traffic (default: incoming).
        #[arg(long)]
        egress: bool,
        /// IPv6 (default IPv4).
        #[arg(long)]
        ipv6: bool,
        /// Protocol: tcp, udp, icmp or a number (default: any).
        #[arg(long)]
        protocol: Option<String>,
        /// Port or range `MIN:MAX` (tcp/udp), or ICMP `TYPE[:CODE]`.
        #[arg(long)]
        port: Option<String>,
        /// Remote prefix.
        #[arg(long)]
        remote_ip: Option<String>,
        /// Remote group id or name.
        #[arg(long, conflicts_with = "remote_ip")]
        remote_group: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a rule.
    RuleDelete {
        /// Rule id.
        rule: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Parses `N` or `MIN:MAX`.
fn port_range(s: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let num = |x: &str| {
        x.trim()
            .parse::<u32>()
            .map_err(|_| anyhow::anyhow!("--port takes N or MIN:MAX (got {s:?})"))
    };
    Ok(match s.split_once(':') {
        Some((a, b)) => (num(a)?, Some(num(b)?)),
        None => {
            let n = num(s)?;
            (n, Some(n))
        }
    })
}

/// `lifeboat security-group`.
pub async fn security_group(cmd: SecurityGroupCmd) -> anyhow::Result<()> {
    match cmd {
        SecurityGroupCmd::List { opts } => {
            let c = Client::login(&opts).await?;
            let l = c.get("/api/v1/security-groups").await?;
            print_derived(
                opts.output,
                &l,
                |g| g["_rules"] = json!(rows(&g["rules"]).len()),
                &[
                    ("ID", "/id"),
                    ("NAME", "/name"),
                    ("RULES", "/_rules"),
                    ("DESCRIPTION", "/description"),
                ],
            );
        }
        SecurityGroupCmd::Show { group, opts } => {
            let c = Client::login(&opts).await?;
            let v = c
                .get(&format!("/api/v1/security-groups/{}", seg(&group)))
                .await?;
            if opts.output == crate::OutputFormat::Json {
                print_object(opts.output, &v);
            } else {
                println!(
                    "{}  {}  {}",
                    v["id"].as_str().unwrap_or("-"),
                    v["name"].as_str().unwrap_or("-"),
                    v["description"].as_str().unwrap_or("")
                );
                print_list(
                    opts.output,
                    rows(&v["rules"]),
                    &[
                        ("RULE", "/id"),
                        ("DIRECTION", "/direction"),
                        ("ETHERTYPE", "/ethertype"),
                        ("PROTOCOL", "/protocol"),
                        ("MIN", "/port_range_min"),
                        ("MAX", "/port_range_max"),
                        ("REMOTE IP", "/remote_ip_prefix"),
                        ("REMOTE GROUP", "/remote_group_id"),
                    ],
                );
            }
        }
        SecurityGroupCmd::Create {
            name,
            description,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let b = body(vec![
                ("name", Some(json!(name))),
                ("description", description.map(Value::from)),
            ]);
            print_object(opts.output, &c.post("/api/v1/security-groups", b).await?);
        }
        SecurityGroupCmd::Delete { group, opts } => {
            let c = Client::login(&opts).await?;
            c.delete(&format!("/api/v1/security-groups/{}", seg(&group)))
                .await?;
            deleted(&opts, "security group", &group);
        }
        SecurityGroupCmd::RuleAdd {
            group,
            egress,
            ipv6,
            protocol,
            port,
            remote_ip,
            remote_group,
            description,
            opts,
        } => {
            let range = port.as_deref().map(port_range).transpose()?;
            let c = Client::login(&opts).await?;
            let b = body(vec![
                (
                    "direction",
                    Some(json!(if egress { "egress" } else { "ingress" })),
                ),
                ("ethertype", Some(json!(if ipv6 { "IPv6" } else { "IPv4" }))),
                ("protocol", protocol.map(Value::from)),
                ("port_range_min", range.map(|r| json!(r.0))),
                ("port_range_max", range.and_then(|r| r.1).map(Value::from)),
                ("remote_ip_prefix", remote_ip.map(Value::from)),
                ("remote_group", remote_group.map(Value::from)),
                ("description", description.map(Value::from)),
            ]);
            let v = c
                .post(&format!("/api/v1/security-groups/{}/rules", seg(&group)), b)
                .await?;
            print_object(opts.output, &v);
        }
        SecurityGroupCmd::RuleDelete { rule, opts } => {
            let c = Client::login(&opts).await?;
            c.delete(&format!("/api/v1/security-group-rules/{}", seg(&rule)))
                .await?;
            deleted(&opts, "security group rule", &rule);
        }
    }
    Ok(())
}

/// Router commands.
#[derive(Debug, Subcommand)]
pub enum RouterCmd {
    /// List routers.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a router, its gateway and interfaces.
    Show {
        /// Id or name.
        router: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Create a router.
    Create {
        /// Name.
        name: String,
        /// External network id or name for its gateway.
        #[arg(long)]
        external_network: Option<String>,
        /// No source NAT through the gateway.
        #[arg(long, requires = "external_network")]
        disable_snat: bool,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a router (remove its interfaces first).
    Delete {
        /// Id or name.
        router: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Connect a subnet (the router takes its gateway address) or a port.
    AddInterface {
        /// Router id or name.
        router: String,
        /// Subnet id or name.
        #[arg(long, required_unless_present = "port", conflicts_with = "port")]
        subnet: Option<String>,
        /// Port id or name.
        #[arg(long)]
        port: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Disconnect a subnet or a port.
    RemoveInterface {
        /// Router id or name.
        router: String,
        /// Subnet id or name.
        #[arg(long, required_unless_present = "port", conflicts_with = "port")]
        subnet: Option<String>,
        /// The interface's port id.
        #[arg(long)]
        port: Option<String>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Set the gateway on an external network, or remove it (`--clear`).
    SetGateway {
        /// Router id or name.
        router: String,
        /// External network id or name.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        network: Option<String>,
        /// Remove the gateway.
        #[arg(long)]
        clear: bool,
        /// No source NAT through the gateway.
        #[arg(long, conflicts_with = "clear")]
        disable_snat: bool,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// `lifeboat router`.
pub async fn router(cmd: RouterCmd) -> anyhow::Result<()> {
    let path = |r: &str| format!("/api/v1/routers/{}", seg(r));
    match cmd {
        RouterCmd::List { opts } => {
            let c = Client::login(&opts).await?;
            let l = c.get("/api/v1/routers").await?;
            print_derived(
                opts.output,
                &l,
                |r| {
                    r["_gateway"] = r["gateway"]["network_id"].clone();
                    r["_interfaces"] = json!(rows(&r["interfaces"]).len());
                },
                &[
                    ("ID", "/id"),
                    ("NAME", "/name"),
                    ("GATEWAY NETWORK", "/_gateway"),
                    ("INTERFACES", "/_interfaces"),
                ],
            );
        }
        RouterCmd::Show { router, opts } => {
            let c = Client::login(&opts).await?;
            print_object(opts.output, &c.get(&path(&router)).await?);
        }
        RouterCmd::Create {
            name,
            external_network,
            disable_snat,
            description,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let b = body(vec![
                ("name", Some(json!(name))),
                ("external_network", external_network.map(Value::from)),
                ("enable_snat", disable_snat.then_some(json!(false))),
                ("description", description.map(Value::from)),
            ]);
            print_object(opts.output, &c.post("/api/v1/routers", b).await?);
        }
        RouterCmd::Delete { router, opts } => {
            let c = Client::login(&opts).await?;
            c.delete(&path(&router)).await?;
            deleted(&opts, "router", &router);
        }
        RouterCmd::AddInterface {
            router,
            subnet,
            port,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let b = body(vec![
                ("subnet", subnet.map(Value::from)),
                ("port", port.map(Value::from)),
            ]);
            let v = c.post(&format!("{}/interfaces", path(&router)), b).await?;
            print_object(opts.output, &v);
        }
        RouterCmd::RemoveInterface {
            router,
            subnet,
            port,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let key = subnet.or(port).unwrap_or_default();
            let v = c
                .delete(&format!("{}/interfaces/{}", path(&router), seg(&key)))
                .await?;
            print_object(opts.output, &v);
        }
        RouterCmd::SetGateway {
            router,
            network,
            clear,
            disable_snat,
            opts,
        } => {
            let c = Client::login(&opts).await?;
            let b = if clear {
                json!({"external_network": null})
            } else {
                body(vec![
                    ("external_network", network.map(Value::from)),
                    ("enable_snat", Some(json!(!disable_snat))),
                ])
            };
            let v = c
                .call(reqwest::Method::PATCH, &path(&router), Some(b))
                .await?;
            print_object(opts.output, &v);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_or_say_what_they_take() {
        assert_eq!(
            fixed_ip("subnet=s1,ip=10.0.0.5").unwrap(),
            json!({"subnet": "s1", "ip_address": "10.0.0.5"})
        );
        assert_eq!(
            fixed_ip("ip=10.0.0.5").unwrap(),
            json!({"ip_address": "10.0.0.5"})
        );
        assert!(fixed_ip("10.0.0.5")
            .unwrap_err()
            .to_string()
            .contains("subnet=ID_OR_NAME"));
        assert_eq!(
            pool("10.0.0.10-10.0.0.20").unwrap(),
            json!({"start": "10.0.0.10", "end": "10.0.0.20"})
        );
        assert!(pool("10.0.0.10").is_err());
        assert_eq!(port_range("22").unwrap(), (22, Some(22)));
        assert_eq!(port_range("1000:2000").unwrap(), (1000, Some(2000)));
        assert!(port_range("ssh").is_err());
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }
}
