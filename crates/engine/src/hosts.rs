//! Hosts, placement and the periodic tasks (power-state sync, reclaim).

use std::sync::Arc;

use lifeboat_core::placement::{pick_host_in_group, HostCandidate, Resources};
use lifeboat_core::{now, Host, Level, NewEvent, PowerState, Server, VmState};
use lifeboat_hypervisor::Hypervisor;
use lifeboat_store::ServerQuery;

use crate::{ComputeError, Engine, HostHandle, Resource};

impl Engine {
    /// Registers a host and its agent (in-process driver or [`lifeboat_agent::RemoteAgent`]).
    pub async fn add_host(
        &self,
        name: &str,
        endpoint: &str,
        availability_zone: &str,
        agent: Arc<dyn Hypervisor>,
    ) -> Result<Host, ComputeError> {
        let info = agent.host_info().await?;
        // Fence at registration too (Nova's compute start): copies of
        // servers that moved away or were deleted while this host was
        // unknown are destroyed before it gets work.
        if let Ok(vms) = agent.list().await {
            if let Err(e) = self.destroy_stale_copies(name, &agent, &vms).await {
                tracing::warn!(host = name, "cannot destroy stale copies: {e}");
            }
        }
        let host = Host {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            availability_zone: availability_zone.to_string(),
            driver: info.driver.clone(),
            accelerator: info.accelerator.clone(),
            enabled: true,
            capacity: Resources {
                vcpus: (info.vcpus as f64 * self.inner.cfg.cpu_allocation_ratio).floor() as u32,
                ram_mb: info.ram_mb,
                disk_gb: info.disk_gb,
            },
            last_seen: Some(now()),
        };
        let host = match self.inner.store.get::<Host>(name).await? {
            Some(old) => Host {
                enabled: old.enabled,
                ..host
            },
            None => host,
        };
        self.inner.store.put(&host).await?;
        self.dataplane_forget(name).await;
        self.inner.hosts.write().await.insert(
            name.to_string(),
            HostHandle {
                host: host.clone(),
                agent,
                up: true,
                missed: 0,
            },
        );
        tracing::info!(host = name, driver = %info.driver, accel = %info.accelerator, "host registered");
        Ok(host)
    }

    /// Registers a host whose agent may be unreachable: when it answers,
    /// as [`Engine::add_host`]; when not, the host is registered down (its
    /// last known record, or an empty one), so the manager still starts and
    /// its servers can be evacuated. It comes up when its agent answers
    /// again, after its stale copies are destroyed. Returns whether it is up.
    pub async fn add_host_or_down(
        &self,
        name: &str,
        endpoint: &str,
        availability_zone: &str,
        agent: Arc<dyn Hypervisor>,
    ) -> Result<bool, ComputeError> {
        let err = match self
            .add_host(name, endpoint, availability_zone, agent.clone())
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        let host = match self.inner.store.get::<Host>(name).await? {
            Some(h) => h,
            None => Host {
                name: name.to_string(),
                endpoint: endpoint.to_string(),
                availability_zone: availability_zone.to_string(),
                driver: "unknown".into(),
                accelerator: "unknown".into(),
                enabled: true,
                capacity: Resources::default(),
                last_seen: None,
            },
        };
        self.inner.hosts.write().await.insert(
            name.to_string(),
            HostHandle {
                host,
                agent,
                up: false,
                missed: self.inner.cfg.host_down_after,
            },
        );
        tracing::warn!(
            host = name,
            "host agent unreachable at start, host is down: {err}"
        );
        self.event(NewEvent {
            level: Level::Error,
            server_id: None,
            project_id: None,
            workflow_id: None,
            step: None,
            message: format!("host {name} is down: unreachable at start: {err}"),
        })
        .await;
        Ok(false)
    }

