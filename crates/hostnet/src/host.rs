//! [`HostNetwork`]: one host agent's data plane, and the [`Fabric`] joining host agents.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::dhcp::{Dnsmasq, METADATA_IP};
use crate::firewall::{self, FilteredPort};
use crate::metadata::{self, MetadataServer, MetadataSource};
use crate::nl::Netlink;
use crate::types::{FloatingIp, MacAddr, NetworkSpec, PortSpec, RouterSpec, SecurityGroup};
use crate::{names, netns, nft, router, tap, Error};

/// VXLAN multicast group on the fabric.
const VXLAN_GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);
/// MTU of the fabric links: room for VXLAN's 50 bytes above any guest MTU up to 8950.
const FABRIC_MTU: u32 = 9000;

/// A network this host serves DHCP and metadata for, with the network's ports on other hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServedNetwork {
    pub network_id: String,
    #[serde(default)]
    pub remote_ports: Vec<PortSpec>,
}

/// Everything one host should have (see [`HostNetwork::sync`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DesiredState {
    #[serde(default)]
    pub networks: Vec<NetworkSpec>,
    #[serde(default)]
    pub security_groups: Vec<SecurityGroup>,
    /// Ports on taps (guest NICs of VMs on this host).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub served: Vec<ServedNetwork>,
    #[serde(default)]
    pub routers: Vec<RouterSpec>,
}

