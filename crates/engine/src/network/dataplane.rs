//! From the network records to each host's data plane: the engine computes the whole desired
//! state of every host ([`lifeboat_hypervisor::HostNetState`]: networks, security groups, the
//! taps of the ports of the servers on that host, the DHCP/metadata services and routers of
//! the networks that host serves, and the metadata of the instances behind those addresses)
//! and pushes it through the host agent (`net_sync`). The manager never touches a network
//! itself.
//!
//! - Every network gets a segmentation id (VXLAN VNI, `net_segment` record, from a counter).
//! - One host serves every network (DHCP, metadata, routers): the first up host by name. The
//!   other hosts reach it over the fabric (VXLAN).
//! - A port without Neutron attributes (made by Nova's create) is in its project's `default`
//!   security group, as Neutron gives it.
//! - Pushes are cached per host: an unchanged state is not sent again. The periodic task
//!   pushes too, so a change made through the Networking API reaches the hosts within one
//!   sync interval; workflow steps push at once where a VM needs its taps (define, live
//!   migration, evacuation) or releases them (delete).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use lifeboat_core::{FloatingIp, Network, Port, Server};
use lifeboat_hostnet as hn;
use lifeboat_hypervisor::{HostNetState, MetadataEntry};
use lifeboat_store::{Record, StoreError};
use serde::{Deserialize, Serialize};

use super::neutron::{
    FloatingIpAttrs, NetworkAttrs, PortAttrs, Router, SecurityGroupRule, Subnet,
    OWNER_ROUTER_INTERFACE,
};
use crate::{ComputeError, Engine};

/// A network's segmentation id (VXLAN VNI and bridge name on every host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSegment {
    /// Network id.
    pub id: String,
    /// VNI, 1..=16777215.
    pub vni: u32,
}

impl Record for NetSegment {
    const KIND: &'static str = "net_segment";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// What was last pushed to each host, and which pushes it served.
#[derive(Default)]
pub(crate) struct DataplaneCache {
    pushed: tokio::sync::Mutex<Pushed>,
    /// Pushes asked for so far (see [`Engine::sync_dataplane_with`]).
    requested: AtomicU64,
    /// Hosts whose agent answered the last push it was sent with "no data plane here"
    /// (`net_sync` false: the fake, a qemu host without `--net`): their VMs' NICs are not
    /// taps, so a VM defined there waits for no push.
    planeless: std::sync::Mutex<HashSet<String>>,
    /// Servers moving to another host (live migration, resize, evacuation): server id ->
    /// destination. Their ports are on both hosts until the move is done, so that no push
    /// in between (the periodic task) takes the incoming VM's taps away.
    moving: std::sync::Mutex<HashMap<String, String>>,
}

/// The last push round.
#[derive(Default)]
struct Pushed {
    /// The state last pushed to each host.
    hosts: HashMap<String, HostNetState>,
    /// The request count read before the last finished round read the records: every
    /// request counted up to it was served by that round.
    served: u64,
    /// That round's errors, per host.
    errors: BTreeMap<String, ComputeError>,
}

/// Everything read once per computation.
struct World {
    nets: Vec<Network>,
    specs: BTreeMap<String, hn::NetworkSpec>,
    /// Port id -> (port, spec, host of its server).
    ports: Vec<(Port, hn::PortSpec, Option<String>, Option<Server>)>,
    groups: Vec<hn::SecurityGroup>,
    routers: Vec<hn::RouterSpec>,
}

fn rule_of(r: &SecurityGroupRule) -> Option<hn::SecurityGroupRule> {
    let direction = match r.direction.as_str() {
        "ingress" => hn::Direction::Ingress,
        "egress" => hn::Direction::Egress,
        _ => return None,
    };
    let ethertype = if r.ethertype.eq_ignore_ascii_case("ipv6") {
        hn::EtherType::IPv6
    } else {
        hn::EtherType::IPv4
    };
    let protocol = match r
        .protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("any") | Some("") => None,
        Some("tcp") | Some("6") => Some(hn::Protocol::Tcp),
        Some("udp") | Some("17") => Some(hn::Protocol::Udp),
        Some("icmp") | Some("1") | Some("ipv6-icmp") | Some("icmpv6") | Some("58") => {
            Some(hn::Protocol::Icmp)
        }
        Some(n) => Some(hn::Protocol::Number(n.parse().ok()?)),
    };
    let remote = match (&r.remote_ip_prefix, &r.remote_group_id) {
        (Some(p), _) => hn::Remote::Cidr(p.parse().ok()?),
        (None, Some(g)) => hn::Remote::Group(g.clone()),
        (None, None) => hn::Remote::Any,
    };
    Some(hn::SecurityGroupRule {
        direction,
        ethertype,
        protocol,
        port_range_min: r.port_range_min.and_then(|v| u16::try_from(v).ok()),
        port_range_max: r.port_range_max.and_then(|v| u16::try_from(v).ok()),
        remote,
    })
}

