//! DHCP per network with dnsmasq (Debian's dnsmasq-base), as Neutron's DHCP agent runs it:
//! static ranges only (a guest gets exactly its port's fixed IP), host entries MAC -> IP,
//! hostname from the ports in `hosts`, options per subnet in `opts` (router, DNS, classless
//! static routes including 169.254.169.254/32 via the service address, MTU). Changes are written
//! to the files and dnsmasq re-reads them on SIGHUP.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ipnet::IpNet;

use crate::types::{Ipv6Mode, NetworkSpec, PortSpec};
use crate::{names, netns, Error};

/// The metadata service address.
pub const METADATA_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

/// A running dnsmasq for one network, in that network's service namespace.
pub struct Dnsmasq {
    child: Child,
    dir: PathBuf,
    ns: String,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tag(i: usize) -> String {
    format!("s{i}")
}

/// The dnsmasq configuration for a network.
pub fn config(dir: &Path, net: &NetworkSpec) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "port=0");
    let _ = writeln!(s, "interface={}", names::SERVICE_IF);
    let _ = writeln!(s, "bind-interfaces");
    let _ = writeln!(s, "except-interface=lo");
    let _ = writeln!(s, "no-hosts");
    let _ = writeln!(s, "no-resolv");
    let _ = writeln!(s, "no-ping");
    let _ = writeln!(s, "dhcp-authoritative");
    let _ = writeln!(s, "log-dhcp");
    let _ = writeln!(s, "log-facility={}", dir.join("dnsmasq.log").display());
    let _ = writeln!(s, "dhcp-leasefile={}", dir.join("leases").display());
    let _ = writeln!(s, "dhcp-hostsfile={}", dir.join("hosts").display());
    let _ = writeln!(s, "dhcp-optsfile={}", dir.join("opts").display());
    let mut v6 = false;
    for (i, sn) in net.subnets.iter().enumerate() {
        if !sn.enable_dhcp {
            continue;
        }
        match sn.cidr {
            IpNet::V4(n) => {
                let _ = writeln!(
                    s,
                    "dhcp-range=set:{},{},static,{},86400s",
                    tag(i),
                    n.network(),
                    n.netmask()
                );
            }
            IpNet::V6(n) => {
                v6 = true;
                let mode = match sn.ipv6_mode {
                    Ipv6Mode::Slaac => "ra-only",
                    Ipv6Mode::DhcpStateless => "ra-stateless",
                    Ipv6Mode::DhcpStateful => "static",
                };
                let _ = writeln!(
                    s,
                    "dhcp-range=set:{},{},{},{},86400s",
                    tag(i),
                    n.network(),
                    mode,
                    n.prefix_len()
                );
            }
        }
    }
    if v6 {
        let _ = writeln!(s, "enable-ra");
        // Advertise prefixes only: the service namespace is not a router (lifetime 0).
        let _ = writeln!(s, "ra-param={},10,0", names::SERVICE_IF);
    }
    s
}

/// The configuration of a router's RA-only dnsmasq.
pub fn router_ra_config(dir: &Path, ifaces: &[(String, ipnet::Ipv6Net)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "port=0");
    let _ = writeln!(s, "bind-interfaces");
    let _ = writeln!(s, "except-interface=lo");
    let _ = writeln!(s, "no-hosts");
    let _ = writeln!(s, "no-resolv");
    let _ = writeln!(s, "enable-ra");
    let _ = writeln!(s, "log-facility={}", dir.join("dnsmasq.log").display());
    for (i, (ifname, net)) in ifaces.iter().enumerate() {
        let _ = writeln!(s, "interface={ifname}");
        let _ = writeln!(
            s,
            "dhcp-range=set:r{i},{},ra-only,{},86400s",
            net.network(),
            net.prefix_len()
        );
        let _ = writeln!(s, "ra-param={ifname},10,1800");
    }
    s
}