/// Options of a host agent's data plane.
#[derive(Clone, Default)]
pub struct HostOptions {
    /// Where dnsmasq's files live; default `/run/lifeboat/hostnet/<host>`.
    pub run_dir: Option<PathBuf>,
    /// Answers metadata requests; without it no metadata server is started.
    pub metadata: Option<Arc<dyn MetadataSource>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Attachment {
    Tap,
    Namespace(String),
}

struct PortState {
    spec: PortSpec,
    ifname: String,
    attachment: Attachment,
}

struct Service {
    ns: String,
    nl: Netlink,
    dnsmasq: Option<Dnsmasq>,
    metadata: Option<MetadataServer>,
    remote_ports: Vec<PortSpec>,
}

struct RouterState {
    spec: RouterSpec,
    ns: String,
    nl: Netlink,
    /// Router advertisements on the IPv6 interfaces.
    ra: Option<Dnsmasq>,
}

#[derive(Default)]
struct State {
    networks: HashMap<String, NetworkSpec>,
    ports: HashMap<String, PortState>,
    groups: HashMap<String, SecurityGroup>,
    indices: HashMap<String, u16>,
    services: HashMap<String, Service>,
    routers: HashMap<String, RouterState>,
    uplink: Option<Ipv4Addr>,
}

/// One host agent's networking, inside namespace `lbh-<host>`.
pub struct HostNetwork {
    host: String,
    ns: String,
    nl: Netlink,
    run_dir: PathBuf,
    metadata: Option<Arc<dyn MetadataSource>>,
    state: Mutex<State>,
}

/// Remove every namespace of host agent `host` (`lbh-<host>` and `lbh-<host>-*`) and its run
/// directory. The dnsmasq processes of its run directory (pid files) are stopped first, also
/// when the process that started them is gone (e.g. a killed host agent).
pub fn cleanup_host(host: &str) -> Result<(), Error> {
    names::check_host(host)?;
    if let Ok(dirs) = std::fs::read_dir(default_run_dir(host)) {
        for d in dirs.flatten() {
            crate::dhcp::stop_stale(&d.path().join("pid"));
        }
    }
    let main = names::host_ns(host);
    let prefix = format!("{main}-");
    let mut first_err = None;
    for ns in netns::list() {
        if ns == main || ns.starts_with(&prefix) {
            if let Err(e) = netns::delete(&ns) {
                first_err.get_or_insert(e);
            }
        }
    }
    let _ = std::fs::remove_dir_all(default_run_dir(host));
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn default_run_dir(host: &str) -> PathBuf {
    PathBuf::from("/run/lifeboat/hostnet").join(host)
}

fn prefix_len_of(ip: IpAddr, net: &ipnet::IpNet) -> u8 {
    let _ = ip;
    net.prefix_len()
}

impl HostNetwork {
    /// Open (creating if needed) the data plane of host agent `host`.
    pub async fn open(host: &str, opts: HostOptions) -> Result<HostNetwork, Error> {
        names::check_host(host)?;
        let ns = names::host_ns(host);
        netns::create(&ns)?;
        let nl = Netlink::open(&ns)?;
        nl.set_up("lo").await?;
        // Bridged IP traffic goes through the inet hooks (security groups); the host namespace
        // itself has no IPv6 addresses on the bridges and ports.
        if !std::path::Path::new("/proc/sys/net/bridge").exists() {
            // br_netfilter built as a module: load it (security groups need it).
            let _ = std::process::Command::new("modprobe")
                .arg("br_netfilter")
                .status();
        }
        netns::sysctl(&ns, "net/bridge/bridge-nf-call-iptables", "1").map_err(|e| {
            Error::Os(format!(
                "{e} (security groups need br_netfilter: modprobe br_netfilter)"
            ))
        })?;
        netns::sysctl(&ns, "net/bridge/bridge-nf-call-ip6tables", "1")?;
        netns::sysctl(&ns, "net/bridge/bridge-nf-call-arptables", "0")?;
        netns::sysctl(&ns, "net/ipv6/conf/default/disable_ipv6", "1")?;
        let hn = HostNetwork {
            host: host.to_string(),
            run_dir: opts.run_dir.unwrap_or_else(|| default_run_dir(host)),
            ns,
            nl,
            metadata: opts.metadata,
            state: Mutex::new(State::default()),
        };
        {
            let st = hn.state.lock().await;
            hn.render_firewall(&st)?;
        }
        Ok(hn)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host agent's namespace (`lbh-<host>`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// argv prefix that runs a program in the host namespace (QEMU with `-netdev
    /// tap,ifname=<tap>,script=no,downscript=no`).
    pub fn exec_prefix(&self) -> Vec<String> {
        netns::exec_prefix(&self.ns)
    }

    /// Open a queue fd of a port's tap for QEMU (`-netdev tap,fd=N,vnet_hdr=on`), so QEMU itself
    /// can stay in the root namespace.
    pub fn open_tap(&self, tap_name: &str) -> Result<OwnedFd, Error> {
        tap::open_queue(&self.ns, tap_name)
    }

    /// QEMU arguments for a port's NIC on a tap opened by QEMU itself inside the namespace
    /// (run QEMU with [`HostNetwork::exec_prefix`]).
    pub fn qemu_nic_args(port: &PortSpec, id: &str) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!(
                "tap,id={id},ifname={},script=no,downscript=no,vhost=off",
                names::tap(&port.id)
            ),
            "-device".into(),
            format!("virtio-net-pci,netdev={id},mac={}", port.mac),
        ]
    }

    /// Create or update a network's bridge (and its VXLAN device once the host joined a fabric).
    pub async fn ensure_network(&self, net: &NetworkSpec) -> Result<(), Error> {
        if net.vni == 0 || net.vni > 16_777_215 {
            return Err(Error::Invalid(format!(
                "segmentation id {} out of range 1-16777215",
                net.vni
            )));
        }
        if !(576..=8950).contains(&net.mtu) {
            return Err(Error::Invalid(format!(
                "MTU {} out of range 576-8950",
                net.mtu
            )));
        }
        let mut st = self.state.lock().await;
        if let Some(other) = st
            .networks
            .values()
            .find(|n| n.vni == net.vni && n.id != net.id)
        {
            return Err(Error::Invalid(format!(
                "segmentation id {} is used by network {}",
                net.vni, other.id
            )));
        }
        let br = names::bridge(net.vni);
        self.nl.ensure_bridge(&br, false).await?;
        self.nl.set_mtu(&br, net.mtu).await?;
        if st.uplink.is_some() {
            self.ensure_vxlan(net).await?;
        }
        st.networks.insert(net.id.clone(), net.clone());
        if st.services.contains_key(&net.id) {
            self.refresh_service(&mut st, &net.id).await?;
        }
        Ok(())
    }

    async fn ensure_vxlan(&self, net: &NetworkSpec) -> Result<(), Error> {
        let vx = names::vxlan(net.vni);
        self.nl
            .ensure_vxlan(&vx, net.vni, VXLAN_GROUP, names::UPLINK_IF, net.mtu)
            .await?;
        self.nl.set_mtu(&vx, net.mtu).await?;
        self.nl.set_master(&vx, &names::bridge(net.vni)).await?;
        self.nl.set_up(&vx).await
    }

    /// Remove a network from this host: its service namespace, bridge and VXLAN device. Ports
    /// still on it are removed too.
    pub async fn remove_network(&self, net_id: &str) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let Some(net) = st.networks.remove(net_id) else {
            return Ok(());
        };
        let ports: Vec<String> = st
            .ports
            .values()
            .filter(|p| p.spec.network_id == net_id)
            .map(|p| p.spec.id.clone())
            .collect();
        for p in ports {
            if let Some(ps) = st.ports.remove(&p) {
                self.nl.del_link(&ps.ifname).await?;
            }
            st.indices.remove(&p);
        }
        if let Some(svc) = st.services.remove(net_id) {
            let ns = svc.ns.clone();
            drop(svc);
            self.nl.del_link(&names::service_host_side(net.vni)).await?;
            netns::delete(&ns)?;
        }
        self.nl.del_link(&names::vxlan(net.vni)).await?;
        self.nl.del_link(&names::bridge(net.vni)).await?;
        self.render_firewall(&st)
    }

