//! How often an etcd member saves a snapshot and how many it keeps: the profile's
//! `etcd.snapshots`, carried in the node config to the agent, which writes them into
//! `mc-etcd-snapshot.timer` (`OnCalendar=`) and its service (`--keep`). Both sides check the
//! values with the same rules ([`SnapshotSettings::check`]): the schedule goes into a unit file,
//! so it must never be able to end its line or carry anything systemd would expand.

use serde::{Deserialize, Serialize};

/// The schedule when the profile names none (and the one before it could).
pub const DEFAULT_SCHEDULE: &str = "daily";
/// Snapshots kept when the profile names no number (a week of daily snapshots).
pub const DEFAULT_KEEP: u32 = 7;
/// The most snapshots a node keeps (a year of daily ones).
pub const MAX_KEEP: u32 = 365;
/// The longest `OnCalendar=` expression accepted.
pub const MAX_SCHEDULE_LEN: usize = 64;
/// Schedules by name (systemd's own shorthands).
pub const NAMED_SCHEDULES: &[&str] = &["hourly", "daily", "weekly", "monthly"];

/// `etcd.snapshots` of the node config. Left out of the JSON when it is the default, so a
/// default profile's node config is what it was before the field existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSettings {
    /// One of [`NAMED_SCHEDULES`] or a systemd calendar expression (`OnCalendar=`), e.g.
    /// `*-*-* 02,14:00:00`.
    pub schedule: String,
    /// How many of the newest snapshots to keep, 1..=[`MAX_KEEP`].
    pub keep: u32,
}

impl Default for SnapshotSettings {
    fn default() -> Self {
        Self {
            schedule: DEFAULT_SCHEDULE.to_string(),
            keep: DEFAULT_KEEP,
        }
    }
}

impl SnapshotSettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Both values by [`check_schedule`] and [`check_keep`]; the error names the field.
    pub fn check(&self) -> Result<(), String> {
        check_schedule(&self.schedule)
            .map_err(|message| format!("etcd.snapshots.schedule: {message}"))?;
        check_keep(self.keep).map_err(|message| format!("etcd.snapshots.keep: {message}"))
    }
}

/// A named schedule, or a calendar expression of at most [`MAX_SCHEDULE_LEN`] characters made
/// only of ASCII letters, digits, single spaces and `* - : , . / ~`: enough for systemd's
/// calendar syntax (`Mon..Fri *-*-* 02:00:00`, `*-*-* 00/6:00:00`, `Sat,Sun 03:30`), nothing that
/// could end the unit line (newline), quote, escape (`\`) or expand (`%`, `$`). systemd itself
/// parses the expression; these rules only keep it from being anything but one value.
pub fn check_schedule(schedule: &str) -> Result<(), String> {
    if NAMED_SCHEDULES.contains(&schedule) {
        return Ok(());
    }
    let shown: String = schedule.escape_debug().take(80).collect();
    if schedule.trim().is_empty() {
        return Err(format!(
            "the schedule is empty; use one of {} or a systemd calendar expression",
            NAMED_SCHEDULES.join(", ")
        ));
    }
    if schedule.len() > MAX_SCHEDULE_LEN {
        return Err(format!(
            "the schedule is {} characters long; at most {MAX_SCHEDULE_LEN}",
            schedule.len()
        ));
    }
    if let Some(bad) = schedule
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || " *-:,./~".contains(*c)))
    {
        return Err(format!(
            "`{shown}` has {}, which a schedule cannot contain; use one of {} or a systemd \
             calendar expression of letters, digits, spaces and * - : , . / ~",
            describe(bad),
            NAMED_SCHEDULES.join(", ")
        ));
    }
    if schedule.starts_with(' ') || schedule.ends_with(' ') || schedule.contains("  ") {
        return Err(format!(
            "`{shown}` has leading, trailing or doubled spaces; separate the parts with one space"
        ));
    }
    if !schedule.chars().any(|c| c.is_ascii_digit() || c == '*') {
        return Err(format!(
            "`{shown}` is neither one of {} nor a calendar expression (it has no digit or `*`)",
            NAMED_SCHEDULES.join(", ")
        ));
    }
    Ok(())
}

/// 1..=[`MAX_KEEP`]: keeping none would delete each snapshot as it is taken.
pub fn check_keep(keep: u32) -> Result<(), String> {
    if (1..=MAX_KEEP).contains(&keep) {
        Ok(())
    } else {
        Err(format!(
            "keep {keep} is out of range; keep 1 to {MAX_KEEP} snapshots"
        ))
    }
}

fn describe(c: char) -> String {
    match c {
        '\n' => "a line break".to_string(),
        '\r' => "a carriage return".to_string(),
        '\t' => "a tab".to_string(),
        c if c.is_control() => format!("the control character {:?}", c),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_calendar_schedules_pass() {
        for good in [
            "hourly",
            "daily",
            "weekly",
            "monthly",
            "*-*-* 02:00:00",
            "Mon..Fri *-*-* 02:00:00",
            "*-*-* 00/6:00:00",
            "Sat,Sun 03:30",
            "*-*-* 02,14:00:00",
            "*-*~01 04:00",
        ] {
            check_schedule(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
    }

    #[test]
    fn schedules_that_could_break_the_unit_are_refused() {
        for (bad, needle) in [
            ("", "empty"),
            ("   ", "empty"),
            ("daily\nExecStartPre=/bin/sh", "a line break"),
            ("daily\r", "a carriage return"),
            ("*-*-* 02:00\u{0}", "control character"),
            ("*-*-* 02:00\t", "a tab"),
            ("%H:00", "`%`"),
            ("$SCHEDULE", "`$`"),
            ("02:00 \\", "`\\`"),
            ("\"daily\"", "`\"`"),
            ("*-*-* 02:00;reboot", "`;`"),
            ("*-*-* 0\u{e9}:00", "`\u{e9}`"),
            (" 02:00", "leading, trailing or doubled"),
            ("*-*-*  02:00", "leading, trailing or doubled"),
            ("nightly", "neither one of hourly"),
        ] {
            let err = check_schedule(bad).unwrap_err();
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
        let long = format!("*-*-* {}", "0,".repeat(40));
        assert!(check_schedule(&long).unwrap_err().contains("at most 64"));
        assert!(check_schedule(&"1".repeat(MAX_SCHEDULE_LEN)).is_ok());
    }

    #[test]
    fn keep_is_bounded() {
        assert!(check_keep(1).is_ok() && check_keep(365).is_ok());
        for bad in [0, 366, u32::MAX] {
            assert!(check_keep(bad).unwrap_err().contains("1 to 365"), "{bad}");
        }
    }

    #[test]
    fn the_error_names_the_field() {
        let bad = SnapshotSettings {
            schedule: "daily".into(),
            keep: 0,
        };
        assert!(bad
            .check()
            .unwrap_err()
            .starts_with("etcd.snapshots.keep: "));
        let bad = SnapshotSettings {
            schedule: "x\ny".into(),
            keep: 7,
        };
        assert!(bad
            .check()
            .unwrap_err()
            .starts_with("etcd.snapshots.schedule: "));
        assert!(SnapshotSettings::default().check().is_ok());
    }
}
