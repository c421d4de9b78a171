//! The agent's own timers, installed by `mc converge` rather than composed into the Ignition
//! (whose size is budgeted): `mc-converge.timer` on every node runs the same converge every
//! 15 minutes (certificate renewal rides on its identity step), and `mc-etcd-snapshot.timer` on
//! etcd members saves a snapshot under `/var/lib/molten` on the node config's
//! `etcd.snapshots.schedule` (default daily), keeping the newest `etcd.snapshots.keep` (default
//! 7). Those two come from a file, so they are checked again here before they go into a unit.
//! Enabling is the `timers.target.wants` link `systemctl enable` would make, written like the
//! drop-ins: only when missing or wrong, so a warm converge changes nothing.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::Context;
use molten_contract::snapshots::DEFAULT_SCHEDULE;
use molten_contract::{NodeConfig, OsLayout, Role};

use super::files::write_if_changed;
use super::render::HEADER;

pub const CONVERGE_TIMER: &str = "mc-converge.timer";
pub const CONVERGE_SERVICE: &str = "mc-converge.service";
pub const SNAPSHOT_TIMER: &str = "mc-etcd-snapshot.timer";
pub const SNAPSHOT_SERVICE: &str = "mc-etcd-snapshot.service";

/// Where enabled timers are linked, under the unit directory.
const WANTS_DIR: &str = "timers.target.wants";

/// The persistent state the snapshot service writes to.
const STATE_DIR: &str = "/var/lib/molten";

/// A timer and the service it starts, as unit files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerUnits {
    pub timer: String,
    pub timer_content: String,
    pub service: String,
    pub service_content: String,
}

/// What [`write_timers`] did to the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerFiles {
    pub written: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
    /// Timers whose unit, service or link changed: started (or restarted) after the reload.
    pub changed_timers: BTreeSet<String>,
    /// Timers of ours whose unit file was removed: a running one stays armed until stopped.
    pub removed_timers: BTreeSet<String>,
}

impl TimerFiles {
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }
}

/// The timers this node needs: the converge timer everywhere, the snapshot timer on members.
/// Fails, before anything is written, when a member's snapshot settings break the rules of
/// [`molten_contract::SnapshotSettings::check`].
pub fn timers(config: &NodeConfig, layout: &OsLayout) -> anyhow::Result<Vec<TimerUnits>> {
    let mc = layout.agent_binary;
    let mut wanted = vec![TimerUnits {
        timer: CONVERGE_TIMER.to_string(),
        timer_content: format!(
            "{HEADER}\n\
             [Unit]\n\
             Description=molten agent: converge every 15 minutes\n\
             [Timer]\n\
             OnBootSec=5min\n\
             OnUnitInactiveSec=15min\n\
             RandomizedDelaySec=1min\n\
             [Install]\n\
             WantedBy=timers.target\n"
        ),
        service: CONVERGE_SERVICE.to_string(),
        // After the boot stages: a boot converge still running holds the lock anyway, but
        // ordering keeps this one from queueing behind it and timing out.
        service_content: format!(
            "{HEADER}\n\
             [Unit]\n\
             Description=molten agent: periodic converge\n\
             After={agent} {network}\n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart={mc} converge --lock-wait 300\n",
            agent = layout.agent_unit,
            network = layout.agent_network_unit,
        ),
    }];
    if config.has_role(Role::Etcd) {
        let snapshots = &config.etcd.snapshots;
        snapshots.check().map_err(|message| {
            anyhow::anyhow!(
                "the node config's snapshot settings cannot go into {SNAPSHOT_TIMER}: {message}"
            )
        })?;
        let schedule = &snapshots.schedule;
        let keep = snapshots.keep;
        // The default keeps the words units had before the schedule could change.
        let description = if schedule == DEFAULT_SCHEDULE {
            "daily etcd snapshot".to_string()
        } else {
            format!("etcd snapshot ({schedule})")
        };
        // Spread the members' snapshots, by less than the period for anything more frequent
        // than daily: an hour's delay on an hourly schedule would skip runs.
        let spread = match schedule.as_str() {
            "daily" | "weekly" | "monthly" => "1h",
            _ => "5min",
        };
        wanted.push(TimerUnits {
            timer: SNAPSHOT_TIMER.to_string(),
            timer_content: format!(
                "{HEADER}\n\
                 [Unit]\n\
                 Description=molten agent: {description}\n\
                 [Timer]\n\
                 OnCalendar={schedule}\n\
                 RandomizedDelaySec={spread}\n\
                 Persistent=true\n\
                 [Install]\n\
                 WantedBy=timers.target\n"
            ),
            service: SNAPSHOT_SERVICE.to_string(),
            service_content: format!(
                "{HEADER}\n\
                 [Unit]\n\
                 Description=molten agent: etcd snapshot\n\
                 After={etcd} {agent}\n\
                 RequiresMountsFor={STATE_DIR}\n\
                 [Service]\n\
                 Type=oneshot\n\
                 ExecStart={mc} etcd snapshot --keep {keep}\n",
                etcd = layout.etcd_unit,
                agent = layout.agent_unit,
            ),
        });
    }
    Ok(wanted)
}

