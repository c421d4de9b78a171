//! Step 4 of `mc converge`: the systemd drop-ins for Docker (mutual TLS on the private IP,
//! default bridge off the flannel network, ordered after flanneld) and flanneld (`--iface`,
//! `--public-ip`).
//!
//! Only files whose content changed are written; if anything changed, systemd reloads once and
//! only the changed units that are already running restart. At boot they are not running yet
//! (`mc.service` is ordered before them), so they simply start with the new configuration.

mod files;
mod manager;
pub mod pending;
mod render;
#[cfg(test)]
mod retry_tests;
mod systemctl;
#[cfg(test)]
mod tests;
pub mod timers;
#[cfg(test)]
mod timers_tests;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use molten_contract::NodeConfig;

use crate::outcome::Done;

pub use manager::{Systemd, TlsPaths};
pub use render::{bridge_arg, dockerd_args, tls_listen_args, DROPIN_NAME, HEADER};
pub use systemctl::Systemctl;

/// What [`converge_units`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitsOutcome {
    /// Drop-ins (re)written because their content changed (paths under the root).
    pub written: Vec<PathBuf>,
    /// Stale drop-ins of ours that the node no longer needs, removed (paths under the root).
    pub removed: Vec<PathBuf>,
    /// Whether `daemon-reload` ran (at most once per run).
    pub reloaded: bool,
    /// Units restarted because their configuration changed while they were running.
    pub restarted: Vec<String>,
    /// Units whose queued start job vanished during our `daemon-reload` (systemd#23615) and
    /// that were enqueued again with `systemctl start --no-block`.
    pub requeued: Vec<String>,
    /// Timers of ours (new or changed) that did not run, started with `start --no-block`.
    pub started: Vec<String>,
    /// Timers of ours the node no longer needs (their files removed) that were still running,
    /// stopped before the reload (which would otherwise leave them failed until a reboot).
    pub stopped: Vec<String>,
    /// Units whose reload or restart an earlier run left undone (it failed), done now.
    pub retried: Vec<String>,
    /// Actions not done because systemd does not run in the managed root, e.g.
    /// `daemon-reload`, `restart docker.service (if active)`.
    pub skipped: Vec<String>,
}

