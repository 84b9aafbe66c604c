//! Resource models, one file per resource.

mod event;
mod flavor;
mod host;
mod identity;
mod image;
mod network;
mod server;
mod workflow;

pub use event::*;
pub use flavor::*;
pub use host::*;
pub use identity::*;
pub use image::*;
pub use network::*;
pub use server::*;
pub use workflow::*;

/// Timestamps are UTC.
pub type Time = chrono::DateTime<chrono::Utc>;

/// Now, truncated to microseconds (what every store keeps).
pub fn now() -> Time {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
