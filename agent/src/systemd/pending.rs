//! Unit actions that are due but not yet done. The drop-ins are written before systemd is told
//! about them, so a failed `daemon-reload` or restart would leave a node whose files are current
//! but whose systemd is not — and the next converge, seeing no file change, would do nothing.
//! The units whose configuration changed are recorded here *before* acting and the record is
//! removed only after every action succeeded; the next run acts on what it finds here.
//!
//! It lives under `/run`: a reboot makes systemd read every unit afresh, which is exactly what
//! the record asks for, so it must not outlive one.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{Context, Result};

use crate::fs::{write_atomic, MODE_PUBLIC};

/// Where the record is on a node.
pub const PENDING_PATH: &str = "/run/molten/units-pending";

/// At most this many bytes are read: the file is ours, but a damaged one must not stall a run.
const MAX_BYTES: u64 = 64 * 1024;

/// The units recorded as due. Lines that are not unit names are ignored with a warning (a unit
/// name goes to `systemctl restart`, so nothing else may pass).
pub fn read(path: &Path) -> Result<BTreeSet<String>> {
    let text = match fs::File::open(path) {
        Ok(file) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_BYTES), &mut text)
                .with_context(|| format!("failed to read {}", path.display()))?;
            text
        }
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(err) => return Err(err).with_context(|| format!("failed to read {}", path.display())),
    };
    let mut units = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if is_unit_name(line) {
            units.insert(line.to_string());
        } else {
            tracing::warn!(path = %path.display(), line = index + 1, "not a unit name: ignored");
        }
    }
    Ok(units)
}

/// Records `units` as due (atomically, so a crash leaves the old record or the new one).
pub fn write(path: &Path, units: &BTreeSet<String>) -> Result<()> {
    let mut text = String::from("# Written by mc: daemon-reload, then restart these if active\n");
    for unit in units {
        text.push_str(unit);
        text.push('\n');
    }
    write_atomic(path, text.as_bytes(), MODE_PUBLIC)
}

/// Every due action was done.
pub fn clear(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("failed to remove {}", path.display())),
    }
}

/// systemd's unit name characters (`[A-Za-z0-9:_.\\@-]`), a known suffix, no leading dash.
fn is_unit_name(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        ".service", ".socket", ".target", ".timer", ".mount", ".path",
    ];
    name.len() <= 256
        && !name.starts_with('-')
        && SUFFIXES
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '\\' | '@' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/molten/units-pending");
        assert!(read(&path).unwrap().is_empty());
        let units: BTreeSet<String> = ["docker.service", "flanneld.service"]
            .map(String::from)
            .into();
        write(&path, &units).unwrap();
        assert_eq!(read(&path).unwrap(), units);
        clear(&path).unwrap();
        assert!(!path.exists());
        clear(&path).unwrap();
    }

    #[test]
    fn lines_that_are_not_unit_names_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("units-pending");
        fs::write(
            &path,
            "docker.service\n--force\nrm -rf /\n.service\nx\n\u{1b}[31m.service\ngetty@tty1.service\n",
        )
        .unwrap();
        let units: Vec<String> = read(&path).unwrap().into_iter().collect();
        assert_eq!(units, ["docker.service", "getty@tty1.service"]);
    }
}
