//! The DHCP service's own address, reserved as Neutron's DHCP agent does: every subnet with
//! DHCP (on a network that is not external) gets a port with `device_owner` `network:dhcp`
//! holding an address from the subnet's allocation pool, so that neither Nova nor the
//! Networking API can hand that address to a guest; the data plane serves DHCP and metadata
//! from it (`SubnetSpec::dhcp_ip`). The port has a fixed id derived from the subnet (made
//! idempotently at subnet create, when DHCP is turned on, and at start for subnets made
//! before), no security groups, and goes with its subnet (or when DHCP is turned off).

use lifeboat_core::{ids, Network, Port};
use lifeboat_store::StoreError;

pub use super::neutron::dhcp_port_id;
use super::neutron::{derived_id, FixedIpReq, NetResult, NetworkAttrs, PortAttrs, Subnet};
use crate::Engine;

/// Neutron's device owner of DHCP ports.
pub const OWNER_DHCP: &str = "network:dhcp";

impl Engine {
    /// Makes subnet `s`'s DHCP port if it needs one and has none (see the module docs).
    pub(crate) async fn ensure_dhcp_port(&self, s: &Subnet) -> NetResult<()> {
        if !s.enable_dhcp {
            return self.drop_dhcp_port(&s.id).await;
        }
        let id = dhcp_port_id(&s.id);
        if self.inner.store.get::<Port>(&id).await?.is_some() {
            return Ok(());
        }
        let Some(net) = self.inner.store.get::<Network>(&s.network_id).await? else {
            return Ok(());
        };
        if net.external {
            return Ok(());
        }
        let owner = match self.inner.store.get::<NetworkAttrs>(&net.id).await? {
            Some(a) => a.project_id,
            None => net
                .project_id
                .clone()
                .unwrap_or_else(|| s.project_id.clone()),
        };
        let want = [FixedIpReq {
            subnet_id: Some(s.id.clone()),
            ip_address: None,
        }];
        // A concurrent allocation may take the same address: pick again.
        for _ in 0..8 {
            let ips = self.pick_ips(&net.id, Some(&want), None).await?;
            let Some(ip) = ips.first() else {
                return Ok(());
            };
            let t = chrono::Utc::now();
            self.inner
                .store
                .put(&PortAttrs {
                    id: id.clone(),
                    name: String::new(),
                    description: String::new(),
                    admin_state_up: true,
                    device_owner: OWNER_DHCP.into(),
                    device_id: format!("dhcp{}-{}", derived_id("lifeboat", "dhcp-agent"), net.id),
                    extra_ips: vec![],
                    security_groups: vec![],
                    allowed_address_pairs: vec![],
                    port_security_enabled: false,
                    created_at: t,
                    updated_at: t,
                    revision_number: 1,
                })
                .await?;
            let p = Port {
                id: id.clone(),
                network_id: net.id.clone(),
                server_id: None,
                mac_address: ids::mac(),
                fixed_ip: ip.ip_address.clone(),
                project_id: owner.clone(),
            };
            match self.inner.store.insert(&p).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Duplicate(_)) => {
                    if self.inner.store.get::<Port>(&id).await?.is_some() {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Removes subnet `subnet_id`'s DHCP port, if any.
    pub(crate) async fn drop_dhcp_port(&self, subnet_id: &str) -> NetResult<()> {
        let id = dhcp_port_id(subnet_id);
        if self.inner.store.get::<Port>(&id).await?.is_some() {
            self.inner.store.delete::<Port>(&id).await?;
        }
        if self.inner.store.get::<PortAttrs>(&id).await?.is_some() {
            self.inner.store.delete::<PortAttrs>(&id).await?;
        }
        Ok(())
    }

    /// Every subnet's DHCP port (at start: subnets made before DHCP ports existed, the
    /// bootstrap networks' subnets).
    pub(crate) async fn ensure_dhcp_ports(&self) -> NetResult<()> {
        let subnets: Vec<Subnet> = self.inner.store.list().await?;
        for s in subnets {
            self.ensure_dhcp_port(&s).await?;
        }
        Ok(())
    }
}