/// Writes the wanted timers, services and enable links under `unit_dir` (the root's), and
/// removes ours that the node no longer needs. Only what differs is touched.
pub fn write_timers(
    unit_dir: &Path,
    agent_unit_dir: &str,
    wanted: &[TimerUnits],
) -> anyhow::Result<TimerFiles> {
    let mut files = TimerFiles::default();
    for units in wanted {
        let mut changed = false;
        for (name, content) in [
            (&units.timer, &units.timer_content),
            (&units.service, &units.service_content),
        ] {
            let path = unit_dir.join(name);
            if write_if_changed(&path, content)? {
                tracing::info!(path = %path.display(), "wrote unit");
                files.written.push(path);
                changed = true;
            }
        }
        let link = unit_dir.join(WANTS_DIR).join(&units.timer);
        let target = Path::new(agent_unit_dir).join(&units.timer);
        if ensure_link(&link, &target)? {
            tracing::info!(link = %link.display(), "enabled timer");
            files.written.push(link);
            changed = true;
        }
        if changed {
            files.changed_timers.insert(units.timer.clone());
        }
    }
    let wanted_names: BTreeSet<&str> = wanted
        .iter()
        .flat_map(|u| [u.timer.as_str(), u.service.as_str()])
        .collect();
    for name in [
        CONVERGE_TIMER,
        CONVERGE_SERVICE,
        SNAPSHOT_TIMER,
        SNAPSHOT_SERVICE,
    ] {
        if wanted_names.contains(name) {
            continue;
        }
        let path = unit_dir.join(name);
        if !is_ours(&path)? {
            continue;
        }
        fs::remove_file(&path).with_context(|| format!("failed to remove {path:?}"))?;
        files.removed.push(path);
        if name.ends_with(".timer") {
            files.removed_timers.insert(name.to_string());
        }
        let link = unit_dir.join(WANTS_DIR).join(name);
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link).with_context(|| format!("failed to remove {link:?}"))?;
            files.removed.push(link);
        }
        crate::fs::sync_dir(unit_dir)?;
    }
    Ok(files)
}

/// A unit file that starts with our header; someone else's file of that name is left alone.
fn is_ours(path: &Path) -> anyhow::Result<bool> {
    match fs::read_to_string(path) {
        Ok(content) => Ok(content.starts_with(HEADER)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err).with_context(|| format!("failed to read {path:?}")),
    }
}

/// Makes `link` a symlink to `target` unless it is one already. Returns whether it changed.
fn ensure_link(link: &Path, target: &Path) -> anyhow::Result<bool> {
    match fs::read_link(link) {
        Ok(existing) if existing == target => return Ok(false),
        Ok(_) => fs::remove_file(link).with_context(|| format!("failed to replace {link:?}"))?,
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        // Something that is not a link: replaced, it is ours to manage.
        Err(_) => fs::remove_file(link).with_context(|| format!("failed to replace {link:?}"))?,
    }
    let dir = link.parent().context("a link has a directory")?;
    fs::create_dir_all(dir).with_context(|| format!("failed to create {dir:?}"))?;
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("failed to link {link:?} to {target:?}"))?;
    crate::fs::sync_dir(dir)?;
    Ok(true)
}
