use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{FaultReason, Time};

/// Lifecycle of a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowState {
    /// Steps are being run.
    Running,
    /// A step failed; completed steps are being undone.
    RollingBack,
    /// All steps done.
    Completed,
    /// Rolled back after a failure.
    RolledBack,
    /// Failed and could not be rolled back fully (server left in ERROR).
    Failed,
}

impl WorkflowState {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Running => "running",
            WorkflowState::RollingBack => "rolling_back",
            WorkflowState::Completed => "completed",
            WorkflowState::RolledBack => "rolled_back",
            WorkflowState::Failed => "failed",
        }
    }
    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => WorkflowState::Running,
            "rolling_back" => WorkflowState::RollingBack,
            "completed" => WorkflowState::Completed,
            "rolled_back" => WorkflowState::RolledBack,
            "failed" => WorkflowState::Failed,
            _ => return None,
        })
    }
    /// Whether the workflow is finished.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            WorkflowState::Completed | WorkflowState::RolledBack | WorkflowState::Failed
        )
    }
}

/// State of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Started (persisted before running it).
    Running,
    /// Finished (persisted after running it).
    Done,
    /// Failed.
    Failed,
    /// Undone during rollback.
    Undone,
}

/// A step's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// State.
    pub state: StepState,
    /// Started.
    #[schema(value_type = Option<String>)]
    pub started_at: Option<Time>,
    /// Finished.
    #[schema(value_type = Option<String>)]
    pub finished_at: Option<Time>,
    /// Attempts (a resumed step runs again).
    pub attempts: u32,
}

/// A durable workflow: a named list of steps persisted before and after each
/// step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    /// UUID.
    pub id: String,
    /// Kind (create, reboot, resize, ...).
    pub kind: String,
    /// Server concerned.
    pub server_id: Option<String>,
    /// Project.
    pub project_id: Option<String>,
    /// Requesting user.
    pub user_id: Option<String>,
    /// Request id (`req-<uuid>`), shown in instance actions.
    pub request_id: String,
    /// State.
    pub state: WorkflowState,
    /// Steps in order.
    pub steps: Vec<StepRecord>,
    /// Parameters (secrets are removed once used).
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Error message of the failed step.
    pub error: Option<String>,
    /// The failed step's typed reason, when it has one a front words itself
    /// (recorded in the server's fault).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FaultReason>,
    /// Created.
    #[schema(value_type = String)]
    pub created_at: Time,
    /// Updated.
    #[schema(value_type = String)]
    pub updated_at: Time,
}
