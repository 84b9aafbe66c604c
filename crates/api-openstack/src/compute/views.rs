//! Nova's server views per microversion
//! (`nova/api/openstack/compute/views/servers.py`).

use std::collections::HashMap;

use lifeboat_core::{Actor, Image, Server, Status, VmState};
use serde_json::{json, Map, Value};

use crate::fault::R;
use crate::microversion::Mv;
use crate::{isotime, naive_time, Ctx};

/// Which of Nova's server views to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `GET /servers/{id}` (server_groups from 2.71).
    Show,
    /// One entry of `GET /servers/detail`.
    Detail,
    /// PUT and rebuild responses: the reduced show view before 2.75, the
    /// full one (with server_groups) from 2.75.
    Update,
}

/// What rendering needs besides the server.
pub struct Render<'a> {
    /// Front state.
    pub ctx: &'a Ctx,
    /// Request microversion.
    pub mv: Mv,
    /// Caller (admin-only fields).
    pub actor: &'a Actor,
    /// Images by id (for the 2.98 embedded image properties).
    pub images: HashMap<String, Image>,
    /// Host name → host_status (`UP`, `DOWN`, `MAINTENANCE`).
    pub host_status: HashMap<String, &'static str>,
}

impl<'a> Render<'a> {
    /// Loads what the microversion and the caller need.
    pub async fn load(ctx: &'a Ctx, mv: Mv, actor: &'a Actor) -> R<Render<'a>> {
        let images = if mv.ge(98) {
            ctx.engine
                .images(actor)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect()
        } else {
            HashMap::new()
        };
        let host_status = if mv.ge(16) && actor.is_admin() {
            ctx.engine
                .hosts()
                .await
                .into_iter()
                .map(|(h, up)| {
                    let st = if !up {
                        "DOWN"
                    } else if !h.enabled {
                        "MAINTENANCE"
                    } else {
                        "UP"
                    };
                    (h.name, st)
                })
                .collect()
        } else {
            HashMap::new()
        };
        Ok(Render {
            ctx,
            mv,
            actor,
            images,
            host_status,
        })
    }

    /// `[{"rel": "self", ...}, {"rel": "bookmark", ...}]` of a resource.
    pub fn links(&self, collection: &str, id: &str) -> Value {
        json!([
            {"rel": "self", "href": format!("{}/{collection}/{id}", self.ctx.compute_url())},
            {"rel": "bookmark", "href": format!("{}/{collection}/{id}", self.ctx.bookmark_url())},
        ])
    }

    /// The brief entry of `GET /servers`.
    pub fn basic(&self, s: &Server) -> Value {
        json!({"id": s.id, "name": s.name, "links": self.links("servers", &s.id)})
    }

    fn status(s: &Server) -> Status {
        if s.vm_state == VmState::Deleted {
            Status::Deleted
        } else {
            s.status()
        }
    }

    /// `addresses`; empty while building. `extended` adds the OS-EXT-IPS keys.
    pub fn addresses(s: &Server, extended: bool) -> Value {
        if s.vm_state == VmState::Building {
            return json!({});
        }
        let mut out = Map::new();
        for (net, addrs) in s.addresses() {
            let list: Vec<Value> = addrs
                .into_iter()
                .map(|(addr, ty, mac)| {
                    let mut a = json!({"version": 4, "addr": addr});
                    if extended {
                        a["OS-EXT-IPS:type"] = json!(ty);
                        a["OS-EXT-IPS-MAC:mac_addr"] = json!(mac);
                    }
                    a
                })
                .collect();
            out.insert(net, Value::Array(list));
        }
        Value::Object(out)
    }

    fn image(&self, s: &Server) -> Value {
        let Some(id) = &s.image_id else {
            return json!("");
        };
        let mut v = json!({
            "id": id,
            "links": [{"rel": "bookmark", "href": format!("{}/images/{id}", self.ctx.bookmark_url())}],
        });
        if self.mv.ge(98) {
            let mut props = Map::new();
            if let Some(img) = self.images.get(id) {
                for (k, val) in &img.properties {
                    props.insert(k.clone(), json!(val));
                }
                props.insert("container_format".into(), json!(img.container_format));
                props.insert("disk_format".into(), json!(img.disk_format));
                props.insert("min_disk".into(), json!(img.min_disk.to_string()));
                props.insert("min_ram".into(), json!(img.min_ram.to_string()));
            }
            v["properties"] = Value::Object(props);
        }
        v
    }

    fn flavor(&self, s: &Server) -> Value {
        let f = &s.flavor;
        if self.mv.ge(47) {
            // os_compute_api:os-flavor-extra-specs:index is allowed to
            // project readers by default, so extra_specs is always shown.
            json!({
                "vcpus": f.vcpus,
                "ram": f.ram,
                "disk": f.disk,
                "ephemeral": f.ephemeral,
                "swap": f.swap,
                "original_name": f.original_name,
                "extra_specs": f.extra_specs,
            })
        } else {
            json!({
                "id": f.id,
                "links": [{"rel": "bookmark", "href": format!("{}/flavors/{}", self.ctx.bookmark_url(), f.id)}],
            })
        }
    }

    fn fault(&self, s: &Server) -> Option<Value> {
        let f = s.fault.as_ref()?;
        let mut v = json!({
            "code": f.code,
            "created": isotime(&f.created),
            "message": crate::nova::fault_message(f),
        });
        if let Some(d) = &f.details {
            if self.actor.is_admin() || f.code != 500 {
                v["details"] = json!(d);
            }
        }
        Some(v)
    }

    /// The detailed server view.
    pub fn show(&self, s: &Server, view: View) -> Value {
        let mv = self.mv;
        let admin = self.actor.is_admin();
        // Before 2.75, PUT and rebuild responses skip most extensions.
        let reduced = view == View::Update && !mv.ge(75);
        let status = Self::status(s);
        let mut o = Map::new();
        let mut put = |k: &str, v: Value| {
            o.insert(k.to_string(), v);
        };
        put("id", json!(s.id));
        put("name", json!(s.name));
        put("status", json!(status.as_str()));
        put("tenant_id", json!(s.project_id));
        put("user_id", json!(s.user_id));
        put("metadata", json!(s.metadata));
        put("hostId", json!(s.host_id()));
        put("image", self.image(s));
        put("flavor", self.flavor(s));
        put("created", json!(isotime(&s.created_at)));
        put("updated", json!(isotime(&s.updated_at)));
        put("addresses", Self::addresses(s, !reduced));
        put("accessIPv4", json!(s.access_ipv4));
        put("accessIPv6", json!(s.access_ipv6));
        put("links", self.links("servers", &s.id));
        put("OS-DCF:diskConfig", json!(s.disk_config));
        if matches!(status, Status::Error | Status::Deleted) {
            if let Some(f) = self.fault(s) {
                put("fault", f);
            }
        }
        if matches!(
            status,
            Status::Active
                | Status::Build
                | Status::Rebuild
                | Status::Resize
                | Status::VerifyResize
                | Status::Migrating
        ) {
            put("progress", json!(s.progress));
        }
        if !reduced {
            put(
                "OS-EXT-AZ:availability_zone",
                json!(s.availability_zone.clone().unwrap_or_default()),
            );
            put(
                "config_drive",
                json!(if s.config_drive { "True" } else { "" }),
            );
            put("key_name", json!(s.key_name));
            put(
                "OS-SRV-USG:launched_at",
                json!(s.launched_at.as_ref().map(naive_time)),
            );
            put(
                "OS-SRV-USG:terminated_at",
                json!(s.terminated_at.as_ref().map(naive_time)),
            );
            if view != View::Detail && !s.security_groups.is_empty() {
                put("security_groups", Self::security_groups(s));
            }
            if admin {
                put("OS-EXT-SRV-ATTR:host", json!(s.host));
                put("OS-EXT-SRV-ATTR:instance_name", json!(s.instance_name));
                put("OS-EXT-SRV-ATTR:hypervisor_hostname", json!(s.node));
                if mv.ge(3) {
                    put("OS-EXT-SRV-ATTR:reservation_id", json!(s.reservation_id));
                    put("OS-EXT-SRV-ATTR:launch_index", json!(s.launch_index));
                    put("OS-EXT-SRV-ATTR:hostname", json!(s.hostname));
                    put("OS-EXT-SRV-ATTR:kernel_id", json!(s.kernel_id));
                    put("OS-EXT-SRV-ATTR:ramdisk_id", json!(s.ramdisk_id));
                    put(
                        "OS-EXT-SRV-ATTR:root_device_name",
                        json!(s.root_device_name),
                    );
                    put("OS-EXT-SRV-ATTR:user_data", json!(s.user_data));
                }
            } else if mv.ge(90) {
                put("OS-EXT-SRV-ATTR:hostname", json!(s.hostname));
            }
            put(
                "OS-EXT-STS:task_state",
                json!(s.task_state.map(|t| t.as_str())),
            );
            put("OS-EXT-STS:vm_state", json!(s.vm_state.as_str()));
            put("OS-EXT-STS:power_state", json!(s.power_state.code()));
            put("os-extended-volumes:volumes_attached", json!([]));
            if mv.ge(16) && admin {
                let hs = match &s.host {
                    None => "",
                    Some(h) => self.host_status.get(h).copied().unwrap_or("UNKNOWN"),
                };
                put("host_status", json!(hs));
            }
        }
        if mv.ge(9) {
            put("locked", json!(s.locked));
        }
        if mv.ge(73) {
            put("locked_reason", json!(s.locked_reason));
        }
        if mv.ge(19) {
            put("description", json!(s.description));
        }
        if mv.ge(26) {
            put("tags", json!(s.tags));
        }
        if mv.ge(63) {
            put(
                "trusted_image_certificates",
                json!(s.trusted_image_certificates),
            );
        }
        let groups = match view {
            View::Show => mv.ge(71),
            View::Update => mv.ge(71),
            View::Detail => false,
        };
        if groups {
            put("server_groups", json!(s.server_groups));
        }
        if mv.ge(96) {
            put(
                "pinned_availability_zone",
                json!(s.pinned_availability_zone),
            );
        }
        if mv.ge(100) {
            put("scheduler_hints", json!(s.scheduler_hints));
        }
        Value::Object(o)
    }

    fn security_groups(s: &Server) -> Value {
        json!(s
            .security_groups
            .iter()
            .map(|g| json!({"name": g}))
            .collect::<Vec<_>>())
    }

    /// One entry of `/servers/detail` (security groups added like Nova's
    /// separate pass).
    pub fn detail(&self, s: &Server) -> Value {
        let mut v = self.show(s, View::Detail);
        if !s.security_groups.is_empty() {
            v["security_groups"] = Self::security_groups(s);
        }
        v
    }
}
