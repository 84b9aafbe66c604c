//! Networks, subnets, ports, floating IPs, security groups and routers in the native
//! API. The engine's networking service does the work (the same one the
//! OpenStack Networking front calls, so both see the same records, roles and
//! tenant isolation); this module parses, resolves names and renders flat
//! native views.
//!
//! One file per resource (`networks`, `subnets`, `ports`, `floating_ips`,
//! `security_groups`, `routers`), each with its views, requests and
//! handlers; `common` holds the error mapping and name resolution.

mod common;
mod floating_ips;
mod networks;
mod ports;
mod routers;
mod security_groups;
mod subnets;

pub use floating_ips::*;
pub use networks::*;
pub use ports::*;
pub use routers::*;
pub use security_groups::*;
pub use subnets::*;
