use lifeboat_hypervisor::HvError;
use serde::{Deserialize, Serialize};

/// Generates [`AgentRequest`] from [`lifeboat_hypervisor::host_primitives!`].
macro_rules! define_agent_request {
    ($( $(#[doc = $doc:literal])* $variant:ident => fn $method:ident( $( $arg:ident : $bty:ty as $oty:ty ),* ) -> $ret:ty; )*) => {
        /// One driver call, as sent to a host agent: one variant per
        /// [`lifeboat_hypervisor::Hypervisor`] primitive, with the method's
        /// arguments in owned form (`{"op": "stop", "name": .., "timeout_secs": ..}`).
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "op", rename_all = "snake_case")]
        pub enum AgentRequest {
            $(
                $(#[doc = $doc])*
                #[allow(missing_docs)]
                $variant { $( $arg: $oty ),* },
            )*
        }
    };
}

lifeboat_hypervisor::host_primitives!(define_agent_request);

/// The agent's answer: the call's JSON result or the driver error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentResponse {
    /// Success with the result value.
    Ok(serde_json::Value),
    /// Driver error.
    Err(HvError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form stays what agents of earlier versions speak.
    #[test]
    fn wire_form() {
        let r = AgentRequest::Stop {
            name: "vm1".into(),
            timeout_secs: 30,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"op": "stop", "name": "vm1", "timeout_secs": 30})
        );
        let r: AgentRequest = serde_json::from_str(r#"{"op":"host_info"}"#).unwrap();
        assert!(matches!(r, AgentRequest::HostInfo {}));
        let r: AgentRequest = serde_json::from_str(r#"{"op":"list"}"#).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"op":"list"}"#);
    }
}
