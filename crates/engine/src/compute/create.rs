//! Creating servers.

use lifeboat_core::actions::{self, Ask};
use lifeboat_core::{ids, now, Action, Actor, Flavor, Server};
use serde_json::json;

use crate::catalog::DEFAULT_IMAGE_ID;
use crate::requests::*;
use crate::secrets::AdminPass;
use crate::workflow::LaunchWith;
use crate::{ComputeError, Engine, Reason, Resource};

use super::{generate_password, sanitize_hostname};

impl Engine {
    /// Creates `max_count` servers (at least `min_count` must fit).
    pub async fn create_servers(
        &self,
        actor: &Actor,
        req: CreateServer,
    ) -> Result<Vec<Created>, ComputeError> {
        let forced_host = req
            .availability_zone
            .as_deref()
            .is_some_and(|z| z.contains(':'));
        actions::check_new(
            Action::Create,
            actor,
            &Ask {
                forced_host,
                host: req.host.is_some(),
                ..Ask::default()
            },
        )?;
        let name = req.name.trim();
        if name.is_empty() || req.name.chars().count() > 255 {
            return Err(Reason::BadServerName.into());
        }
        let min = req.min_count.max(1);
        let max = req.max_count.max(min);
        let flavor_ref = || Reason::BadReference {
            kind: Resource::Flavor,
            id: req.flavor.clone(),
        };
        let flavor: Flavor = self.flavor(&req.flavor).await.map_err(|_| flavor_ref())?;
        // Nova's _validate_and_build_base_options: a disabled flavor is
        // FlavorNotFound (400 at the API), for admins too.
        if flavor.disabled {
            return Err(Reason::BadReference {
                kind: Resource::Flavor,
                id: flavor.id,
            }
            .into());
        }
        if !self.can_use_flavor(actor, &flavor).await? {
            return Err(flavor_ref().into());
        }
        let (max, _quota) = self
            .check_create_quota(actor, &flavor, min, max, req.metadata.len())
            .await?;
        let group = self
            .group_for_create(actor, &req.scheduler_hints, max)
            .await?;
        let image = match &req.image {
            Some(i) if !i.is_empty() => {
                self.image(actor, i)
                    .await
                    .map_err(|_| Reason::BadReference {
                        kind: Resource::Image,
                        id: i.clone(),
                    })?
            }
            _ => self.image(actor, DEFAULT_IMAGE_ID).await?,
        };
        if image.status != lifeboat_core::ImageStatus::Active {
            return Err(Reason::ImageNotActive { image: image.id }.into());
        }
        if flavor.ram < image.min_ram {
            return Err(Reason::FlavorRamTooSmall.into());
        }
        if image.min_disk > flavor.disk && flavor.disk > 0 {
            return Err(Reason::FlavorDiskTooSmall.into());
        }
        let key_data = match &req.key_name {
            Some(k) => Some(
                self.keypair(actor, k)
                    .await
                    .map_err(|_| Reason::BadKeyName)?
                    .public_key,
            ),
            None => None,
        };
        let (az, forced_host) = match &req.availability_zone {
            Some(z) if z.contains(':') => {
                let (z, h) = z.split_once(':').unwrap();
                (
                    Some(z.to_string()).filter(|z| !z.is_empty()),
                    Some(h.to_string()),
                )
            }
            other => (other.clone(), None),
        };
        let host = forced_host.or(req.host.clone());
        if let Some(z) = &az {
            let zones: Vec<String> = self
                .hosts()
                .await
                .into_iter()
                .map(|(h, _)| h.availability_zone)
                .collect();
            if !zones.contains(z) {
                return Err(Reason::NoSuchZone.into());
            }
        }
        if let Some(h) = &host {
            if self.host_up(h).await.is_none() {
                return Err(Reason::BadReference {
                    kind: Resource::ComputeHost,
                    id: h.clone(),
                }
                .into());
            }
        }
        let (networks, no_network) = self.resolve_networks(actor, &req).await?;
        if max > 1
            && networks
                .iter()
                .any(|n| n.port_id.is_some() || n.fixed_ip.is_some())
        {
            return Err(Reason::SharedPort.into());
        }
        let reservation_id = ids::reservation_id();
        let mut out = vec![];
        for i in 0..max {
            let admin_pass = req.admin_pass.clone().unwrap_or_else(generate_password);
            let seq = self.inner.store.next_counter("instance").await?;
            let sname = if max > 1 {
                format!("{name}-{}", i + 1)
            } else {
                name.to_string()
            };
            let t = now();
            let server = Server {
                description: req.description.clone(),
                image_id: Some(image.id.clone()),
                instance_name: format!("instance-{seq:08x}"),
                hostname: sanitize_hostname(req.hostname.as_deref().unwrap_or(&sname)),
                availability_zone: az.clone(),
                pinned_availability_zone: az.clone(),
                config_drive: req.config_drive,
                key_name: req.key_name.clone(),
                key_data: key_data.clone(),
                launch_index: i,
                reservation_id: reservation_id.clone(),
                metadata: req.metadata.clone(),
                tags: req.tags.clone(),
                user_data: req.user_data.clone(),
                access_ipv4: req.access_ipv4.clone().unwrap_or_default(),
                access_ipv6: req.access_ipv6.clone().unwrap_or_default(),
                disk_config: req.disk_config.clone().unwrap_or_else(|| "MANUAL".into()),
                security_groups: if req.security_groups.is_empty() {
                    vec!["default".into()]
                } else {
                    req.security_groups.clone()
                },
                scheduler_hints: req.scheduler_hints.clone(),
                server_groups: group.iter().map(|g| g.id.clone()).collect(),
                admin_password_set: true,
                ..Server::new(
                    ids::uuid(),
                    sname.clone(),
                    &actor.project_id,
                    &actor.user_id,
                    &flavor,
                    t,
                )
            };
            let params = json!({
                "networks": networks,
                "no_network": no_network,
                "host": host,
                "was_active": false,
            });
            let wf = self.new_workflow("create", Some(&server), Some(&actor.user_id), params)?;
            let mut server = server;
            server.task_workflow = Some(wf.id.clone());
            let extras = self.extras(
                &wf,
                LaunchWith {
                    admin_pass: Some(AdminPass(admin_pass.clone())),
                    ..Default::default()
                },
            )?;
            let (saved, events) = self
                .inner
                .store
                .insert_server_with_workflow(&server, &wf, &extras)
                .await?;
            self.announce(events, extras);
            self.spawn_run(wf.id.clone());
            out.push(Created {
                server: saved,
                admin_pass,
                workflow_id: wf.id,
            });
        }
        Ok(out)
    }
}