    /// Nova's `_destroy_evacuated_instances`: before a host that was down
    /// serves again, destroys its copies of servers that now live elsewhere
    /// (evacuated), are being evacuated away from it (Nova destroys the
    /// instances of evacuations `accepted`, `pre-migrating` or `done` alike:
    /// the evacuation rebuilds them elsewhere whatever this host does), or
    /// were deleted meanwhile. Disks go with them: a host's disks are local
    /// (Nova keeps them only on shared instance storage). Returns how many.
    async fn destroy_stale_copies(
        &self,
        name: &str,
        agent: &Arc<dyn Hypervisor>,
        vms: &[lifeboat_hypervisor::VmStatus],
    ) -> Result<usize, ComputeError> {
        if vms.is_empty() {
            return Ok(0);
        }
        let servers = self
            .inner
            .store
            .list_servers(&ServerQuery {
                include_deleted: true,
                ..Default::default()
            })
            .await?;
        let mut n = 0;
        for vm in vms {
            let Some(s) = servers.iter().find(|s| s.instance_name == vm.name) else {
                continue; // not ours
            };
            let here = Some(name);
            let evacuating_away = self.evacuating_away(s, name).await?;
            let belongs = s.host.as_deref() == here
                || s.source_host.as_deref() == here
                || (s.host.is_none() && s.node.as_deref() == here);
            let busy = s.task_state.is_some() && s.vm_state != VmState::Deleted;
            if !evacuating_away && (belongs || busy) {
                continue;
            }
            agent.destroy(&vm.name).await?;
            n += 1;
            self.event(NewEvent {
                level: Level::Warn,
                server_id: Some(s.id.clone()),
                project_id: Some(s.project_id.clone()),
                workflow_id: None,
                step: None,
                message: format!(
                    "stale copy {} destroyed on {name}: the server lives on {}",
                    vm.name,
                    s.host.as_deref().unwrap_or("no host")
                ),
            })
            .await;
        }
        Ok(n)
    }

    /// Whether `s` has an evacuation in flight that is not headed for `host`
    /// (so the copy on `host` is the one being replaced).
    async fn evacuating_away(&self, s: &Server, host: &str) -> Result<bool, ComputeError> {
        let Some(wid) = &s.task_workflow else {
            return Ok(false);
        };
        let Some(wf) = self.inner.store.get_workflow(wid).await? else {
            return Ok(false);
        };
        if wf.kind != "evacuate" || wf.state != lifeboat_core::WorkflowState::Running {
            return Ok(false);
        }
        let k = crate::compute::workflows::WorkflowKind::load(&wf.kind, &wf.params)?;
        Ok(k.dest() != Some(host))
    }

    /// Registered hosts with their up/down state.
    pub async fn hosts(&self) -> Vec<(Host, bool)> {
        let mut v: Vec<(Host, bool)> = self
            .inner
            .hosts
            .read()
            .await
            .values()
            .map(|h| (h.host.clone(), h.up))
            .collect();
        v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        v
    }

    /// Marks a host up or down (down hosts get no new servers; their
    /// servers may be evacuated).
    pub async fn set_host_up(&self, name: &str, up: bool) -> Result<(), ComputeError> {
        let mut hosts = self.inner.hosts.write().await;
        let h = hosts.get_mut(name).ok_or_else(|| ComputeError::NotFound {
            kind: Resource::Host,
            id: name.into(),
        })?;
        h.up = up;
        Ok(())
    }

    /// Whether a host is registered and up.
    pub(crate) async fn host_up(&self, name: &str) -> Option<bool> {
        self.inner.hosts.read().await.get(name).map(|h| h.up)
    }

    async fn candidates(&self) -> Result<Vec<HostCandidate>, ComputeError> {
        let hosts = self.inner.hosts.read().await.clone();
        let used: std::collections::HashMap<String, Resources> = self
            .inner
            .store
            .host_usage()
            .await?
            .into_iter()
            .map(|(h, (c, r, d))| {
                let res = Resources {
                    vcpus: c.max(0) as u32,
                    ram_mb: r.max(0) as u64,
                    disk_gb: d.max(0) as u64,
                };
                (h, res)
            })
            .collect();
        Ok(hosts
            .values()
            .map(|h| HostCandidate {
                name: h.host.name.clone(),
                availability_zone: h.host.availability_zone.clone(),
                up: h.up && h.host.enabled,
                capacity: h.host.capacity,
                used: used.get(&h.host.name).copied().unwrap_or_default(),
            })
            .collect())
    }