fn subnet_spec(s: &Subnet) -> Option<hn::SubnetSpec> {
    Some(hn::SubnetSpec {
        id: s.id.clone(),
        cidr: s.cidr.parse().ok()?,
        gateway_ip: s.gateway_ip.as_deref().and_then(|g| g.parse().ok()),
        enable_dhcp: s.enable_dhcp,
        dns_nameservers: s
            .dns_nameservers
            .iter()
            .filter_map(|d| d.parse().ok())
            .collect(),
        host_routes: s
            .host_routes
            .iter()
            .filter_map(|r| Some((r.destination.parse().ok()?, r.nexthop.parse().ok()?)))
            .collect(),
        dhcp_ip: None,
        ipv6_mode: match s.ipv6_address_mode.as_deref().or(s.ipv6_ra_mode.as_deref()) {
            Some("slaac") => hn::Ipv6Mode::Slaac,
            Some("dhcpv6-stateless") => hn::Ipv6Mode::DhcpStateless,
            _ => hn::Ipv6Mode::DhcpStateful,
        },
    })
}

impl Engine {
    /// The segmentation id of a network (allocated on first use).
    pub async fn network_vni(&self, network_id: &str) -> Result<u32, ComputeError> {
        if let Some(s) = self.inner.store.get::<NetSegment>(network_id).await? {
            return Ok(s.vni);
        }
        let k = self.inner.store.next_counter("vni").await?;
        let seg = NetSegment {
            id: network_id.to_string(),
            vni: (((k - 1) as u64 % 16_777_214) + 1) as u32,
        };
        match self.inner.store.insert(&seg).await {
            Ok(()) => Ok(seg.vni),
            Err(StoreError::Duplicate(_)) => Ok(self
                .inner
                .store
                .must_get::<NetSegment>(network_id)
                .await?
                .vni),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_world(&self) -> Result<World, ComputeError> {
        let store = &self.inner.store;
        let nets: Vec<Network> = store.list().await?;
        let mut specs = BTreeMap::new();
        for n in &nets {
            let subnets: Vec<Subnet> = store.list_by_owner(&n.id).await?;
            let attrs: Option<NetworkAttrs> = store.get(&n.id).await?;
            let mut subnet_specs = vec![];
            for sn in &subnets {
                let Some(mut spec) = subnet_spec(sn) else {
                    continue;
                };
                // The service answers from the subnet's DHCP port (dhcp_ports.rs).
                spec.dhcp_ip = store
                    .get::<Port>(&super::dhcp_ports::dhcp_port_id(&sn.id))
                    .await?
                    .and_then(|p| p.fixed_ip.parse().ok());
                subnet_specs.push(spec);
            }
            specs.insert(
                n.id.clone(),
                hn::NetworkSpec {
                    id: n.id.clone(),
                    vni: self.network_vni(&n.id).await?,
                    subnets: subnet_specs,
                    mtu: attrs.map(|a| a.mtu).unwrap_or(1500).clamp(576, 8950),
                },
            );
        }
        // Bulk reads: the ports, their attributes and their servers in a few queries (one
        // query per port made a push cost thousands of queries with thousands of servers).
        let all_ports: Vec<Port> = store.list().await?;
        let mut all_attrs: HashMap<String, PortAttrs> = store
            .list::<PortAttrs>()
            .await?
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        let mut sids: Vec<String> = all_ports
            .iter()
            .filter_map(|p| p.server_id.clone())
            .collect();
        sids.sort();
        sids.dedup();
        let servers: HashMap<String, Server> = store
            .get_servers(&sids)
            .await?
            .into_iter()
            .filter(|s| s.deleted_at.is_none())
            .map(|s| (s.id.clone(), s))
            .collect();
        let mut ports = Vec::new();
        let mut members: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        let mut default_groups: BTreeMap<String, String> = BTreeMap::new();
        let mut router_ports: HashMap<String, PortAttrs> = HashMap::new();
        for p in all_ports {
            let attrs: Option<PortAttrs> = all_attrs.remove(&p.id);
            if let Some(a) = &attrs {
                if a.device_owner == OWNER_ROUTER_INTERFACE {
                    router_ports.insert(p.id.clone(), a.clone());
                }
            }
            let server = p
                .server_id
                .as_ref()
                .and_then(|sid| servers.get(sid).cloned());
            let Ok(mac) = p.mac_address.parse::<hn::MacAddr>() else {
                continue;
            };
            let mut fixed_ips: Vec<IpAddr> = p.fixed_ip.parse().ok().into_iter().collect();
            let groups = match &attrs {
                Some(a) => {
                    fixed_ips.extend(
                        a.extra_ips
                            .iter()
                            .filter_map(|f| f.ip_address.parse::<IpAddr>().ok()),
                    );
                    a.security_groups.clone()
                }
                None => {
                    let g = match default_groups.get(&p.project_id) {
                        Some(g) => g.clone(),
                        None => {
                            let g = self
                                .default_security_group(&p.project_id)
                                .await
                                .map_err(|e| ComputeError::Internal(e.message))?
                                .id;
                            default_groups.insert(p.project_id.clone(), g.clone());
                            g
                        }
                    };
                    vec![g]
                }
            };
            let port_security = attrs.as_ref().is_none_or(|a| a.port_security_enabled);
            for g in &groups {
                members
                    .entry(g.clone())
                    .or_default()
                    .extend(fixed_ips.iter().copied());
            }
            let spec = hn::PortSpec {
                id: p.id.clone(),
                network_id: p.network_id.clone(),
                mac,
                fixed_ips,
                hostname: server.as_ref().map(|s| s.hostname.clone()),
                security_groups: groups,
                port_security_enabled: port_security,
                allowed_address_pairs: attrs
                    .as_ref()
                    .map(|a| {
                        a.allowed_address_pairs
                            .iter()
                            .filter_map(|x| {
                                let ip = if x.ip_address.contains('/') {
                                    x.ip_address.parse().ok()?
                                } else {
                                    let a: IpAddr = x.ip_address.parse().ok()?;
                                    a.into()
                                };
                                Some(hn::AddressPair {
                                    ip_address: ip,
                                    mac_address: x.mac_address.parse().ok(),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let host = server.as_ref().and_then(|s| s.host.clone());
            // Router ports are the router's own interfaces, not taps.
            let is_router = attrs
                .as_ref()
                .is_some_and(|a| a.device_owner.starts_with("network:"));
            ports.push((
                p,
                spec,
                if is_router { None } else { host },
                if is_router { None } else { server },
            ));
        }
        let mut groups = Vec::new();
        let sg_records: Vec<super::neutron::SecurityGroup> = store.list().await?;
        for g in sg_records {
            let rules: Vec<SecurityGroupRule> = store.list_by_owner(&g.id).await?;
            let mut m = members.remove(&g.id).unwrap_or_default();
            m.sort();
            m.dedup();
            groups.push(hn::SecurityGroup {
                id: g.id.clone(),
                rules: rules.iter().filter_map(rule_of).collect(),
                members: m,
            });
        }
        // Routers: interfaces from their ports, the gateway from the record, floating IPs
        // of ports behind them.
        let routers_rec: Vec<Router> = store.list().await?;
        let fips: Vec<FloatingIp> = store.list().await?;
        let mut routers = Vec::new();
        for r in routers_rec {
            let mut interfaces = Vec::new();
            let mut inside_nets = Vec::new();
            for (p, spec, _, _) in &ports {
                let Some(a) = router_ports.get(&p.id) else {
                    continue;
                };
                if a.device_id != r.id {
                    continue;
                }
                let Some(net) = specs.get(&p.network_id) else {
                    continue;
                };
                for ip in &spec.fixed_ips {
                    if let Some(sn) = net.subnets.iter().find(|s| s.cidr.contains(ip)) {
                        let mut sn = sn.clone();
                        sn.gateway_ip = Some(*ip);
                        interfaces.push(hn::RouterInterface {
                            network_id: p.network_id.clone(),
                            subnet: sn,
                            mac: Some(spec.mac),
                        });
                    }
                }
                inside_nets.push(p.network_id.clone());
            }
            let gateway = r.external_gateway_info.as_ref().and_then(|g| {
                let ext = specs.get(&g.network_id)?;
                let ip: IpAddr = g.external_fixed_ips.first()?.ip_address.parse().ok()?;
                let sn = ext.subnets.iter().find(|s| s.cidr.contains(&ip))?;
                Some(hn::RouterGateway {
                    network_id: g.network_id.clone(),
                    ip: ipnet_with(ip, sn.cidr.prefix_len())?,
                    gateway_ip: sn.gateway_ip,
                    mac: None,
                    enable_snat: g.enable_snat,
                })
            });
            let mut floating_ips = Vec::new();
            if let Some(gw) = &gateway {
                for f in &fips {
                    if f.network_id != gw.network_id {
                        continue;
                    }
                    let Some(pid) = &f.port_id else { continue };
                    let Some((p, _, _, _)) = ports.iter().find(|(p, ..)| &p.id == pid) else {
                        continue;
                    };
                    if !inside_nets.contains(&p.network_id) {
                        continue;
                    }
                    let fixed = store
                        .get::<FloatingIpAttrs>(&f.id)
                        .await?
                        .and_then(|a| a.fixed_ip_address)
                        .unwrap_or_else(|| p.fixed_ip.clone());
                    if let (Ok(fl), Ok(fx)) = (f.address.parse(), fixed.parse()) {
                        floating_ips.push(hn::FloatingIp {
                            floating_ip: fl,
                            fixed_ip: fx,
                        });
                    }
                }
            }
            if gateway.is_none() && interfaces.is_empty() {
                continue;
            }
            routers.push(hn::RouterSpec {
                id: r.id.clone(),
                gateway,
                interfaces,
                floating_ips,
            });
        }
        Ok(World {
            nets,
            specs,
            ports,
            groups,
            routers,
        })
    }

    /// The host that serves every network (DHCP, metadata, routers): the first up host.
    async fn network_host(&self) -> Option<String> {
        let hosts = self.inner.hosts.read().await;
        let mut up: Vec<&String> = hosts.iter().filter(|(_, h)| h.up).map(|(n, _)| n).collect();
        up.sort();
        up.first().map(|s| s.to_string())
    }

    /// What the metadata service tells server `s` (also the content of its config drive).
    pub(crate) async fn instance_metadata(
        &self,
        s: &Server,
    ) -> Result<hn::InstanceMetadata, ComputeError> {
        let w = self.read_world().await?;
        let port = w
            .ports
            .iter()
            .map(|(p, ..)| p)
            .find(|p| p.server_id.as_deref() == Some(s.id.as_str()));
        Ok(self.metadata_of(s, port, &w))
    }

    fn metadata_of(&self, s: &Server, p: Option<&Port>, w: &World) -> hn::InstanceMetadata {
        use base64::Engine as _;
        let user_data = s
            .user_data
            .as_deref()
            .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok());
        let mine: Vec<(&hn::PortSpec, &hn::NetworkSpec)> = w
            .ports
            .iter()
            .filter(|(q, ..)| q.server_id.as_deref() == Some(s.id.as_str()))
            .filter_map(|(_, spec, _, _)| Some((spec, w.specs.get(&spec.network_id)?)))
            .collect();
        let n =
            u64::from_str_radix(s.instance_name.trim_start_matches("instance-"), 16).unwrap_or(0);
        hn::InstanceMetadata {
            uuid: s.id.clone(),
            name: s.name.clone(),
            hostname: s.hostname.clone(),
            project_id: s.project_id.clone(),
            availability_zone: s.availability_zone.clone().unwrap_or_default(),
            launch_index: s.launch_index,
            public_keys: match (&s.key_name, &s.key_data) {
                (Some(k), Some(d)) => vec![(k.clone(), d.clone())],
                _ => vec![],
            },
            user_data,
            meta: s.metadata.clone(),
            ec2_instance_id: hn::metadata::ec2_id(n),
            instance_type: s.flavor.original_name.clone(),
            local_ipv4: p.and_then(|p| p.fixed_ip.parse().ok()),
            public_ipv4: None,
            security_groups: s.security_groups.clone(),
            network_data: hn::metadata::network_data(&mine),
            vendor_data: serde_json::Value::Null,
        }
    }

    /// The desired data plane of every registered host. `extra`: (server id, host) also
    /// wants that server's ports on that host besides its own (the destination of a
    /// migration, before the record moves).
    pub(crate) async fn desired_dataplane(
        &self,
        extra: Option<(&str, &str)>,
    ) -> Result<BTreeMap<String, HostNetState>, ComputeError> {
        let w = self.read_world().await?;
        // A move that ended without `move_done` (it failed, or the manager restarted in
        // between) leaves its server without a task: its ports are wanted on its own host
        // only again, so that no stale tap stays on the destination.
        let moving_ids: Vec<&str> = w
            .ports
            .iter()
            .filter_map(|(_, _, _, s)| s.as_ref())
            .filter(|s| s.task_state.is_some())
            .map(|s| s.id.as_str())
            .collect();
        let mut moves: Vec<(String, String)> = {
            let mut m = self.inner.dataplane.moving.lock().unwrap();
            m.retain(|sid, _| moving_ids.contains(&sid.as_str()));
            m.iter().map(|(a, b)| (a.clone(), b.clone())).collect()
        };
        moves.extend(extra.map(|(a, b)| (a.to_string(), b.to_string())));
        let serving = self.network_host().await;
        let hosts: Vec<String> = self.inner.hosts.read().await.keys().cloned().collect();
        let mut out = BTreeMap::new();
        // Networks in use: with a server port or a router.
        let mut used: Vec<String> = w
            .ports
            .iter()
            .filter(|(_, _, h, _)| h.is_some())
            .map(|(p, ..)| p.network_id.clone())
            .collect();
        for r in &w.routers {
            used.extend(r.interfaces.iter().map(|i| i.network_id.clone()));
            used.extend(r.gateway.iter().map(|g| g.network_id.clone()));
        }
        used.sort();
        used.dedup();
        for host in hosts {
            let is_server = serving.as_deref() == Some(host.as_str());
            let mut st = HostNetState::default();
            // A port is on its server's host, and also on the destination during a move.
            let here: Vec<&(Port, hn::PortSpec, Option<String>, Option<Server>)> = w
                .ports
                .iter()
                .filter(|(p, _, h, _)| {
                    h.as_deref() == Some(host.as_str())
                        || (h.is_some()
                            && moves.iter().any(|(sid, eh)| {
                                p.server_id.as_deref() == Some(sid.as_str()) && *eh == host
                            }))
                })
                .collect();
            let mut nets: Vec<String> = here.iter().map(|(p, ..)| p.network_id.clone()).collect();
            if is_server {
                nets.extend(used.iter().cloned());
            }
            nets.sort();
            nets.dedup();
            st.desired.networks = nets
                .iter()
                .filter_map(|n| w.specs.get(n).cloned())
                .collect();
            st.desired.security_groups = w.groups.clone();
            st.desired.ports = here.iter().map(|(_, s, _, _)| s.clone()).collect();
            if is_server {
                for n in &w.nets {
                    if n.external || !used.contains(&n.id) {
                        continue;
                    }
                    let remote: Vec<hn::PortSpec> = w
                        .ports
                        .iter()
                        .filter(|(p, _, h, _)| {
                            p.network_id == n.id && h.is_some() && h.as_deref() != Some(&host)
                        })
                        .map(|(_, s, _, _)| s.clone())
                        .collect();
                    st.desired.served.push(hn::ServedNetwork {
                        network_id: n.id.clone(),
                        remote_ports: remote,
                    });
                    for (p, _, h, s) in &w.ports {
                        if p.network_id != n.id || h.is_none() {
                            continue;
                        }
                        let (Some(s), Ok(ip)) = (s, p.fixed_ip.parse()) else {
                            continue;
                        };
                        st.metadata.push(MetadataEntry {
                            network_id: n.id.clone(),
                            ip,
                            instance: self.metadata_of(s, Some(p), &w),
                        });
                    }
                }
                st.desired.routers = w.routers.clone();
            }
            out.insert(host, st);
        }
        Ok(out)
    }

    /// Pushes every host's desired data plane (only what changed since the last push).
    /// Errors of one host are logged; the first is returned after the others were pushed.
    pub async fn sync_dataplane(&self) -> Result<(), ComputeError> {
        self.sync_dataplane_with(None, None).await
    }

    /// Before a VM is defined on `host` (the `define` step): as [`Engine::sync_dataplane_for`],
    /// except that a host whose agent said it has no data plane needs no taps for a VM defined
    /// there, so it is not waited for (its state still comes with the next push of any other
    /// change, and with the periodic one).
    pub(crate) async fn sync_dataplane_for_define(&self, host: &str) -> Result<(), ComputeError> {
        if self
            .inner
            .dataplane
            .planeless
            .lock()
            .unwrap()
            .contains(host)
        {
            return Ok(());
        }
        self.sync_dataplane_for(host, None).await
    }

    /// Before a VM starts on `host`: pushes every host, failing only when `host` failed
    /// (the others are logged and retried by the periodic task).
    pub(crate) async fn sync_dataplane_for(
        &self,
        host: &str,
        extra: Option<(&str, &str)>,
    ) -> Result<(), ComputeError> {
        if let Some((sid, dest)) = extra {
            self.inner
                .dataplane
                .moving
                .lock()
                .unwrap()
                .insert(sid.to_string(), dest.to_string());
        }
        self.sync_dataplane_with(extra, Some(host)).await
    }

    /// A move of `server_id` ended (its record names its new host, or it failed): its ports
    /// are wanted on its own host only again.
    pub(crate) async fn move_done(&self, server_id: &str) {
        self.inner
            .dataplane
            .moving
            .lock()
            .unwrap()
            .remove(server_id);
        self.dataplane_best_effort().await;
    }

    /// [`Engine::sync_dataplane`], logging a failure (the periodic task retries).
    pub(crate) async fn dataplane_best_effort(&self) {
        if let Err(e) = self.sync_dataplane().await {
            tracing::warn!("network data plane: {e}");
        }
    }

    /// Forgets what was pushed to `host` (its agent was replaced): the next push sends it
    /// its whole state and learns again whether it has a data plane.
    pub(crate) async fn dataplane_forget(&self, host: &str) {
        self.inner.dataplane.planeless.lock().unwrap().remove(host);
        self.inner.dataplane.pushed.lock().await.hosts.remove(host);
    }

    /// [`Engine::sync_dataplane`], with server `extra.0`'s ports also on host `extra.1`; only
    /// `must`'s error is returned when given.
    ///
    /// Pushes are coalesced: a caller counts its request (after its records are committed),
    /// then waits for the push lock; if a round that read the records after that request
    /// finished meanwhile, that round served it and its result (for `must`) is returned
    /// without another computation. So concurrent defines cost one computation of the
    /// desired state, not one each. A call with `extra` always computes its own round (its
    /// move is added to the computation), which serves the others as well.
    async fn sync_dataplane_with(
        &self,
        extra: Option<(&str, &str)>,
        must: Option<&str>,
    ) -> Result<(), ComputeError> {
        let dp = &self.inner.dataplane;
        let ticket = dp.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut pushed = dp.pushed.lock().await;
        if extra.is_none() && pushed.served >= ticket {
            return round_result(&pushed.errors, must);
        }
        let round = dp.requested.load(Ordering::SeqCst);
        let want = self.desired_dataplane(extra).await?;
        let hosts = self.inner.hosts.read().await.clone();
        let mut errors = BTreeMap::new();
        for (name, st) in want {
            let Some(h) = hosts.get(&name) else { continue };
            if !h.up || pushed.hosts.get(&name) == Some(&st) {
                continue;
            }
            match h.agent.net_sync(&st).await {
                Ok(plane) => {
                    let mut planeless = dp.planeless.lock().unwrap();
                    if plane {
                        planeless.remove(&name);
                    } else {
                        planeless.insert(name.clone());
                    }
                    drop(planeless);
                    pushed.hosts.insert(name, st);
                }
                Err(e) => {
                    pushed.hosts.remove(&name);
                    tracing::warn!(host = %name, "network sync: {e}");
                    errors.insert(name, ComputeError::from(e));
                }
            }
        }
        pushed.served = round;
        pushed.errors = errors;
        round_result(&pushed.errors, must)
    }
}

/// A push round's result for `must` (any host's first error when None).
fn round_result(
    errors: &BTreeMap<String, ComputeError>,
    must: Option<&str>,
) -> Result<(), ComputeError> {
    let e = match must {
        Some(m) => errors.get(m),
        None => errors.values().next(),
    };
    match e {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

fn ipnet_with(ip: IpAddr, prefix: u8) -> Option<hn::ipnet::IpNet> {
    hn::ipnet::IpNet::new(ip, prefix).ok()
}
