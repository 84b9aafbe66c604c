//! Lifeboat's host networking data plane, all inside network namespaces Lifeboat owns.
//!
//! One [`HostNetwork`] per host agent owns the namespace `lbh-<host>`; in it each network is a
//! Linux bridge and each port a tap (for QEMU) or a veth into a namespace (a namespace
//! standing in for a guest). A network's DHCP (dnsmasq) and metadata service run in a service
//! namespace on the host that serves it; routers get a namespace each (NAT and floating IPs
//! with nftables); security groups are nftables rules per port in the host namespace. Host
//! agents on one machine join a [`Fabric`] namespace with a veth each, and networks span hosts
//! with VXLAN over it. Links, addresses and routes go through rtnetlink, rules through
//! nftables' JSON API. See [`names`] for the naming of namespaces and interfaces.
//!
//! The root namespace's network is never touched.
//!
//! How a host agent drives it (all calls idempotent, desired state in):
//!
//! ```no_run
//! # async fn f(net: lifeboat_hostnet::NetworkSpec, port: lifeboat_hostnet::PortSpec,
//! #     groups: Vec<lifeboat_hostnet::SecurityGroup>, others: Vec<lifeboat_hostnet::PortSpec>,
//! #     router: lifeboat_hostnet::RouterSpec) -> Result<(), lifeboat_hostnet::Error> {
//! use lifeboat_hostnet::{Fabric, FloatingIp, HostNetwork, HostOptions};
//! let hn = HostNetwork::open("host-1", HostOptions::default()).await?;
//! hn.join_fabric(&Fabric::open("local").await?).await?; // networks span host agents
//! hn.ensure_network(&net).await?;                         // bridge (+ VXLAN)
//! hn.apply_security_groups(&groups).await?;               // rules + members on all hosts
//! let tap = hn.ensure_port(&port).await?;                 // tap with the port's MAC
//! let nic = HostNetwork::qemu_nic_args(&port, "net0");    // or hn.open_tap(&tap) for fd=N
//! hn.serve_network(&net.id, &others).await?;              // dnsmasq + metadata, one host
//! hn.ensure_router(&router).await?;                       // SNAT, floating IPs
//! hn.set_floating_ip(&router.id, FloatingIp {
//!     floating_ip: "203.0.113.5".parse().unwrap(),
//!     fixed_ip: "10.0.0.5".parse().unwrap(),
//! }).await?;
//! hn.remove_port(&port.id).await?;
//! hn.prune().await?;                                      // after a restart: drop leftovers
//! # let _ = (tap, nic); Ok(()) }
//! ```

pub mod configdrive;
pub mod dhcp;
pub mod firewall;
mod host;
pub mod metadata;
pub mod names;
pub mod netns;
pub mod nft;
pub mod nl;
pub mod router;
pub mod tap;
pub mod types;

pub use host::{cleanup_host, DesiredState, Fabric, HostNetwork, HostOptions, ServedNetwork};
pub use ipnet;
pub use metadata::{InstanceMetadata, MetadataSource};
pub use types::*;

/// Errors of the data plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
    /// A network, port, router or namespace that is not there.
    #[error("{0} not found")]
    NotFound(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("{0}")]
    Command(String),
    #[error("{0}")]
    Os(String),
}