/// The per-subnet options file.
pub fn opts(net: &NetworkSpec) -> String {
    let mut s = String::new();
    for (i, sn) in net.subnets.iter().enumerate() {
        if !sn.enable_dhcp {
            continue;
        }
        let t = tag(i);
        if sn.is_ipv4() {
            match sn.gateway_ip {
                Some(g) => {
                    let _ = writeln!(s, "tag:{t},option:router,{g}");
                }
                None => {
                    let _ = writeln!(s, "tag:{t},option:router");
                }
            }
            let dns: Vec<String> = sn
                .dns_nameservers
                .iter()
                .filter(|ip| ip.is_ipv4())
                .map(|ip| ip.to_string())
                .collect();
            if !dns.is_empty() {
                let _ = writeln!(s, "tag:{t},option:dns-server,{}", dns.join(","));
            }
            let mut routes = vec![format!("{METADATA_IP}/32,{}", sn.service_ip())];
            for (dst, via) in &sn.host_routes {
                if dst.addr().is_ipv4() {
                    routes.push(format!("{dst},{via}"));
                }
            }
            if let Some(g) = sn.gateway_ip {
                routes.push(format!("0.0.0.0/0,{g}"));
            }
            let _ = writeln!(
                s,
                "tag:{t},option:classless-static-route,{}",
                routes.join(",")
            );
            let _ = writeln!(s, "tag:{t},249,{}", routes.join(","));
            let _ = writeln!(s, "tag:{t},option:mtu,{}", net.mtu);
        } else {
            let dns: Vec<String> = sn
                .dns_nameservers
                .iter()
                .filter(|ip| ip.is_ipv6())
                .map(|ip| format!("[{ip}]"))
                .collect();
            if !dns.is_empty() {
                let _ = writeln!(s, "tag:{t},option6:dns-server,{}", dns.join(","));
            }
        }
    }
    s
}

/// A port's hostname for DHCP (`host-10-0-0-5` when it has none, as Neutron).
pub fn hostname(p: &PortSpec) -> String {
    if let Some(h) = &p.hostname {
        let clean: String = h
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(63)
            .collect();
        if !clean.is_empty() {
            return clean;
        }
    }
    match p.fixed_ips.first() {
        Some(ip) => format!("host-{}", ip.to_string().replace(['.', ':'], "-")),
        None => format!("host-{}", p.mac.to_string().replace(':', "")),
    }
}

/// The hosts file: `mac,hostname,ipv4,[ipv6]` per port of the network.
pub fn hosts(net: &NetworkSpec, ports: &[PortSpec]) -> String {
    let mut s = String::new();
    let mut sorted: Vec<&PortSpec> = ports.iter().filter(|p| p.network_id == net.id).collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for p in sorted {
        let mut fields = vec![p.mac.to_string(), hostname(p)];
        for ip in &p.fixed_ips {
            let in_dhcp = net
                .subnets
                .iter()
                .any(|sn| sn.enable_dhcp && sn.cidr.contains(ip));
            if !in_dhcp {
                continue;
            }
            match ip {
                IpAddr::V4(a) => fields.push(a.to_string()),
                IpAddr::V6(a) => fields.push(format!("[{a}]")),
            }
        }
        if fields.len() > 2 {
            let _ = writeln!(s, "{}", fields.join(","));
        }
    }
    s
}

