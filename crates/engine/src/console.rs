//! The console service: a server's console output, and serial console
//! tokens handed out by `remote-consoles`, good for one connection within
//! 10 minutes, bound to the server and to the user who asked, and dead once
//! the server is deleted or the user lost access.

use std::time::{Duration, Instant};

use lifeboat_core::{ActionDenied, Actor, Server, VmState};
use std::sync::Arc;

use lifeboat_hypervisor::{ConsoleStream, HvError, Hypervisor};

use crate::{ActionOutcome, ComputeError, Engine, Field, Reason};

/// How long an unused console token stays valid.
const CONSOLE_TOKEN_TTL: Duration = Duration::from_secs(600);

/// What a console token grants.
#[derive(Debug, Clone)]
pub(crate) struct ConsoleGrant {
    /// The server.
    pub server_id: String,
    /// The user who asked, and the project they asked in.
    pub user_id: String,
    pub project_id: String,
    /// Unused tokens expire.
    pub expires: Instant,
}

impl Engine {
    /// The last `length` lines (None or -1: all) of a server's console log.
    pub(crate) async fn console_output(
        &self,
        s: &Server,
        length: Option<i64>,
    ) -> Result<ActionOutcome, ComputeError> {
        let lines = match length {
            None | Some(-1) => None,
            Some(n) if n < -1 => return Err(Reason::InvalidField(Field::Length).into()),
            Some(n) => Some(n as usize),
        };
        let output = self
            .agent_for(s.host.as_deref().unwrap_or_default())
            .await?
            .console_output(&s.instance_name, lines)
            .await
            .map_err(|e| match e {
                HvError::NotFound(_) => ComputeError::Rejected(Reason::NotOnHost {
                    server: s.id.clone(),
                }),
                e => e.into(),
            })?;
        Ok(ActionOutcome::ConsoleOutput { output })
    }

    /// A serial console URL with a fresh single-use token (other console
    /// types are unavailable).
    pub(crate) async fn remote_console(
        &self,
        actor: &Actor,
        s: &Server,
        protocol: String,
        console_type: String,
    ) -> Result<ActionOutcome, ComputeError> {
        let unavailable = || -> ComputeError {
            Reason::UnavailableConsole {
                console_type: console_type.clone(),
            }
            .into()
        };
        let Some(base) = self.inner.cfg.serial_console_url.clone() else {
            return Err(unavailable());
        };
        if protocol != "serial" || console_type != "serial" {
            return Err(unavailable());
        }
        // The console must be there now (the stream is opened when the
        // token is redeemed, through the host agent of the server's host then).
        self.agent_for(s.host.as_deref().unwrap_or_default())
            .await?
            .console_socket(&s.instance_name)
            .await
            .map_err(|e| match e {
                HvError::Unsupported(_) => unavailable(),
                e if e.refuses_state() || matches!(e, HvError::NotFound(_)) => {
                    ActionDenied::NotReady {
                        server_id: s.id.clone(),
                    }
                    .into()
                }
                e => e.into(),
            })?;
        let token = self.issue_console_token(actor, &s.id);
        Ok(ActionOutcome::RemoteConsole {
            protocol,
            console_type,
            url: format!("{base}?token={token}"),
        })
    }

    /// Issues a single-use console token for `server_id`'s serial console.
    pub(crate) fn issue_console_token(&self, actor: &Actor, server_id: &str) -> String {
        let token = lifeboat_core::ids::uuid();
        let mut map = self.inner.consoles.lock().unwrap();
        map.retain(|_, g| g.expires > Instant::now());
        map.insert(
            token.clone(),
            ConsoleGrant {
                server_id: server_id.into(),
                user_id: actor.user_id.clone(),
                project_id: actor.project_id.clone(),
                expires: Instant::now() + CONSOLE_TOKEN_TTL,
            },
        );
        token
    }

    /// Redeems a console token: `(server id, its console)` when it is
    /// unused and unexpired, its server still exists, and the user who
    /// asked may still see that server. The token is spent either way.
    pub async fn console_target(&self, token: &str) -> Option<(String, ConsoleTarget)> {
        let grant = {
            let mut map = self.inner.consoles.lock().unwrap();
            map.retain(|_, g| g.expires > Instant::now());
            map.remove(token)?
        };
        let actor = self
            .actor_for(&grant.user_id, &grant.project_id)
            .await
            .ok()?;
        let s = self.server(&actor, &grant.server_id).await.ok()?;
        if s.vm_state == VmState::Deleted {
            return None;
        }
        let agent = self
            .agent_for(s.host.as_deref().unwrap_or_default())
            .await
            .ok()?;
        Some((
            grant.server_id,
            ConsoleTarget {
                agent,
                instance_name: s.instance_name,
            },
        ))
    }
}

/// The serial console a redeemed token leads to: the VM on the host it is
/// on now, reached through that host's agent.
pub struct ConsoleTarget {
    agent: Arc<dyn Hypervisor>,
    instance_name: String,
}

impl ConsoleTarget {
    /// Opens the console stream (for a remote host, carried by its agent).
    pub async fn open(&self) -> Result<ConsoleStream, HvError> {
        self.agent.open_console(&self.instance_name).await
    }
}

/// The `console_output` action's handler.
pub(crate) async fn output(
    e: &Engine,
    _actor: &Actor,
    s: Server,
    _action: lifeboat_core::Action,
    length: Option<i64>,
) -> Result<ActionOutcome, ComputeError> {
    e.console_output(&s, length).await
}

/// The `remote_console` action's handler.
pub(crate) async fn remote(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: lifeboat_core::Action,
    protocol: String,
    console_type: String,
) -> Result<ActionOutcome, ComputeError> {
    e.remote_console(actor, &s, protocol, console_type).await
}
