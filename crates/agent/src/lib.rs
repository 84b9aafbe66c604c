//! The host agent: the only component that drives a hypervisor.
//!
//! The manager holds one [`Hypervisor`] per host. For the host of a
//! single-node install that is the driver itself (in-process agent); for
//! other hosts it is a [`RemoteAgent`], which sends each call as one
//! [`AgentRequest`] over HTTPS/JSON to `lifeboat agent` on that host, where
//! [`router`] hands it to the local driver. The channel is mutually
//! authenticated TLS ([`tls`]: the agent's certificate pinned by the manager,
//! the manager's client certificate signed by its CA), and calls carry a
//! shared bearer token inside it.

mod client;
mod protocol;
mod server;
pub mod tls;

pub use client::RemoteAgent;
pub use protocol::{AgentRequest, AgentResponse};
pub use server::{dispatch, router};