impl UnitsOutcome {
    /// The step's result in the agent's vocabulary: what was written, reloaded, restarted.
    pub fn done(&self) -> Done {
        let result = self;
        let mut parts = Vec::new();
        let names = |paths: &[std::path::PathBuf]| {
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !result.written.is_empty() {
            parts.push(format!("wrote {}", names(&result.written)));
        }
        if !result.removed.is_empty() {
            parts.push(format!("removed {}", names(&result.removed)));
        }
        if !result.retried.is_empty() {
            parts.push(format!(
                "retried what an earlier run left undone for {}",
                result.retried.join(", ")
            ));
        }
        if result.reloaded {
            parts.push("daemon-reload".to_string());
        }
        if !result.requeued.is_empty() {
            parts.push(format!(
                "start jobs lost by the reload enqueued again: {}",
                result.requeued.join(", ")
            ));
        }
        if !result.restarted.is_empty() {
            parts.push(format!("restarted {}", result.restarted.join(", ")));
        }
        if !result.started.is_empty() {
            parts.push(format!("started {}", result.started.join(", ")));
        }
        if !result.stopped.is_empty() {
            parts.push(format!("stopped {}", result.stopped.join(", ")));
        }
        if !result.skipped.is_empty() {
            parts.push(format!(
                "skipped (systemd not running in the root): {}",
                result.skipped.join(", ")
            ));
        }
        if parts.is_empty() {
            return Done::unchanged("drop-ins up to date");
        }
        Done::from_flag(result.changed(), parts.join("; "))
    }

    /// Whether any file changed on disk, or unit actions an earlier run left undone were done.
    pub fn changed(&self) -> bool {
        !self.written.is_empty() || !self.removed.is_empty() || !self.retried.is_empty()
    }
}

/// Writes this node's drop-ins under `<root><layout.unit_dir>`, removes drop-ins of ours it no
/// longer needs, and applies the changes: one `daemon-reload`, then a restart of each changed
/// unit that is active. Actions that were due but failed in an earlier run (recorded in
/// [`pending::PENDING_PATH`]) are done too, though no file changed this time.
///
/// Unit actions happen only when the managed root shows a booted systemd
/// (`<root>/run/systemd/system`, what `sd_booted()` checks) and `systemd` answers; otherwise
/// they are listed in [`UnitsOutcome::skipped`].
pub fn converge_units(
    root: &Path,
    config: &NodeConfig,
    ip: Ipv4Addr,
    tls: &TlsPaths,
    systemd: &dyn Systemd,
) -> anyhow::Result<UnitsOutcome> {
    converge(root, config, ip, tls, systemd, false)
}

/// What the `units` step runs: [`converge_units`] and the agent's own timers
/// ([`converge_timers`]) together, so a first boot reloads systemd once for both.
pub fn converge_node_units(
    root: &Path,
    config: &NodeConfig,
    ip: Ipv4Addr,
    tls: &TlsPaths,
    systemd: &dyn Systemd,
) -> anyhow::Result<UnitsOutcome> {
    converge(root, config, ip, tls, systemd, true)
}

fn converge(
    root: &Path,
    config: &NodeConfig,
    ip: Ipv4Addr,
    tls: &TlsPaths,
    systemd: &dyn Systemd,
    with_timers: bool,
) -> anyhow::Result<UnitsOutcome> {
    let layout = config.os.layout();
    let unit_dir = under_root(root, layout.unit_dir);
    let wanted = render::dropins(config, &layout, ip, tls)?;
    // Built (and checked) before any file is written: a bad setting changes nothing.
    let wanted_timers = if with_timers {
        Some(timers::timers(config, &layout)?)
    } else {
        None
    };

    let mut outcome = UnitsOutcome::default();
    let mut changed_units = BTreeSet::new();
    for dropin in &wanted {
        let path = unit_dir.join(dropin.relative_path());
        if files::write_if_changed(&path, &dropin.content)? {
            tracing::info!(path = %path.display(), unit = %dropin.unit, "wrote drop-in");
            outcome.written.push(path);
            changed_units.insert(dropin.unit.clone());
        }
    }
    let wanted_paths: BTreeSet<PathBuf> = wanted
        .iter()
        .map(|d| unit_dir.join(d.relative_path()))
        .collect();
    for stale in files::owned_dropins(&unit_dir)? {
        if wanted_paths.contains(&stale) {
            continue;
        }
        files::remove_dropin(&stale)?;
        tracing::info!(path = %stale.display(), "removed stale drop-in");
        if let Some(unit) = stale.parent().and_then(render::unit_of_dropin_dir) {
            changed_units.insert(unit);
        }
        outcome.removed.push(stale);
    }

    let mut timers_removed = false;
    let mut removed_timers = BTreeSet::new();
    if let Some(wanted_timers) = &wanted_timers {
        let timer_files = timers::write_timers(&unit_dir, layout.unit_dir, wanted_timers)?;
        timers_removed = !timer_files.removed.is_empty();
        removed_timers = timer_files.removed_timers;
        outcome.written.extend(timer_files.written);
        outcome.removed.extend(timer_files.removed);
        changed_units.extend(timer_files.changed_timers);
    }

    let pending_path = under_root(root, pending::PENDING_PATH);
    let due = pending::read(&pending_path)?;
    if !changed_units.is_empty() || !due.is_empty() || timers_removed {
        if !due.is_empty() {
            tracing::warn!(units = %join(&due), "unit actions an earlier run left undone: retrying");
        }
        let units: BTreeSet<String> = changed_units.union(&due).cloned().collect();
        outcome.retried = due.into_iter().collect();
        let watched = watched_units(config);
        let actions = Actions {
            changed: &units,
            removed_timers: &removed_timers,
            watched: &watched,
        };
        apply(root, systemd, &actions, &pending_path, &mut outcome)?;
    }
    Ok(outcome)
}

/// Writes the agent's own timers ([`timers::timers`]) and their enable links under
/// `<root><layout.unit_dir>`, removes ours the node no longer needs, and applies the change like
/// [`converge_units`]: one `daemon-reload`, then each changed timer restarted if it runs or
/// started if not. Nothing changes on a warm run.
pub fn converge_timers(
    root: &Path,
    config: &NodeConfig,
    systemd: &dyn Systemd,
) -> anyhow::Result<UnitsOutcome> {
    let layout = config.os.layout();
    let unit_dir = under_root(root, layout.unit_dir);
    let wanted = timers::timers(config, &layout)?;
    let files = timers::write_timers(&unit_dir, layout.unit_dir, &wanted)?;
    let mut outcome = UnitsOutcome::default();
    if files.is_empty() {
        return Ok(outcome);
    }
    outcome.written = files.written;
    outcome.removed = files.removed;
    let pending_path = under_root(root, pending::PENDING_PATH);
    let watched = watched_units(config);
    let actions = Actions {
        changed: &files.changed_timers,
        removed_timers: &files.removed_timers,
        watched: &watched,
    };
    apply(root, systemd, &actions, &pending_path, &mut outcome)?;
    Ok(outcome)
}

/// The units ordered after mc.service at boot whose start jobs a reload may lose: the ones we
/// write drop-ins for, Docker's socket and the agent's network stage.
fn watched_units(config: &NodeConfig) -> BTreeSet<String> {
    let layout = config.os.layout();
    [
        layout.docker_unit,
        layout.docker_socket,
        layout.flannel_unit,
        layout.agent_network_unit,
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// What [`apply`] acts on.
struct Actions<'a> {
    /// Units whose files changed: restarted if running (timers started if not).
    changed: &'a BTreeSet<String>,
    /// Timers of ours whose files were removed: stopped if running.
    removed_timers: &'a BTreeSet<String>,
    /// Units whose queued start jobs a reload may lose.
    watched: &'a BTreeSet<String>,
}

/// Stops the removed timers that still run, reloads once (re-enqueueing start jobs the reload
/// lost), then restarts the changed units that run with their old configuration.
fn apply(
    root: &Path,
    systemd: &dyn Systemd,
    actions: &Actions,
    pending_path: &Path,
    outcome: &mut UnitsOutcome,
) -> anyhow::Result<()> {
    let changed_units = actions.changed;
    let watched = actions.watched;
    if !systemd_manages(root, systemd) {
        tracing::warn!(root = %root.display(), "systemd is not running in the root: unit actions skipped");
        outcome.skipped.push("daemon-reload".to_string());
        outcome.skipped.extend(
            actions
                .removed_timers
                .iter()
                .map(|u| format!("stop {u} (if active)")),
        );
        outcome.skipped.extend(
            changed_units
                .iter()
                .map(|u| format!("restart {u} (if active)")),
        );
        return Ok(());
    }
    // Recorded before acting, cleared after: a failure below leaves it for the next run.
    pending::write(pending_path, changed_units)
        .context("cannot record the unit actions before doing them")?;
    // Before the reload: systemd still holds a removed timer, armed, from memory. Left to the
    // reload, it finds the timer's files (and its service's) gone and marks it failed, which
    // leaves the node `degraded` until a reboot; stopped first, the reload simply forgets it.
    for timer in actions.removed_timers {
        let active = systemd
            .is_active(timer)
            .with_context(|| format!("cannot tell whether {timer} runs"))?;
        if active {
            systemd
                .stop(timer)
                .with_context(|| format!("{timer} was removed but could not be stopped"))?;
            tracing::info!(unit = %timer, "stopped timer: the node no longer needs it");
            outcome.stopped.push(timer.clone());
        }
    }
    let queued_before: BTreeSet<String> = systemd
        .queued_start_jobs()
        .context("cannot list systemd's queued jobs before reloading")?
        .into_iter()
        .filter(|u| watched.contains(u))
        .collect();
    systemd
        .daemon_reload()
        .context("drop-ins changed but systemd could not reload them")?;
    outcome.reloaded = true;
    if !queued_before.is_empty() {
        outcome.requeued = requeue_lost_jobs(systemd, &queued_before)?;
    }
    for unit in changed_units {
        let active = systemd
            .is_active(unit)
            .with_context(|| format!("cannot tell whether {unit} runs"))?;
        if active {
            systemd
                .restart(unit)
                .with_context(|| format!("{unit} changed but failed to restart"))?;
            tracing::info!(unit = %unit, "restarted: its configuration changed");
            outcome.restarted.push(unit.clone());
        } else if unit.ends_with(".timer") {
            // A timer of ours that was just installed (or failed to start before): a timer
            // only arms when started, and starting one never waits for its service.
            systemd
                .start_no_block(std::slice::from_ref(unit))
                .with_context(|| format!("{unit} changed but could not be started"))?;
            tracing::info!(unit = %unit, "started timer");
            outcome.started.push(unit.clone());
        }
    }
    pending::clear(pending_path)
}

fn join(units: &BTreeSet<String>) -> String {
    units.iter().cloned().collect::<Vec<_>>().join(" ")
}

/// systemd can drop queued start jobs on `daemon-reload` (systemd#23615). Starts again, without
/// blocking, each unit that had a start job before the reload, has none now and is not active.
/// A unit that had no job is never started: the operator may have disabled it.
fn requeue_lost_jobs(
    systemd: &dyn Systemd,
    queued_before: &BTreeSet<String>,
) -> anyhow::Result<Vec<String>> {
    let queued_after: BTreeSet<String> = systemd
        .queued_start_jobs()
        .context("cannot list systemd's queued jobs after reloading")?
        .into_iter()
        .collect();
    let mut lost = Vec::new();
    for unit in queued_before.difference(&queued_after) {
        let active = systemd
            .is_active(unit)
            .with_context(|| format!("cannot tell whether {unit} runs"))?;
        if !active {
            lost.push(unit.clone());
        }
    }
    if !lost.is_empty() {
        tracing::warn!(units = %lost.join(" "), "daemon-reload lost queued start jobs: enqueuing them again");
        systemd
            .start_no_block(&lost)
            .with_context(|| format!("cannot enqueue start jobs again for {}", lost.join(" ")))?;
    }
    Ok(lost)
}

/// Restarts each of `units` that is running, so it reads files that changed under it (dockerd
/// reads its TLS files only at start). Nothing without a systemd managing the root; a unit
/// that does not run starts later with the new files anyway. Returns the restarted units.
pub fn restart_if_active(
    root: &Path,
    systemd: &dyn Systemd,
    units: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut restarted = Vec::new();
    if units.is_empty() || !systemd_manages(root, systemd) {
        return Ok(restarted);
    }
    for unit in units {
        let active = systemd
            .is_active(unit)
            .with_context(|| format!("cannot tell whether {unit} runs"))?;
        if active {
            systemd.restart(unit).with_context(|| {
                format!("{unit}'s certificates changed but it failed to restart")
            })?;
            tracing::info!(unit = %unit, "restarted: its certificates changed");
            restarted.push(unit.clone());
        }
    }
    Ok(restarted)
}

/// Unit actions need a systemd that answers *and* runs the root we manage: with
/// `--root DIR` on a machine whose own systemd answers, that systemd is not DIR's.
fn systemd_manages(root: &Path, systemd: &dyn Systemd) -> bool {
    root.join("run/systemd/system").is_dir() && systemd.is_running()
}

/// `<root><absolute>`: joins an absolute node path under the managed root.
fn under_root(root: &Path, absolute: &str) -> PathBuf {
    crate::fs::under_root(root, absolute)
}
