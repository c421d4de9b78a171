//! What the lab asks of its nodes: did the agent's units succeed, what does `mc status` say.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::cluster::Lab;
use super::node::LabNode;
use crate::process::wait_until;

/// The agent binary on a node (the contract's layout).
pub const MC: &str = "/opt/bin/mc";

/// The agent's two oneshot units.
pub const MC_UNITS: [&str; 2] = ["mc.service", "mc-network.service"];

/// `(ActiveState, Result)` of a unit.
pub fn unit_outcome(node: &LabNode, unit: &str) -> Result<(String, String)> {
    let out = node.exec(&[
        "systemctl",
        "show",
        "-p",
        "ActiveState",
        "-p",
        "Result",
        unit,
    ])?;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_string()
    };
    Ok((field("ActiveState"), field("Result")))
}

/// Waits until both agent units of `node` are active with result `success`. Fails at once,
/// with the unit's journal, if one failed for good; a unit waiting to be restarted after a
/// failure (`activating`: `mc.service` retries, docs/operations.md) is still pending, and its
/// journal is in the error if it never succeeds in time. Fails after a few seconds if a unit
/// sits inactive with no start job queued while the system has finished starting (its job was
/// lost — by PID 1 breaking an ordering cycle, see [`LabNode::ordering_cycles`], or by a
/// `daemon-reload` issued during the boot transaction, cf. systemd/systemd#23615).
pub fn wait_agent_units(node: &LabNode, timeout: Duration) -> Result<()> {
    let mut idle_polls = 0;
    let mut retried: Vec<&str> = Vec::new();
    let result = wait_until(
        &format!("the agent units on {}", node.name),
        timeout,
        Duration::from_millis(250),
        || {
            let mut done = true;
            for unit in MC_UNITS {
                let (state, result) = unit_outcome(node, unit)?;
                let failed = result != "success" && !result.is_empty();
                if state == "failed" || (failed && state != "activating") {
                    bail!(
                        "{unit} on {} ended {state}/{result}; its journal:\n{}",
                        node.name,
                        node.journal(unit, 60)
                    );
                }
                if failed && !retried.contains(&unit) {
                    retried.push(unit);
                }
                done &= state == "active";
            }
            if !done && nothing_queued(node)? {
                idle_polls += 1;
                if idle_polls >= 20 {
                    let states: Vec<String> = MC_UNITS
                        .iter()
                        .map(|u| {
                            let (state, result) = unit_outcome(node, u).unwrap_or_default();
                            format!("{u} {state}/{result}")
                        })
                        .collect();
                    bail!(
                        "{}: systemd has no jobs left but the agent did not finish ({}); \
                         the start job was dropped",
                        node.name,
                        states.join(", ")
                    );
                }
            } else {
                idle_polls = 0;
            }
            Ok(done.then_some(()))
        },
    );
    result.with_context(|| {
        retried
            .iter()
            .map(|unit| {
                format!(
                    "{unit} failed and was retried; its journal:\n{}",
                    node.journal(unit, 60)
                )
            })
            .collect::<String>()
    })
}

/// How many times systemd restarted `unit` on `node` after a failure (`NRestarts`).
pub fn restarts(node: &LabNode, unit: &str) -> Result<u32> {
    let out = node.exec(&["systemctl", "show", "-p", "NRestarts", "--value", unit])?;
    out.trim()
        .parse()
        .with_context(|| format!("{}: NRestarts of {unit} is {out:?}", node.name))
}

/// How long a node may take to finish booting.
pub const BOOT: Duration = Duration::from_secs(120);

/// How long the agent's units (and `mc status`) may take to report a converged node.
pub const CONVERGE: Duration = Duration::from_secs(180);

/// Unwraps, or fails the test with what every running node has to say.
pub fn check<T>(lab: &Lab, what: &str, result: Result<T>) -> T {
    result.unwrap_or_else(|err| panic!("{what}: {err:#}\n{}", lab.diagnose()))
}

/// `(name, "ok")` for each of `names`: what [`wait_status`] waits for on a healthy cluster.
pub fn all_ok(names: &[String]) -> Vec<(&str, &str)> {
    names.iter().map(|n| (n.as_str(), "ok")).collect()
}

/// Boot finished with no ordering cycle in its transaction, both agent units succeeded
/// (panics with the lab's diagnosis otherwise).
pub fn wait_node(lab: &Lab, name: &str) {
    let node = lab.node(name);
    check(
        lab,
        &format!("{name} boots"),
        node.wait_booted(BOOT).map(|_| ()),
    );
    // A cycle makes PID 1 drop a random job of it at every boot (etcd, mc, docker.socket…).
    let cycles = check(lab, "systemd-analyze verify", node.ordering_cycles());
    assert!(
        cycles.is_empty(),
        "{name}'s boot transaction has an ordering cycle:\n{}\n{}",
        cycles.join("\n"),
        lab.diagnose()
    );
    check(
        lab,
        &format!("{name} converges"),
        wait_agent_units(node, CONVERGE),
    );
}

/// True when the node's systemd has finished starting and has no job queued.
fn nothing_queued(node: &LabNode) -> Result<bool> {
    let jobs = node.exec(&["systemctl", "list-jobs", "--no-legend", "--no-pager"])?;
    let state = node.exec_output(&["systemctl", "is-system-running"])?;
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    Ok(jobs.trim().is_empty() && (state == "running" || state == "degraded"))
}

/// `mc status --json` run on `node`, as a list of node views.
pub fn mc_status(node: &LabNode) -> Result<Vec<Value>> {
    let out = node.exec_output(&[MC, "status", "--json"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "mc status --json on {} printed no JSON ({}): {text}{}",
            node.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let list = match v {
        Value::Array(items) => items,
        Value::Object(ref map) if map.get("nodes").is_some_and(Value::is_array) => {
            map["nodes"].as_array().cloned().unwrap_or_default()
        }
        other => bail!("unexpected mc status --json shape: {other}"),
    };
    Ok(list)
}

/// `name → health` from an `mc status` list.
pub fn healths(status: &[Value]) -> Vec<(String, String)> {
    status
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("?").to_string(),
                n["health"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// Waits until `mc status` on `on` reports exactly the lab's nodes with the wanted health each.
pub fn wait_status(lab: &Lab, on: &str, want: &[(&str, &str)], timeout: Duration) -> Result<()> {
    let mut last = Vec::new();
    let result = wait_until(
        &format!("mc status on {on} to show {want:?}"),
        timeout,
        Duration::from_millis(500),
        || {
            let status = mc_status(lab.node(on))?;
            last = healths(&status);
            let wanted: Vec<(String, String)> = want
                .iter()
                .map(|(n, h)| (n.to_string(), h.to_string()))
                .collect();
            Ok((last == wanted).then_some(()))
        },
    );
    result.with_context(|| format!("last seen: {last:?}"))
}
