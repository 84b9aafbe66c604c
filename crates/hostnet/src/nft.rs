//! nftables through its JSON API (`nft -j -f -`), one atomic transaction per call.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::{netns, Error};

/// Run a batch of JSON commands in namespace `ns` as one transaction.
pub fn apply(ns: &str, commands: Vec<Value>) -> Result<(), Error> {
    let doc = json!({ "nftables": commands });
    let mut cmd = Command::new("nft");
    cmd.args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    netns::command_in(ns, &mut cmd)?;
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Command(format!("start nft (is nftables installed?): {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(doc.to_string().as_bytes())
        .map_err(|e| Error::Command(format!("write to nft: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Command(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "nft in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The ruleset of a namespace as JSON (`nft -j list ruleset`).
pub fn list(ns: &str) -> Result<Value, Error> {
    let out = netns::run_command(ns, "nft", &["-j", "list", "ruleset"])?;
    serde_json::from_str(&out).map_err(|e| Error::Command(format!("nft JSON: {e}")))
}

/// Commands that replace table `family name` atomically: create it (so the delete cannot
/// fail), delete it, create it again. Chains and rules follow in the same batch.
pub fn replace_table(family: &str, name: &str) -> Vec<Value> {
    vec![
        json!({"add": {"table": {"family": family, "name": name}}}),
        json!({"delete": {"table": {"family": family, "name": name}}}),
        json!({"add": {"table": {"family": family, "name": name}}}),
    ]
}

/// Delete a table if it is there.
pub fn delete_table(ns: &str, family: &str, name: &str) -> Result<(), Error> {
    apply(
        ns,
        vec![
            json!({"add": {"table": {"family": family, "name": name}}}),
            json!({"delete": {"table": {"family": family, "name": name}}}),
        ],
    )
}

/// A base chain.
pub fn base_chain(
    family: &str,
    table: &str,
    name: &str,
    kind: &str,
    hook: &str,
    prio: i32,
    policy: &str,
) -> Value {
    json!({"add": {"chain": {"family": family, "table": table, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": policy}}})
}

/// A regular chain.
pub fn chain(family: &str, table: &str, name: &str) -> Value {
    json!({"add": {"chain": {"family": family, "table": table, "name": name}}})
}

/// A rule from expressions.
pub fn rule(family: &str, table: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": family, "table": table, "chain": chain, "expr": expr}}})
}

/// `left op right`.
pub fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

pub fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

pub fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}

pub fn ct(key: &str) -> Value {
    json!({"ct": {"key": key}})
}

/// An address or prefix as nft JSON.
pub fn prefix(net: &ipnet::IpNet) -> Value {
    if net.prefix_len() == net.max_prefix_len() {
        json!(net.addr().to_string())
    } else {
        json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
    }
}

/// An anonymous set.
pub fn set(items: Vec<Value>) -> Value {
    json!({"set": items})
}

pub fn accept() -> Value {
    json!({"accept": null})
}

pub fn drop_() -> Value {
    json!({"drop": null})
}

pub fn ret() -> Value {
    json!({"return": null})
}

pub fn jump(target: &str) -> Value {
    json!({"jump": {"target": target}})
}

pub fn counter() -> Value {
    json!({"counter": null})
}
