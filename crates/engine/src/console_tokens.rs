//! Serial console tokens: handed out by `remote-consoles`, good for one
//! connection within 10 minutes, bound to the server and to the user who
//! asked, and dead once the server is deleted or the user lost access.

use std::time::{Duration, Instant};

use lifeboat_core::{Actor, VmState};

use crate::Engine;

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
    /// The console socket on the host.
    pub socket: String,
    /// Unused tokens expire.
    pub expires: Instant,
}

impl Engine {
    /// Issues a single-use console token for `server_id`'s `socket`.
    pub(crate) fn issue_console_token(
        &self,
        actor: &Actor,
        server_id: &str,
        socket: String,
    ) -> String {
        let token = lifeboat_core::ids::uuid();
        let mut map = self.inner.consoles.lock().unwrap();
        map.retain(|_, g| g.expires > Instant::now());
        map.insert(
            token.clone(),
            ConsoleGrant {
                server_id: server_id.into(),
                user_id: actor.user_id.clone(),
                project_id: actor.project_id.clone(),
                socket,
                expires: Instant::now() + CONSOLE_TOKEN_TTL,
            },
        );
        token
    }

    /// Redeems a console token: `(server id, console socket)` when it is
    /// unused and unexpired, its server still exists, and the user who
    /// asked may still see that server. The token is spent either way.
    pub async fn console_target(&self, token: &str) -> Option<(String, String)> {
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
        Some((grant.server_id, grant.socket))
    }
}