    fn network<'a>(st: &'a State, id: &str) -> Result<&'a NetworkSpec, Error> {
        st.networks
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("network {id} on this host")))
    }

    /// Create or update a port as a tap (for QEMU) with the port's MAC on the guest side (the
    /// tap itself carries [`MacAddr::host_side`]), on the network's bridge, filtered by its
    /// security groups. Returns the tap's name.
    pub async fn ensure_port(&self, port: &PortSpec) -> Result<String, Error> {
        self.attach_port(port, Attachment::Tap).await
    }

    /// Like [`HostNetwork::ensure_port`], but the port is a veth whose other end is `eth0` (with
    /// the port's MAC) in namespace `guest_ns` (created if missing): a namespace standing in for
    /// a guest (tests, benchmarks, containers). Returns the host-side interface name.
    pub async fn ensure_port_namespace(
        &self,
        port: &PortSpec,
        guest_ns: &str,
    ) -> Result<String, Error> {
        self.attach_port(port, Attachment::Namespace(guest_ns.to_string()))
            .await
    }

    async fn attach_port(&self, port: &PortSpec, att: Attachment) -> Result<String, Error> {
        let mut st = self.state.lock().await;
        let net = Self::network(&st, &port.network_id)?.clone();
        if let Some(other) = st
            .ports
            .values()
            .find(|p| p.spec.id != port.id && names::tap(&p.spec.id) == names::tap(&port.id))
        {
            return Err(Error::Invalid(format!(
                "port ids {} and {} share their first 11 characters",
                other.spec.id, port.id
            )));
        }
        let ifname = names::tap(&port.id);
        if let Some(old) = st.ports.get(&port.id) {
            if old.attachment != att {
                self.nl.del_link(&old.ifname).await?;
            }
        }
        match &att {
            Attachment::Tap => {
                // An existing tap may be held open by QEMU: TUNSETIFF would fail with EBUSY.
                if self.nl.link(&ifname).await?.is_none() {
                    tap::create_persistent(&self.ns, &ifname)?
                }
            }
            Attachment::Namespace(gns) => {
                netns::create(gns)?;
                if self.nl.link(&ifname).await?.is_none() {
                    let tmp = format!("lbt{}", names::hash8(&port.id));
                    self.nl.add_veth(&ifname, &tmp).await?;
                    self.nl.move_to(&tmp, gns, "eth0").await?;
                }
                let gnl = Netlink::open(gns)?;
                gnl.set_up("lo").await?;
                gnl.set_mac("eth0", port.mac).await?;
                gnl.set_mtu("eth0", net.mtu).await?;
                gnl.set_up("eth0").await?;
            }
        }
        self.nl.set_mac(&ifname, port.mac.host_side()).await?;
        self.nl.set_mtu(&ifname, net.mtu).await?;
        self.nl.set_master(&ifname, &names::bridge(net.vni)).await?;
        self.nl.set_up(&ifname).await?;
        if port.port_security_enabled {
            if !st.indices.contains_key(&port.id) {
                let used: std::collections::HashSet<u16> = st.indices.values().copied().collect();
                let idx = (1..=u16::MAX)
                    .find(|i| !used.contains(i))
                    .ok_or_else(|| Error::Invalid("too many filtered ports on this host".into()))?;
                st.indices.insert(port.id.clone(), idx);
            }
        } else {
            st.indices.remove(&port.id);
        }
        st.ports.insert(
            port.id.clone(),
            PortState {
                spec: port.clone(),
                ifname: ifname.clone(),
                attachment: att,
            },
        );
        self.render_firewall(&st)?;
        if st.services.contains_key(&port.network_id) {
            self.refresh_service(&mut st, &port.network_id).await?;
        }
        Ok(ifname)
    }

    /// Remove a port's tap (or veth) and its rules.
    pub async fn remove_port(&self, port_id: &str) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let Some(ps) = st.ports.remove(port_id) else {
            return Ok(());
        };
        st.indices.remove(port_id);
        self.nl.del_link(&ps.ifname).await?;
        self.render_firewall(&st)?;
        if st.services.contains_key(&ps.spec.network_id) {
            self.refresh_service(&mut st, &ps.spec.network_id).await?;
        }
        Ok(())
    }

    /// Replace the security groups (rules and members on all hosts) and re-apply every port's
    /// filter in one transaction.
    pub async fn apply_security_groups(&self, groups: &[SecurityGroup]) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        st.groups = groups.iter().map(|g| (g.id.clone(), g.clone())).collect();
        self.render_firewall(&st)
    }

    fn render_firewall(&self, st: &State) -> Result<(), Error> {
        let mut ports: Vec<FilteredPort<'_>> = st
            .ports
            .values()
            .filter_map(|p| {
                st.indices.get(&p.spec.id).map(|i| FilteredPort {
                    index: *i,
                    ifname: &p.ifname,
                    spec: &p.spec,
                })
            })
            .collect();
        ports.sort_by_key(|p| p.index);
        nft::apply(&self.ns, firewall::render(&ports, &st.groups))
    }

    /// Serve DHCP (dnsmasq) and, with a metadata source, the metadata service for a network
    /// from this host, in namespace `lbh-<host>-n<vni>`. Host entries are this host's ports of
    /// the network plus `remote_ports` (the network's ports on other hosts).
    pub async fn serve_network(
        &self,
        net_id: &str,
        remote_ports: &[PortSpec],
    ) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let net = Self::network(&st, net_id)?.clone();
        if !st.services.contains_key(net_id) {
            let ns = names::service_ns(&self.host, net.vni);
            netns::create(&ns)?;
            let nl = Netlink::open(&ns)?;
            nl.set_up("lo").await?;
            let host_side = names::service_host_side(net.vni);
            if self.nl.link(&host_side).await?.is_none() {
                let tmp = format!("lbs{}p", net.vni);
                self.nl.add_veth(&host_side, &tmp).await?;
                self.nl.move_to(&tmp, &ns, names::SERVICE_IF).await?;
            }
            self.nl.set_mtu(&host_side, net.mtu).await?;
            self.nl
                .set_master(&host_side, &names::bridge(net.vni))
                .await?;
            self.nl.set_up(&host_side).await?;
            nl.set_mac(
                names::SERVICE_IF,
                MacAddr::derived(&format!("{}/svc/{}", self.host, net.id)),
            )
            .await?;
            nl.set_mtu(names::SERVICE_IF, net.mtu).await?;
            nl.set_up(names::SERVICE_IF).await?;
            nl.add_addr(names::SERVICE_IF, IpAddr::V4(METADATA_IP), 32)
                .await?;
            st.services.insert(
                net_id.to_string(),
                Service {
                    ns,
                    nl,
                    dnsmasq: None,
                    metadata: None,
                    remote_ports: Vec::new(),
                },
            );
        }
        if let Some(svc) = st.services.get_mut(net_id) {
            svc.remote_ports = remote_ports.to_vec();
        }
        self.refresh_service(&mut st, net_id).await
    }

    /// Stop serving DHCP/metadata for a network here.
    pub async fn stop_serving(&self, net_id: &str) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        if let Some(svc) = st.services.remove(net_id) {
            let ns = svc.ns.clone();
            drop(svc);
            netns::delete(&ns)?;
        }
        if let Some(net) = st.networks.get(net_id) {
            self.nl.del_link(&names::service_host_side(net.vni)).await?;
        }
        Ok(())
    }

    /// Bring the service namespace in line with the network (addresses, dnsmasq's files and
    /// process, metadata server).
    async fn refresh_service(&self, st: &mut State, net_id: &str) -> Result<(), Error> {
        let net = Self::network(st, net_id)?.clone();
        let mut ports: Vec<PortSpec> = st
            .ports
            .values()
            .filter(|p| p.spec.network_id == net_id)
            .map(|p| p.spec.clone())
            .collect();
        let svc = st.services.get_mut(net_id).expect("caller checked");
        for p in &svc.remote_ports {
            if !ports.iter().any(|q| q.id == p.id) {
                ports.push(p.clone());
            }
        }
        let want: Vec<(IpAddr, u8)> = net
            .subnets
            .iter()
            .filter(|s| s.enable_dhcp)
            .map(|s| (s.service_ip(), prefix_len_of(s.service_ip(), &s.cidr)))
            .collect();
        let have = svc.nl.addrs(names::SERVICE_IF).await?;
        for (ip, _) in &have {
            let keep = *ip == IpAddr::V4(METADATA_IP)
                || want.iter().any(|(w, _)| w == ip)
                || matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
            if !keep {
                svc.nl.del_addr(names::SERVICE_IF, *ip).await?;
            }
        }
        for (ip, len) in &want {
            svc.nl.add_addr(names::SERVICE_IF, *ip, *len).await?;
        }
        let dir = self.run_dir.join(format!("dhcp-{}", net.vni));
        let needs_dhcp = !want.is_empty();
        let restart = match &mut svc.dnsmasq {
            Some(d) => !d.running() || d.config_changed(&net) || !needs_dhcp,
            None => needs_dhcp,
        };
        if restart {
            svc.dnsmasq = None;
            if needs_dhcp {
                svc.dnsmasq = Some(Dnsmasq::start(&svc.ns, &dir, &net, &ports)?);
            }
        } else if let Some(d) = &mut svc.dnsmasq {
            d.update(&net, &ports)?;
        }
        if svc.metadata.is_none() {
            if let Some(src) = &self.metadata {
                let addr = SocketAddr::new(IpAddr::V4(METADATA_IP), 80);
                svc.metadata = Some(metadata::serve_in(&svc.ns, addr, &net.id, src.clone()).await?);
            }
        }
        Ok(())
    }

    /// The dnsmasq of a network served here: (pid, directory with its files and log).
    pub async fn dhcp_info(&self, net_id: &str) -> Option<(u32, PathBuf)> {
        let st = self.state.lock().await;
        let d = st.services.get(net_id)?.dnsmasq.as_ref()?;
        Some((d.pid(), d.dir().to_path_buf()))
    }

    /// Create or update a router (its namespace, interfaces, gateway, NAT and floating IPs).
    pub async fn ensure_router(&self, spec: &RouterSpec) -> Result<(), Error> {
        router::validate(spec)?;
        let mut st = self.state.lock().await;
        self.apply_router(&mut st, spec).await
    }

    async fn apply_router(&self, st: &mut State, spec: &RouterSpec) -> Result<(), Error> {
        for i in &spec.interfaces {
            Self::network(st, &i.network_id)?;
        }
        if let Some(gw) = &spec.gateway {
            Self::network(st, &gw.network_id)?;
        }
        let ns = names::router_ns(&self.host, &spec.id);
        if !st.routers.contains_key(&spec.id) {
            netns::create(&ns)?;
            let nl = Netlink::open(&ns)?;
            nl.set_up("lo").await?;
            netns::sysctl(&ns, "net/ipv4/ip_forward", "1")?;
            netns::sysctl(&ns, "net/ipv6/conf/all/forwarding", "1")?;
            st.routers.insert(
                spec.id.clone(),
                RouterState {
                    spec: RouterSpec {
                        id: spec.id.clone(),
                        gateway: None,
                        interfaces: vec![],
                        floating_ips: vec![],
                    },
                    ns: ns.clone(),
                    nl,
                    ra: None,
                },
            );
        }
        let networks = st.networks.clone();
        let rs = st.routers.get_mut(&spec.id).expect("inserted");
        // Interfaces.
        let mut wanted_inside = Vec::new();
        for i in &spec.interfaces {
            let net = &networks[&i.network_id];
            let host_side = names::router_port_host_side(&spec.id, net.vni);
            let inside = names::router_port_inside(net.vni);
            wanted_inside.push(inside.clone());
            if rs.nl.link(&inside).await?.is_none() {
                self.nl.del_link(&host_side).await?;
                let tmp = format!("lbq{}p", names::hash8(&host_side));
                self.nl.add_veth(&host_side, &tmp).await?;
                self.nl.move_to(&tmp, &ns, &inside).await?;
            }
            self.nl.set_mtu(&host_side, net.mtu).await?;
            self.nl
                .set_master(&host_side, &names::bridge(net.vni))
                .await?;
            self.nl.set_up(&host_side).await?;
            let mac = i
                .mac
                .unwrap_or_else(|| MacAddr::derived(&format!("{}/qr/{}", spec.id, net.id)));
            rs.nl.set_mac(&inside, mac).await?;
            rs.nl.set_mtu(&inside, net.mtu).await?;
            rs.nl.set_up(&inside).await?;
            // One interface per network: the gateway addresses of all its subnets on it.
            let want: Vec<(IpAddr, u8)> = spec
                .interfaces
                .iter()
                .filter(|j| j.network_id == i.network_id)
                .map(|j| {
                    (
                        j.subnet.gateway_ip.expect("validated"),
                        j.subnet.cidr.prefix_len(),
                    )
                })
                .collect();
            for (ip, len) in rs.nl.addrs(&inside).await? {
                let link_local =
                    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !want.contains(&(ip, len)) && !link_local {
                    rs.nl.del_addr(&inside, ip).await?;
                }
            }
            for (ip, len) in &want {
                rs.nl.add_addr(&inside, *ip, *len).await?;
            }
        }
        for old in &rs.spec.interfaces {
            if let Some(net) = networks.get(&old.network_id) {
                let inside = names::router_port_inside(net.vni);
                if !wanted_inside.contains(&inside) {
                    rs.nl.del_link(&inside).await?;
                }
            }
        }
        // Gateway.
        match &spec.gateway {
            Some(gw) => {
                let net = &networks[&gw.network_id];
                let host_side = names::gateway_host_side(&spec.id);
                if rs.nl.link(names::GATEWAY_IF).await?.is_none() {
                    self.nl.del_link(&host_side).await?;
                    let tmp = format!("lbg{}p", names::hash8(&host_side));
                    self.nl.add_veth(&host_side, &tmp).await?;
                    self.nl.move_to(&tmp, &ns, names::GATEWAY_IF).await?;
                }
                self.nl.set_mtu(&host_side, net.mtu).await?;
                self.nl
                    .set_master(&host_side, &names::bridge(net.vni))
                    .await?;
                self.nl.set_up(&host_side).await?;
                let mac = gw
                    .mac
                    .unwrap_or_else(|| MacAddr::derived(&format!("{}/qg", spec.id)));
                rs.nl.set_mac(names::GATEWAY_IF, mac).await?;
                rs.nl.set_mtu(names::GATEWAY_IF, net.mtu).await?;
                rs.nl.set_up(names::GATEWAY_IF).await?;
                let mut want: Vec<(IpAddr, u8)> = vec![(gw.ip.addr(), gw.ip.prefix_len())];
                for f in &spec.floating_ips {
                    want.push((IpAddr::V4(f.floating_ip), 32));
                }
                for (ip, len) in rs.nl.addrs(names::GATEWAY_IF).await? {
                    let link_local =
                        matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                    if !want.contains(&(ip, len)) && !link_local {
                        rs.nl.del_addr(names::GATEWAY_IF, ip).await?;
                    }
                }
                for (ip, len) in &want {
                    rs.nl.add_addr(names::GATEWAY_IF, *ip, *len).await?;
                }
                if let Some(g) = gw.gateway_ip {
                    let default: ipnet::IpNet = if g.is_ipv4() {
                        "0.0.0.0/0".parse().expect("literal")
                    } else {
                        "::/0".parse().expect("literal")
                    };
                    rs.nl.replace_route(default, g).await?;
                }
            }
            None => {
                rs.nl.del_link(names::GATEWAY_IF).await?;
            }
        }
        nft::apply(&ns, router::render(spec))?;
        // IPv6: advertise the router on its IPv6 interfaces (restart when they change).
        let v6: Vec<(String, ipnet::Ipv6Net)> = spec
            .interfaces
            .iter()
            .filter_map(|i| match i.subnet.cidr {
                ipnet::IpNet::V6(n) => networks
                    .get(&i.network_id)
                    .map(|net| (names::router_port_inside(net.vni), n.trunc())),
                ipnet::IpNet::V4(_) => None,
            })
            .collect();
        let ra_dir = self.run_dir.join(format!("ra-{}", names::hash8(&spec.id)));
        let conf = crate::dhcp::router_ra_config(&ra_dir, &v6);
        let current = std::fs::read_to_string(ra_dir.join("dnsmasq.conf")).ok();
        let running = rs.ra.as_mut().map(|d| d.running()).unwrap_or(false);
        if v6.is_empty() {
            rs.ra = None;
        } else if !running || current.as_deref() != Some(conf.as_str()) {
            rs.ra = None;
            rs.ra = Some(Dnsmasq::start_router_ra(&ns, &ra_dir, &v6)?);
        }
        // Flows of floating IPs that changed or went away keep their old NAT in conntrack:
        // drop them so the next packet takes the new mapping.
        for old in &rs.spec.floating_ips {
            if !spec.floating_ips.contains(old) {
                router::flush_conntrack_mark(&ns, router::fip_mark(old.floating_ip))?;
            }
        }
        rs.spec = spec.clone();
        Ok(())
    }

    /// Remove a router and its namespace.
    pub async fn remove_router(&self, router_id: &str) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let Some(rs) = st.routers.remove(router_id) else {
            return Ok(());
        };
        // Delete the veths now (both ends go): the namespace itself may outlive its unmount
        // for a moment while the netlink socket closes.
        for i in &rs.spec.interfaces {
            if let Some(net) = st.networks.get(&i.network_id) {
                self.nl
                    .del_link(&names::router_port_host_side(router_id, net.vni))
                    .await?;
            }
        }
        self.nl
            .del_link(&names::gateway_host_side(router_id))
            .await?;
        let ns = rs.ns.clone();
        drop(rs);
        netns::delete(&ns)
    }

    /// Map (or re-map) a floating IP on a router to a fixed IP behind it.
    pub async fn set_floating_ip(&self, router_id: &str, fip: FloatingIp) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let mut spec = st
            .routers
            .get(router_id)
            .ok_or_else(|| Error::NotFound(format!("router {router_id}")))?
            .spec
            .clone();
        spec.floating_ips
            .retain(|f| f.floating_ip != fip.floating_ip);
        spec.floating_ips.push(fip);
        router::validate(&spec)?;
        self.apply_router(&mut st, &spec).await
    }

    /// Remove a floating IP from a router.
    pub async fn clear_floating_ip(
        &self,
        router_id: &str,
        floating_ip: Ipv4Addr,
    ) -> Result<(), Error> {
        let mut st = self.state.lock().await;
        let mut spec = st
            .routers
            .get(router_id)
            .ok_or_else(|| Error::NotFound(format!("router {router_id}")))?
            .spec
            .clone();
        spec.floating_ips.retain(|f| f.floating_ip != floating_ip);
        self.apply_router(&mut st, &spec).await
    }

    /// Join a fabric (the link between host agents on this machine): a veth from this host's
    /// namespace into the fabric's bridge, with an underlay address `169.254.0.<n>`; every
    /// network then gets a VXLAN device (VNI = segmentation id) on its bridge. Idempotent.
    pub async fn join_fabric(&self, fabric: &Fabric) -> Result<Ipv4Addr, Error> {
        let mut st = self.state.lock().await;
        let links = fabric.nl.links().await?;
        let mine = links
            .iter()
            .find(|l| l.name.starts_with("lbu") && l.alias.as_deref() == Some(&self.host));
        let idx: u8 = match mine {
            Some(l) => l.name[3..]
                .parse()
                .map_err(|_| Error::Invalid(format!("unexpected fabric port {}", l.name)))?,
            None => {
                let used: Vec<u8> = links
                    .iter()
                    .filter_map(|l| l.name.strip_prefix("lbu").and_then(|n| n.parse().ok()))
                    .collect();
                (1..=250u8)
                    .find(|i| !used.contains(i))
                    .ok_or_else(|| Error::Invalid("fabric is full (250 hosts)".into()))?
            }
        };
        let fport = names::fabric_port(idx);
        if self.nl.link(names::UPLINK_IF).await?.is_none() {
            fabric.nl.del_link(&fport).await?;
            let tmp = format!("lbx{idx}");
            fabric.nl.add_veth(&fport, &tmp).await?;
            fabric.nl.move_to(&tmp, &self.ns, names::UPLINK_IF).await?;
        }
        fabric.nl.set_alias(&fport, &self.host).await?;
        fabric.nl.set_mtu(&fport, FABRIC_MTU).await?;
        fabric.nl.set_master(&fport, names::FABRIC_BRIDGE).await?;
        fabric.nl.set_up(&fport).await?;
        let ip = Ipv4Addr::new(169, 254, 0, idx);
        self.nl.set_mtu(names::UPLINK_IF, FABRIC_MTU).await?;
        self.nl.set_up(names::UPLINK_IF).await?;
        self.nl
            .add_addr(names::UPLINK_IF, IpAddr::V4(ip), 24)
            .await?;
        st.uplink = Some(ip);
        let nets: Vec<NetworkSpec> = st.networks.values().cloned().collect();
        for n in &nets {
            self.ensure_vxlan(n).await?;
        }
        Ok(ip)
    }

    /// Bring the whole host to `want` in one call (what a host agent does at start and after
    /// each change it is told of): ensure every network, the security groups, every tap port,
    /// the served networks and the routers; remove the tap ports, served networks, routers and
    /// networks no longer wanted; then [`HostNetwork::prune`] leftovers of earlier processes.
    /// Ports attached to namespaces ([`HostNetwork::ensure_port_namespace`]) are left alone.
    pub async fn sync(&self, want: &DesiredState) -> Result<(), Error> {
        for r in &want.routers {
            router::validate(r)?;
        }
        for n in &want.networks {
            self.ensure_network(n).await?;
        }
        self.apply_security_groups(&want.security_groups).await?;
        for p in &want.ports {
            self.ensure_port(p).await?;
        }
        for s in &want.served {
            self.serve_network(&s.network_id, &s.remote_ports).await?;
        }
        for r in &want.routers {
            self.ensure_router(r).await?;
        }
        let (ports, served, routers, networks) = {
            let st = self.state.lock().await;
            (
                st.ports
                    .values()
                    .filter(|p| p.attachment == Attachment::Tap)
                    .filter(|p| !want.ports.iter().any(|w| w.id == p.spec.id))
                    .map(|p| p.spec.id.clone())
                    .collect::<Vec<_>>(),
                st.services
                    .keys()
                    .filter(|id| !want.served.iter().any(|s| &s.network_id == *id))
                    .cloned()
                    .collect::<Vec<_>>(),
                st.routers
                    .keys()
                    .filter(|id| !want.routers.iter().any(|r| &r.id == *id))
                    .cloned()
                    .collect::<Vec<_>>(),
                st.networks
                    .keys()
                    .filter(|id| !want.networks.iter().any(|n| &n.id == *id))
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        };
        for p in ports {
            self.remove_port(&p).await?;
        }
        for s in served {
            self.stop_serving(&s).await?;
        }
        for r in routers {
            self.remove_router(&r).await?;
        }
        for n in networks {
            self.remove_network(&n).await?;
        }
        self.prune().await?;
        Ok(())
    }

    /// Ids of the ports on this host with their interface names.
    pub async fn ports(&self) -> Vec<(String, String)> {
        let st = self.state.lock().await;
        let mut v: Vec<(String, String)> = st
            .ports
            .values()
            .map(|p| (p.spec.id.clone(), p.ifname.clone()))
            .collect();
        v.sort();
        v
    }

    /// After a restart of the agent: once everything wanted was ensured again, delete what an
    /// earlier process left that is no longer wanted (ports' taps and veths, service and
    /// router namespaces with their dnsmasq, bridges and VXLAN devices of unknown networks).
    /// Returns the names of what was removed.
    pub async fn prune(&self) -> Result<Vec<String>, Error> {
        let st = self.state.lock().await;
        let mut keep: std::collections::HashSet<String> = ["lo", names::UPLINK_IF]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for n in st.networks.values() {
            keep.insert(names::bridge(n.vni));
            keep.insert(names::vxlan(n.vni));
        }
        for p in st.ports.values() {
            keep.insert(p.ifname.clone());
        }
        let mut keep_ns: std::collections::HashSet<String> = std::collections::HashSet::new();
        keep_ns.insert(self.ns.clone());
        for (net_id, svc) in &st.services {
            keep_ns.insert(svc.ns.clone());
            if let Some(n) = st.networks.get(net_id) {
                keep.insert(names::service_host_side(n.vni));
            }
        }
        for (id, r) in &st.routers {
            keep_ns.insert(r.ns.clone());
            keep.insert(names::gateway_host_side(id));
            for i in &r.spec.interfaces {
                if let Some(n) = st.networks.get(&i.network_id) {
                    keep.insert(names::router_port_host_side(id, n.vni));
                }
            }
        }
        let mut removed = Vec::new();
        let prefix = format!("{}-", self.ns);
        for ns in netns::list() {
            if ns.starts_with(&prefix) && !keep_ns.contains(&ns) {
                if let Some(vni) = ns[prefix.len()..].strip_prefix('n') {
                    crate::dhcp::stop_stale(&self.run_dir.join(format!("dhcp-{vni}")).join("pid"));
                }
                netns::delete(&ns)?;
                removed.push(ns);
            }
        }
        // Interfaces: ours are the ones with Lifeboat's prefixes.
        for l in self.nl.links().await? {
            let ours = ["tap", "lbbr", "lbvx", "lbs", "lbq", "lbg", "lbt"]
                .iter()
                .any(|p| l.name.starts_with(p));
            if ours && !keep.contains(&l.name) {
                self.nl.del_link(&l.name).await?;
                removed.push(l.name);
            }
        }
        Ok(removed)
    }

    /// Stop serving, drop the state and delete all of this host agent's namespaces.
    pub async fn destroy(self) -> Result<(), Error> {
        let host = self.host.clone();
        drop(self);
        cleanup_host(&host)
    }
}

/// The namespace `lbf-<name>` with a bridge that host agents' uplinks plug into.
pub struct Fabric {
    name: String,
    ns: String,
    nl: Netlink,
}

impl Fabric {
    /// Open (creating if needed) a fabric.
    pub async fn open(name: &str) -> Result<Fabric, Error> {
        names::check_host(name)?;
        let ns = names::fabric_ns(name);
        netns::create(&ns)?;
        let nl = Netlink::open(&ns)?;
        nl.set_up("lo").await?;
        netns::sysctl(&ns, "net/ipv6/conf/default/disable_ipv6", "1")?;
        nl.ensure_bridge(names::FABRIC_BRIDGE, false).await?;
        Ok(Fabric {
            name: name.to_string(),
            ns,
            nl,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// Delete the fabric namespace (host uplinks go with it).
    pub fn destroy(self) -> Result<(), Error> {
        let ns = self.ns.clone();
        drop(self);
        netns::delete(&ns)
    }
}