fn write_if_changed(path: &Path, content: &str) -> Result<bool, Error> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)
        .map_err(|e| Error::Os(format!("write {}: {e}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::Os(format!("chmod {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::Os(format!("rename {}: {e}", path.display())))?;
    Ok(true)
}

/// A dnsmasq left running by an earlier agent process (it outlives the agent so DHCP goes on)
/// holds the port: stop it before starting ours.
pub(crate) fn stop_stale(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "dnsmasq" {
        return;
    }
    // SAFETY: kill(2) on a pid that our pid file names and that runs dnsmasq.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Dnsmasq {
    /// Write the files and start dnsmasq in namespace `ns`.
    pub fn start(
        ns: &str,
        dir: &Path,
        net: &NetworkSpec,
        ports: &[PortSpec],
    ) -> Result<Dnsmasq, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Os(format!("mkdir {}: {e}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::Os(format!("chmod {}: {e}", dir.display())))?;
        write_if_changed(&dir.join("dnsmasq.conf"), &config(dir, net))?;
        write_if_changed(&dir.join("hosts"), &hosts(net, ports))?;
        write_if_changed(&dir.join("opts"), &opts(net))?;
        Self::spawn(ns, dir)
    }

    /// Start dnsmasq in `ns` on `dir/dnsmasq.conf` (already written).
    fn spawn(ns: &str, dir: &Path) -> Result<Dnsmasq, Error> {
        stop_stale(&dir.join("pid"));
        let mut cmd = Command::new("dnsmasq");
        cmd.arg("--keep-in-foreground")
            .arg(format!(
                "--conf-file={}",
                dir.join("dnsmasq.conf").display()
            ))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        netns::command_in(ns, &mut cmd)?;
        let mut child = cmd.spawn().map_err(|e| {
            Error::Command(format!("start dnsmasq (is dnsmasq-base installed?): {e}"))
        })?;
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(Error::Command(format!(
                "dnsmasq in {ns} exited ({status}): {}",
                err.trim()
            )));
        }
        Ok(Dnsmasq {
            child,
            dir: dir.to_path_buf(),
            ns: ns.to_string(),
        })
    }

    /// Router advertisements only (no DHCP, no DNS) on a router's IPv6 interfaces
    /// `(interface, prefix)`: the router becomes the guests' IPv6 default router, as radvd in
    /// Neutron's router namespace.
    pub fn start_router_ra(
        ns: &str,
        dir: &Path,
        ifaces: &[(String, ipnet::Ipv6Net)],
    ) -> Result<Dnsmasq, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Os(format!("mkdir {}: {e}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::Os(format!("chmod {}: {e}", dir.display())))?;
        write_if_changed(&dir.join("dnsmasq.conf"), &router_ra_config(dir, ifaces))?;
        Self::spawn(ns, dir)
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Rewrite the host entries and options; SIGHUP dnsmasq when something changed. Returns
    /// whether it was reloaded. A change of the ranges (subnets) needs a restart: the caller
    /// compares configs with [`Dnsmasq::config_changed`].
    pub fn update(&mut self, net: &NetworkSpec, ports: &[PortSpec]) -> Result<bool, Error> {
        let a = write_if_changed(&self.dir.join("hosts"), &hosts(net, ports))?;
        let b = write_if_changed(&self.dir.join("opts"), &opts(net))?;
        if a || b {
            // SAFETY: kill(2) on our own child's pid.
            if unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) } != 0 {
                return Err(Error::Os(format!(
                    "SIGHUP dnsmasq in {}: {}",
                    self.ns,
                    std::io::Error::last_os_error()
                )));
            }
        }
        Ok(a || b)
    }

    /// Whether the network's ranges differ from the running configuration.
    pub fn config_changed(&self, net: &NetworkSpec) -> bool {
        std::fs::read_to_string(self.dir.join("dnsmasq.conf")).ok() != Some(config(&self.dir, net))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Directory with the configuration, hosts, options, leases and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SubnetSpec;

    fn net() -> NetworkSpec {
        NetworkSpec {
            id: "n1".into(),
            vni: 7,
            mtu: 1500,
            subnets: vec![
                SubnetSpec {
                    id: "s4".into(),
                    cidr: "10.1.0.0/24".parse().unwrap(),
                    gateway_ip: Some("10.1.0.1".parse().unwrap()),
                    enable_dhcp: true,
                    dns_nameservers: vec![],
                    host_routes: vec![],
                    dhcp_ip: None,
                    ipv6_mode: Ipv6Mode::Slaac,
                },
                SubnetSpec {
                    id: "s6".into(),
                    cidr: "fd00:1::/64".parse().unwrap(),
                    gateway_ip: None,
                    enable_dhcp: true,
                    dns_nameservers: vec![],
                    host_routes: vec![],
                    dhcp_ip: None,
                    ipv6_mode: Ipv6Mode::DhcpStateful,
                },
            ],
        }
    }

    #[test]
    fn files() {
        let n = net();
        let c = config(Path::new("/x"), &n);
        assert!(c.contains("dhcp-range=set:s0,10.1.0.0,static,255.255.255.0,86400s"));
        assert!(c.contains("dhcp-range=set:s1,fd00:1::,static,64,86400s"));
        assert!(c.contains("enable-ra"));
        let o = opts(&n);
        assert!(o.contains(
            "tag:s0,option:classless-static-route,169.254.169.254/32,10.1.0.254,0.0.0.0/0,10.1.0.1"
        ));
        let p = PortSpec {
            id: "p".into(),
            network_id: "n1".into(),
            mac: "fa:16:3e:00:00:01".parse().unwrap(),
            fixed_ips: vec!["10.1.0.5".parse().unwrap(), "fd00:1::5".parse().unwrap()],
            hostname: Some("vm one".into()),
            security_groups: vec![],
            port_security_enabled: true,
            allowed_address_pairs: vec![],
        };
        assert_eq!(
            hosts(&n, &[p]),
            "fa:16:3e:00:00:01,vm-one,10.1.0.5,[fd00:1::5]\n"
        );
    }
}
