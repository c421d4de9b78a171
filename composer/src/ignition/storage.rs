//! Persistent state for a node whose root does not persist (ipxe running from RAM, where
//! Ignition runs at every boot): a filesystem on the plan's data disk holds `/var/lib/molten`
//! (the node's identity and state) and, bind-mounted at `/var/lib/etcd`, an etcd member's data.
//!
//! Ignition keeps the filesystem across boots (`wipeFilesystem: false`: it reuses one whose
//! format and label match, creates one on a blank disk, and fails the boot on any other
//! filesystem rather than wipe it). systemd mounts it at boot, and the units that read or write
//! that state require the mounts: if the disk is missing, etcd and the agent do not start on the
//! RAM root, where an etcd member would bootstrap a new, empty cluster.

use ignition_config::v3_3::Filesystem;
use molten_contract::trust::DEFAULT_STATE_DIR;
use molten_contract::OsLayout;

use super::builder::{BuildError, ConfigBuilder, UnitBody};
use super::units::{ENROLL_UNIT, RENEW_UNIT};

/// The data filesystem's label; its mount unit finds it by that label.
pub const DATA_LABEL: &str = "molten-data";
/// The mount unit of [`DEFAULT_STATE_DIR`].
pub const STATE_MOUNT_UNIT: &str = "var-lib-molten.mount";
/// The bind mount of etcd's data directory on members; it requires and follows
/// [`STATE_MOUNT_UNIT`] (`RequiresMountsFor=`: `Requires=` and `After=` on that mount unit).
pub const ETCD_MOUNT_UNIT: &str = "var-lib-etcd.mount";
/// Where etcd keeps its data (Flatcar's etcd-wrapper and Debian's package both use it).
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
/// etcd's data on the data filesystem.
pub const ETCD_ON_DATA_DISK: &str = "/var/lib/molten/etcd";

/// Adds the data filesystem on `disk` and its mounts, and makes the units that use the state
/// require them. Call after the units are added; `member`: the node runs an etcd member.
pub fn add_data_disk(
    b: &mut ConfigBuilder,
    layout: &OsLayout,
    disk: &str,
    member: bool,
) -> Result<(), BuildError> {
    let mut fs = Filesystem::new(disk.to_string());
    fs.format = Some("ext4".into());
    fs.label = Some(DATA_LABEL.into());
    fs.wipe_filesystem = Some(false);
    fs.path = Some(DEFAULT_STATE_DIR.into());
    b.filesystem(fs)?;
    b.unit(STATE_MOUNT_UNIT, true, UnitBody::Contents(state_mount()))?;
    for unit in [
        ENROLL_UNIT,
        RENEW_UNIT,
        layout.agent_unit,
        layout.agent_network_unit,
    ] {
        b.require_mounts(unit, DEFAULT_STATE_DIR)?;
    }
    if member {
        b.directory(ETCD_ON_DATA_DISK, 0o700)?;
        b.unit(ETCD_MOUNT_UNIT, true, UnitBody::Contents(etcd_mount()))?;
        b.require_mounts(
            layout.etcd_unit,
            &format!("{DEFAULT_STATE_DIR} {ETCD_DATA_DIR}"),
        )?;
    }
    Ok(())
}

fn state_mount() -> String {
    format!(
        "[Mount]\nWhat=/dev/disk/by-label/{DATA_LABEL}\nWhere={DEFAULT_STATE_DIR}\nType=ext4\n\
         [Install]\nWantedBy=local-fs.target\n"
    )
}

fn etcd_mount() -> String {
    format!(
        "[Unit]\nRequiresMountsFor={DEFAULT_STATE_DIR}\n\
         [Mount]\nWhat={ETCD_ON_DATA_DISK}\nWhere={ETCD_DATA_DIR}\nOptions=bind\n\
         [Install]\nWantedBy=local-fs.target\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use molten_contract::OsVariant;

    fn built(member: bool) -> serde_json::Value {
        let layout = OsVariant::Flatcar.layout();
        let mut b = ConfigBuilder::new();
        for unit in [
            ENROLL_UNIT,
            RENEW_UNIT,
            layout.agent_unit,
            layout.agent_network_unit,
        ] {
            let body = format!("[Unit]\nDescription={unit}\n[Service]\nType=oneshot\n");
            b.unit(unit, true, UnitBody::Contents(body)).unwrap();
        }
        if member {
            let dropin = "[Service]\nEnvironment=ETCD_NAME=n\n".to_string();
            b.unit(
                layout.etcd_unit,
                true,
                UnitBody::Dropin("20-molten.conf".into(), dropin),
            )
            .unwrap();
        }
        add_data_disk(&mut b, &layout, "/dev/vdb", member).unwrap();
        serde_json::from_str(&super::super::to_json(&b.build())).unwrap()
    }

    fn unit_text(config: &serde_json::Value, name: &str) -> String {
        let unit = config["systemd"]["units"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"));
        unit["contents"]
            .as_str()
            .or(unit["dropins"][0]["contents"].as_str())
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_member_keeps_state_and_etcd_on_the_disk() {
        let config = built(true);
        assert_eq!(
            config["storage"]["filesystems"],
            serde_json::json!([{
                "device": "/dev/vdb", "format": "ext4", "label": "molten-data",
                "path": "/var/lib/molten", "wipeFilesystem": false
            }])
        );
        assert_eq!(
            config["storage"]["directories"],
            serde_json::json!([{"mode": 0o700, "path": "/var/lib/molten/etcd"}])
        );
        assert_eq!(
            unit_text(&config, "var-lib-molten.mount"),
            "[Mount]\n\
             What=/dev/disk/by-label/molten-data\nWhere=/var/lib/molten\nType=ext4\n\
             [Install]\nWantedBy=local-fs.target\n"
        );
        assert!(unit_text(&config, "var-lib-etcd.mount").contains(
            "[Unit]\nRequiresMountsFor=/var/lib/molten\n[Mount]\n\
             What=/var/lib/molten/etcd\nWhere=/var/lib/etcd\nOptions=bind\n"
        ));
        // A drop-in without a [Unit] section gets one.
        assert_eq!(
            unit_text(&config, "etcd-member.service"),
            "[Unit]\nRequiresMountsFor=/var/lib/molten /var/lib/etcd\n\
             [Service]\nEnvironment=ETCD_NAME=n\n"
        );
        for unit in [
            "mc-enroll.service",
            "mc-renew.service",
            "mc.service",
            "mc-network.service",
        ] {
            assert_eq!(
                unit_text(&config, unit),
                format!(
                    "[Unit]\nRequiresMountsFor=/var/lib/molten\nDescription={unit}\n\
                     [Service]\nType=oneshot\n"
                )
            );
        }
    }

    #[test]
    fn a_worker_gets_no_etcd_mount() {
        let config = built(false);
        assert!(config["storage"].get("directories").is_none());
        let names: Vec<&str> = config["systemd"]["units"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"var-lib-molten.mount"));
        assert!(!names.contains(&"var-lib-etcd.mount"));
    }

    #[test]
    fn a_missing_unit_is_a_bug_not_a_silent_skip() {
        let layout = OsVariant::Flatcar.layout();
        let mut b = ConfigBuilder::new();
        let err = add_data_disk(&mut b, &layout, "/dev/vdb", false).unwrap_err();
        assert_eq!(err, BuildError::NoSuchUnit("mc-enroll.service".into()));
    }
}
