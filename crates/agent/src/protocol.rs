use lifeboat_hypervisor::{HvError, ImageRef, MigrationTarget, VmSize, VmSpec};
use serde::{Deserialize, Serialize};

/// One driver call, as sent to a host agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum AgentRequest {
    HostInfo,
    Define {
        spec: VmSpec,
    },
    Destroy {
        name: String,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
        timeout_secs: u64,
    },
    Reboot {
        name: String,
        hard: bool,
    },
    Pause {
        name: String,
    },
    Unpause {
        name: String,
    },
    Suspend {
        name: String,
    },
    Resume {
        name: String,
    },
    Rescue {
        name: String,
        image: ImageRef,
    },
    Unrescue {
        name: String,
    },
    Rebuild {
        name: String,
        image: ImageRef,
    },
    Resize {
        name: String,
        size: VmSize,
    },
    ConfirmResize {
        name: String,
    },
    RevertResize {
        name: String,
    },
    SnapshotDisk {
        name: String,
        dest: String,
    },
    ConsoleOutput {
        name: String,
        lines: Option<usize>,
    },
    CrashDump {
        name: String,
    },
    SetPassword {
        name: String,
        user: String,
        password: String,
    },
    RunMaintenance {
        name: String,
        procedure: String,
    },
    Offload {
        name: String,
    },
    PrepareIncoming {
        spec: VmSpec,
    },
    MigrateTo {
        name: String,
        target: MigrationTarget,
    },
    FinishIncoming {
        name: String,
    },
    ConsoleSocket {
        name: String,
    },
    Status {
        name: String,
    },
    List,
}

/// The agent's answer: the call's JSON result or the driver error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentResponse {
    /// Success with the result value.
    Ok(serde_json::Value),
    /// Driver error.
    Err(HvError),
}
