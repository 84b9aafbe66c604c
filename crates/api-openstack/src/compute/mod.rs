//! Compute v2.1 servers: views (`views`), request parsing (`parse`,
//! `actions::parse_action`) and the handlers (`servers`, `actions`), apart.

pub mod actions;
pub mod interfaces;
pub mod parse;
pub mod servers;
pub mod views;

pub use servers::get_server;
pub use views::{Render, View};

use axum::Router;

use crate::Ctx;

/// The server and server action routes.
pub fn routes() -> Router<Ctx> {
    servers::routes()
        .merge(actions::routes())
        .merge(interfaces::routes())
}

#[cfg(test)]
mod tests;
