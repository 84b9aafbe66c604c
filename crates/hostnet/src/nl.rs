//! rtnetlink inside one namespace: links, addresses, routes.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder};

use crate::types::MacAddr;
use crate::{netns, Error};

/// A netlink connection whose socket lives in one namespace.
pub struct Netlink {
    handle: Handle,
    ns: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn nl_err(ns: &str, what: &str, e: rtnetlink::Error) -> Error {
    Error::Netlink(format!("{what} in {ns}: {e}"))
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| c.get()) == Some(-errno))
}

/// A link as listed.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub alias: Option<String>,
    pub controller: Option<u32>,
    pub mac: Option<Vec<u8>>,
}

impl Link {
    fn from_msg(m: &LinkMessage) -> Link {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            alias: None,
            controller: None,
            mac: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::IfAlias(n) => l.alias = Some(n.clone()),
                LinkAttribute::Controller(c) => l.controller = Some(*c),
                LinkAttribute::Address(b) => l.mac = Some(b.clone()),
                _ => {}
            }
        }
        l
    }
}

impl Netlink {
    /// Open a connection inside namespace `ns`. Needs a Tokio runtime.
    pub fn open(ns: &str) -> Result<Netlink, Error> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle) = netns::run_in(ns, move || {
            let _g = rt.enter();
            rtnetlink::new_connection().map(|(c, h, _)| (c, h))
        })?
        .map_err(|e| Error::Netlink(format!("netlink socket in {ns}: {e}")))?;
        let task = tokio::spawn(conn);
        Ok(Netlink {
            handle,
            ns: ns.to_string(),
            task,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.ns
    }

    pub async fn links(&self) -> Result<Vec<Link>, Error> {
        let mut s = self.handle.link().get().execute();
        let mut v = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| nl_err(&self.ns, "list links", e))?
        {
            v.push(Link::from_msg(&m));
        }
        Ok(v)
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>, Error> {
        let mut s = self.handle.link().get().match_name(name).execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(Link::from_msg(&m))),
            Ok(None) => Ok(None),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(&self.ns, &format!("get link {name}"), e)),
        }
    }

    pub async fn index(&self, name: &str) -> Result<u32, Error> {
        self.link(name)
            .await?
            .map(|l| l.index)
            .ok_or_else(|| Error::NotFound(format!("link {name} in {}", self.ns)))
    }

    async fn add(&self, msg: LinkMessage, what: &str) -> Result<(), Error> {
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_err(&self.ns, what, e)),
        }
    }

    async fn set(&self, msg: LinkMessage, what: &str) -> Result<(), Error> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| nl_err(&self.ns, what, e))
    }

    /// A bridge (idempotent), up, without STP, forwarding at once.
    pub async fn ensure_bridge(&self, name: &str, mcast_snooping: bool) -> Result<u32, Error> {
        if self.link(name).await?.is_none() {
            let msg = LinkBridge::new(name)
                .forward_delay(0)
                .mcast_snooping(mcast_snooping)
                .build();
            self.add(msg, &format!("add bridge {name}")).await?;
        }
        self.set_up(name).await?;
        self.index(name).await
    }

    /// A veth pair `name` <-> `peer` in this namespace (idempotent on `name`).
    pub async fn add_veth(&self, name: &str, peer: &str) -> Result<(), Error> {
        if self.link(name).await?.is_some() {
            return Ok(());
        }
        self.add(
            LinkVeth::new(name, peer).build(),
            &format!("add veth {name}"),
        )
        .await
    }

    /// A VXLAN device with a multicast group on `dev` (learning).
    pub async fn ensure_vxlan(
        &self,
        name: &str,
        vni: u32,
        group: std::net::Ipv4Addr,
        dev: &str,
        mtu: u32,
    ) -> Result<(), Error> {
        if self.link(name).await?.is_none() {
            let dev_index = self.index(dev).await?;
            let msg = LinkVxlan::new(name, vni)
                .dev(dev_index)
                .group(group)
                .port(4789)
                .learning(true)
                .ttl(1)
                .mtu(mtu)
                .build();
            self.add(msg, &format!("add vxlan {name}")).await?;
        }
        Ok(())
    }

    /// Move link `name` into namespace `target`, renaming it to `new_name` there.
    pub async fn move_to(&self, name: &str, target: &str, new_name: &str) -> Result<(), Error> {
        let fd = netns::open(target)?;
        let idx = self.index(name).await?;
        let msg = LinkUnspec::new_with_index(idx)
            .setns_by_fd(fd.as_raw_fd())
            .name(new_name)
            .build();
        let r = self.set(msg, &format!("move {name} to {target}")).await;
        drop(fd);
        r
    }

    pub async fn set_up(&self, name: &str) -> Result<(), Error> {
        let idx = self.index(name).await?;
        self.set(
            LinkUnspec::new_with_index(idx).up().build(),
            &format!("set {name} up"),
        )
        .await
    }

    pub async fn set_mac(&self, name: &str, mac: MacAddr) -> Result<(), Error> {
        let idx = self.index(name).await?;
        self.set(
            LinkUnspec::new_with_index(idx)
                .address(mac.0.to_vec())
                .build(),
            &format!("set {name} address"),
        )
        .await
    }

    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), Error> {
        let idx = self.index(name).await?;
        self.set(
            LinkUnspec::new_with_index(idx).mtu(mtu).build(),
            &format!("set {name} mtu"),
        )
        .await
    }

    pub async fn set_alias(&self, name: &str, alias: &str) -> Result<(), Error> {
        let idx = self.index(name).await?;
        self.set(
            LinkUnspec::new_with_index(idx).alias(alias).build(),
            &format!("set {name} alias"),
        )
        .await
    }

    /// Enslave `name` to bridge `bridge` (idempotent).
    pub async fn set_master(&self, name: &str, bridge: &str) -> Result<(), Error> {
        let br = self.index(bridge).await?;
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("link {name} in {}", self.ns)))?;
        if link.controller == Some(br) {
            return Ok(());
        }
        self.set(
            LinkUnspec::new_with_index(link.index)
                .controller(br)
                .build(),
            &format!("set {name} master {bridge}"),
        )
        .await
    }

    /// Delete a link if it exists.
    pub async fn del_link(&self, name: &str) -> Result<(), Error> {
        let Some(l) = self.link(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(l.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
            Err(e) => Err(nl_err(&self.ns, &format!("delete {name}"), e)),
        }
    }

    /// Addresses on a link (address, prefix length).
    pub async fn addrs(&self, name: &str) -> Result<Vec<(IpAddr, u8)>, Error> {
        let idx = self.index(name).await?;
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(idx)
            .execute();
        let mut v = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| nl_err(&self.ns, "list addresses", e))?
        {
            if m.header.index != idx {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    v.push((*ip, m.header.prefix_len));
                }
            }
        }
        Ok(v)
    }

    /// Add an address (idempotent). IPv6 addresses skip duplicate address detection.
    pub async fn add_addr(&self, name: &str, ip: IpAddr, prefix: u8) -> Result<(), Error> {
        let idx = self.index(name).await?;
        let mut req = self.handle.address().add(idx, ip, prefix);
        if ip.is_ipv6() {
            req.message_mut().header.flags |=
                rtnetlink::packet_route::address::AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_err(&self.ns, &format!("add {ip}/{prefix} to {name}"), e)),
        }
    }

    /// Remove an address if present.
    pub async fn del_addr(&self, name: &str, ip: IpAddr) -> Result<(), Error> {
        let idx = self.index(name).await?;
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(idx)
            .execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| nl_err(&self.ns, "list addresses", e))?
        {
            if m.header.index == idx
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, AddressAttribute::Address(a) if *a == ip))
            {
                return self
                    .handle
                    .address()
                    .del(m)
                    .execute()
                    .await
                    .map_err(|e| nl_err(&self.ns, &format!("delete {ip}"), e));
            }
        }
        Ok(())
    }

    /// Add (or replace) a route via a gateway.
    pub async fn replace_route(&self, dst: ipnet::IpNet, gw: IpAddr) -> Result<(), Error> {
        let msg = match (dst, gw) {
            (ipnet::IpNet::V4(d), IpAddr::V4(g)) => {
                RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .destination_prefix(d.addr(), d.prefix_len())
                    .gateway(g)
                    .build()
            }
            (ipnet::IpNet::V6(d), IpAddr::V6(g)) => {
                RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .destination_prefix(d.addr(), d.prefix_len())
                    .gateway(g)
                    .build()
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "route {dst} via {gw}: mixed families"
                )))
            }
        };
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(&self.ns, &format!("route {dst} via {gw}"), e))
    }
}
