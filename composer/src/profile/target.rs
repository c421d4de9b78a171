//! What composing for one platform demands of a profile, checked at the profile stage so each
//! problem points at its line (and `molten validate --platform X` finds what compose would).
//! The rules belong to the platform (`platform::<name>` implements [`TargetRules`]); this
//! module gives them a view of the profile and a place to report, and knows no platform.

use std::collections::HashSet;

use molten_contract::OsVariant;

use super::draft::Draft;
use super::raw::{RawOs, RawProfile};
use super::report::{At, Report};
use crate::model::{IpxeSettings, PacketSettings, VagrantSettings};

/// A platform's rules for the profile stage.
pub trait TargetRules {
    /// The platform's name in messages.
    fn name(&self) -> &'static str;

    /// Whether the platform assigns private addresses at boot: the profile's addresses are then
    /// dropped (the rules should refuse them).
    fn assigns_addresses_at_boot(&self) -> bool {
        false
    }

    /// Whether the bundle serves files to the nodes; a local agent binary needs that.
    fn serves_files(&self) -> bool {
        true
    }

    /// Reports what this platform needs from the profile and does not find.
    fn check_profile(&self, profile: &mut TargetCheck<'_, '_>);
}

/// A per-node value the platform needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeValue {
    Ip,
    Mac,
    InstallDisk,
}

/// The validated profile as a platform's rules see it, with the places values came from.
pub struct TargetCheck<'r, 'a> {
    pub(super) raw: &'r RawProfile,
    pub(super) drafts: &'r [Draft],
    pub(super) packet: Option<&'r PacketSettings>,
    pub(super) ipxe: Option<&'r IpxeSettings>,
    pub(super) vagrant: &'r VagrantSettings,
    pub(super) vagrant_host_at: Option<&'r At>,
    pub(super) local_agent_at: Option<At>,
    pub(super) report: &'r mut Report<'a>,
}

impl TargetCheck<'_, '_> {
    pub fn error(&mut self, at: &At, message: impl Into<String>) {
        self.report.error(at, message);
    }

    /// The place of `platforms.<key>` when it is written; else of `platforms`, where it would
    /// go; else none.
    pub fn section_at(&self, key: &str) -> At {
        let path = format!("$.platforms.{key}");
        let Some(platforms) = self.raw.platforms.as_ref() else {
            return At::new(path, (0, 0));
        };
        let written = match key {
            "packet" => platforms.packet.as_ref().map(|s| s.position()),
            "vagrant" => platforms.vagrant.as_ref().map(|s| s.position()),
            "ipxe" => platforms.ipxe.as_ref().map(|s| s.position()),
            _ => None,
        };
        At::new(path, written.unwrap_or_else(|| platforms.position()))
    }

    pub fn packet(&self) -> Option<&PacketSettings> {
        self.packet
    }

    pub fn ipxe(&self) -> Option<&IpxeSettings> {
        self.ipxe
    }

    pub fn vagrant(&self) -> &VagrantSettings {
        self.vagrant
    }

    /// Where `platforms.vagrant.host_ip` was written, if it was.
    pub fn vagrant_host_at(&self) -> Option<&At> {
        self.vagrant_host_at
    }

    /// Where `platforms.ipxe.install_to_disk` was written, if it was.
    pub fn ipxe_install_to_disk_at(&self) -> Option<At> {
        let ipxe = self.raw.platforms.as_ref()?.ipxe.as_ref()?;
        let value = ipxe.install_to_disk.as_ref()?;
        Some(At::of("$.platforms.ipxe.install_to_disk", value))
    }

    /// Where `platforms.ipxe.data_disk` was written, if it was.
    pub fn ipxe_data_disk_at(&self) -> Option<At> {
        let ipxe = self.raw.platforms.as_ref()?.ipxe.as_ref()?;
        let value = ipxe.data_disk.as_ref()?;
        Some(At::of("$.platforms.ipxe.data_disk", value))
    }

    /// The node entries (a rack once) without a data disk of their own, as `(entry, how
    /// messages name it)`, and every place a node's own data disk was written.
    pub fn node_data_disks(&self) -> (Vec<(At, String)>, Vec<At>) {
        let (mut missing, mut written) = (Vec::new(), Vec::new());
        let mut seen = HashSet::new();
        for draft in self.drafts {
            if !seen.insert(draft.entry.path.clone()) {
                continue;
            }
            match &draft.data_disk_at {
                Some(at) => written.push(at.clone()),
                None => {
                    let whose = draft.label.split(' ').next().unwrap_or_default();
                    missing.push((draft.entry.clone(), whose.to_string()));
                }
            }
        }
        (missing, written)
    }

    /// The OS and, when the profile names it, where.
    pub fn os(&self) -> (OsVariant, Option<At>) {
        match &self.raw.os {
            Some(os) => {
                let variant = match **os {
                    RawOs::Debian => OsVariant::Debian,
                    RawOs::Flatcar => OsVariant::Flatcar,
                };
                (variant, Some(At::of("$.os", os)))
            }
            None => (OsVariant::Flatcar, None),
        }
    }

    /// Where a local agent binary was named (`--agent` or `$.agent.path`); `None` when the
    /// agent is a URL or invalid.
    pub fn local_agent_at(&self) -> Option<&At> {
        self.local_agent_at.as_ref()
    }

    /// Reports every node entry that lacks `value`, once per entry (a rack once), with `why`.
    pub fn require(&mut self, value: NodeValue, why: &str) {
        let mut seen = HashSet::new();
        let what = match value {
            NodeValue::Ip => "ip",
            NodeValue::Mac => "mac",
            NodeValue::InstallDisk => "install_disk",
        };
        for draft in self.drafts {
            let (missing, written) = match value {
                NodeValue::Ip => (draft.ip_at.is_none(), "start_ip"),
                NodeValue::Mac => (draft.mac_at.is_none(), "start_mac"),
                NodeValue::InstallDisk => (draft.disk_at.is_none(), "install_disk"),
            };
            if missing && seen.insert(draft.entry.path.clone()) {
                let key = if draft.suffix.is_empty() {
                    what
                } else {
                    written
                };
                let whose = draft.label.split(' ').next().unwrap_or_default();
                self.report
                    .error(&draft.entry, format!("{whose} has no {key}; {why}"));
            }
        }
    }

    /// Every place a node address was written (a rack's `start_ip` once).
    pub fn written_addresses(&self) -> Vec<At> {
        let mut seen = HashSet::new();
        self.drafts
            .iter()
            .filter_map(|d| d.ip_at.clone())
            .filter(|at| seen.insert(at.path.clone()))
            .collect()
    }

    /// How messages name the node whose address is `ip`, if one has it.
    pub fn node_with_ip(&self, ip: std::net::Ipv4Addr) -> Option<&str> {
        self.drafts
            .iter()
            .find(|d| d.node.ip == Some(ip))
            .map(|d| d.label.as_str())
    }
}