    /// Picks a host for `need`. `prefer` is tried first; with `force` it is
    /// the only choice, and bypasses the filters of `server`'s group (as
    /// Nova's forced hosts do); otherwise the group's policy filters and
    /// weighs the hosts (`server_groups.rs`).
    pub(crate) async fn schedule(
        &self,
        need: &Resources,
        az: Option<&str>,
        prefer: Option<&str>,
        exclude: Option<&str>,
        force: bool,
        server: Option<&Server>,
    ) -> Result<HostCandidate, ComputeError> {
        let cands = self.candidates().await?;
        let group = match server {
            Some(s) => self.group_rule(s).await?,
            None => None,
        };
        if let Some(p) = prefer {
            let one: Vec<HostCandidate> = cands.iter().filter(|c| c.name == p).cloned().collect();
            let rule = if force { None } else { group.as_ref() };
            if let Some(h) = pick_host_in_group(&one, need, az, exclude, rule) {
                return Ok(h.clone());
            }
            if force {
                return Err(ComputeError::NoValidHost {
                    host: Some(p.to_string()),
                });
            }
        }
        pick_host_in_group(&cands, need, az, exclude, group.as_ref())
            .cloned()
            .ok_or(ComputeError::NoValidHost { host: None })
    }

    /// Whether `host` has room for `need` when `current` is already counted there.
    pub(crate) async fn host_fits(
        &self,
        host: &str,
        need: &Resources,
        current: &Resources,
    ) -> bool {
        let Ok(cands) = self.candidates().await else {
            return false;
        };
        cands
            .iter()
            .any(|c| c.name == host && c.up && c.capacity.minus(&c.used.minus(current)).fits(need))
    }

    /// One round of periodic work: host heartbeats, power-state sync,
    /// soft-delete reclaim, shelved offload.
    pub(crate) async fn periodic(&self) -> Result<(), ComputeError> {
        let hosts = self.inner.hosts.read().await.clone();
        for (name, h) in hosts {
            match h.agent.list().await {
                Ok(vms) => {
                    if let Some(x) = self.inner.hosts.write().await.get_mut(&name) {
                        x.missed = 0;
                    }
                    self.refresh_accelerator(&name, &h).await?;
                    if !h.up {
                        // Fence first: a host back from the dead serves
                        // nothing before its evacuated copies are gone.
                        if let Err(e) = self.destroy_stale_copies(&name, &h.agent, &vms).await {
                            tracing::warn!(host = %name, "cannot destroy stale copies yet: {e}");
                            continue;
                        }
                        if let Ok(info) = h.agent.host_info().await {
                            let mut hosts = self.inner.hosts.write().await;
                            if let Some(x) = hosts.get_mut(&name) {
                                x.host.driver = info.driver.clone();
                                x.host.accelerator = info.accelerator.clone();
                                x.host.capacity = Resources {
                                    vcpus: (info.vcpus as f64 * self.inner.cfg.cpu_allocation_ratio)
                                        .floor() as u32,
                                    ram_mb: info.ram_mb,
                                    disk_gb: info.disk_gb,
                                };
                                x.host.last_seen = Some(now());
                                let rec = x.host.clone();
                                drop(hosts);
                                self.inner.store.put(&rec).await?;
                            }
                        }
                        self.set_host_up(&name, true).await?;
                        self.event(NewEvent {
                            level: Level::Info,
                            server_id: None,
                            project_id: None,
                            workflow_id: None,
                            step: None,
                            message: format!("host {name} is up"),
                        })
                        .await;
                    }
                    let servers = self
                        .inner
                        .store
                        .list_servers(&ServerQuery {
                            host: Some(name.clone()),
                            ..Default::default()
                        })
                        .await?;
                    for s in servers {
                        let actual = vms
                            .iter()
                            .find(|v| v.name == s.instance_name)
                            .map(|v| v.power_state)
                            .unwrap_or(PowerState::NoState);
                        self.sync_power_state(&s, actual).await?;
                    }
                }
                Err(e) => {
                    let missed = {
                        let mut hosts = self.inner.hosts.write().await;
                        match hosts.get_mut(&name) {
                            Some(x) => {
                                x.missed += 1;
                                x.missed
                            }
                            None => continue,
                        }
                    };
                    let limit = self.inner.cfg.host_down_after.max(1);
                    if h.up && missed < limit {
                        tracing::warn!(host = %name, "missed heartbeat {missed} of {limit}: {e}");
                    }
                    if h.up && missed >= limit {
                        self.set_host_up(&name, false).await?;
                        self.event(NewEvent {
                            level: Level::Error,
                            server_id: None,
                            project_id: None,
                            workflow_id: None,
                            step: None,
                            message: format!(
                                "host {name} is down after {missed} missed heartbeats: {e}"
                            ),
                        })
                        .await;
                    }
                }
            }
        }
        if let Err(e) = self.settle_interface_ops().await {
            tracing::warn!("interrupted interface changes: {e}");
        }
        self.dataplane_best_effort().await;
        self.reclaim().await
    }

