use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Time;

/// Severity of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Progress and results.
    Info,
    /// Something degraded.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }
}

/// One entry of the event log. Events feed OpsWorks CM DescribeEvents,
/// DRS job logs, Nova instance actions and CLI progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Monotonic id.
    pub id: i64,
    /// When.
    #[schema(value_type = String)]
    pub time: Time,
    /// Severity.
    pub level: Level,
    /// Server concerned, if any.
    pub server_id: Option<String>,
    /// Project of the server (for tenant filtering).
    pub project_id: Option<String>,
    /// Workflow, if any.
    pub workflow_id: Option<String>,
    /// Step name, if any.
    pub step: Option<String>,
    /// Message (never contains secrets).
    pub message: String,
}

/// An event before the store assigns its id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Severity.
    pub level: Level,
    /// Server concerned.
    pub server_id: Option<String>,
    /// Project.
    pub project_id: Option<String>,
    /// Workflow.
    pub workflow_id: Option<String>,
    /// Step.
    pub step: Option<String>,
    /// Message.
    pub message: String,
}