    /// Keeps the host record's accelerator that of the host (a qemu host
    /// falls back from KVM to TCG when KVM fails a guest).
    async fn refresh_accelerator(&self, name: &str, h: &HostHandle) -> Result<(), ComputeError> {
        let Ok(info) = h.agent.host_info().await else {
            return Ok(());
        };
        if info.accelerator == h.host.accelerator {
            return Ok(());
        }
        if let Some(mut host) = self.inner.store.get::<Host>(name).await? {
            host.accelerator = info.accelerator.clone();
            self.inner.store.put(&host).await?;
        }
        if let Some(live) = self.inner.hosts.write().await.get_mut(name) {
            live.host.accelerator = info.accelerator.clone();
        }
        self.event(NewEvent {
            level: Level::Warn,
            server_id: None,
            project_id: None,
            workflow_id: None,
            step: None,
            message: format!(
                "host {name} now uses accelerator {} (was {})",
                info.accelerator, h.host.accelerator
            ),
        })
        .await;
        Ok(())
    }

    /// Nova's `_sync_power_states`: a server idle in ACTIVE whose VM is found
    /// off is recorded as stopped; the power state always follows the host.
    async fn sync_power_state(&self, s: &Server, actual: PowerState) -> Result<(), ComputeError> {
        if s.task_state.is_some() || s.power_state == actual {
            return Ok(());
        }
        let stopped_outside = s.vm_state == VmState::Active
            && matches!(
                actual,
                PowerState::Shutdown | PowerState::Crashed | PowerState::NoState
            );
        self.mutate_server(&s.id, |x| {
            if x.task_state.is_none() {
                x.power_state = actual;
                if stopped_outside && x.vm_state == VmState::Active {
                    x.vm_state = VmState::Stopped;
                }
            }
            Ok(())
        })
        .await?;
        self.event(NewEvent {
            level: if stopped_outside {
                Level::Warn
            } else {
                Level::Info
            },
            server_id: Some(s.id.clone()),
            project_id: Some(s.project_id.clone()),
            workflow_id: None,
            step: None,
            message: format!(
                "power state changed outside Lifeboat: {} -> {}{}",
                s.power_state.name(),
                actual.name(),
                if stopped_outside {
                    "; server marked stopped"
                } else {
                    ""
                }
            ),
        })
        .await;
        Ok(())
    }

    async fn reclaim(&self) -> Result<(), ComputeError> {
        let interval = self.inner.cfg.reclaim_instance_interval as i64;
        if interval <= 0 {
            return Ok(());
        }
        let soft = self
            .inner
            .store
            .list_servers(&ServerQuery {
                vm_states: Some(vec![VmState::SoftDeleted]),
                ..Default::default()
            })
            .await?;
        for s in soft {
            let due = s
                .deleted_at
                .is_some_and(|t| (now() - t).num_seconds() >= interval);
            if due && s.task_state.is_none() {
                let _ = self.reclaim_one(s).await;
            }
        }
        Ok(())
    }
}
