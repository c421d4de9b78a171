//! The `platforms` sections. What composing for one platform demands of the profile is that
//! platform's rule ([`super::target::TargetRules`]).

use std::net::Ipv4Addr;
use std::path::Path;

use molten_contract::DockerSettings;

use super::defaults as d;
use super::draft::disk_path;
use super::ipxe_assets;
use super::nodes::address_problem;
use super::raw::{RawIpxe, RawPacket, RawVagrant, Sp};
use super::report::{At, Report};
use super::values;
use crate::model::{Flannel, IpxeSettings, PacketSettings, VagrantSettings};

fn at<T>(path: &str, value: &Sp<T>) -> At {
    At::of(path, value)
}

pub(crate) fn packet(raw: &RawPacket, report: &mut Report) -> PacketSettings {
    let base = "$.platforms.packet";
    let project_at = at(&format!("{base}.project_id"), &raw.project_id);
    if !is_uuid(&raw.project_id) {
        report.error(
            &project_at,
            format!(
                "project_id `{}` is not a UUID",
                values::shorten(&raw.project_id, 40)
            ),
        );
    }
    let metro_ok = (2..=8).contains(&raw.metro.len())
        && raw
            .metro
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !metro_ok {
        report.error(
            &at(&format!("{base}.metro"), &raw.metro),
            format!(
                "`{}` is not a metro code (like am, da, sv)",
                values::shorten(&raw.metro, 40)
            ),
        );
    }
    if raw.plan.is_empty()
        || raw
            .plan
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        report.error(
            &at(&format!("{base}.plan"), &raw.plan),
            "plan must be a plan slug like c3.small.x86",
        );
    }
    let os = raw
        .operating_system
        .as_ref()
        .map_or(d::PACKET_OPERATING_SYSTEM.to_string(), |v| v.to_string());
    if let Some(v) = &raw.operating_system {
        let ok = !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            report.error(
                &at(&format!("{base}.operating_system"), v),
                format!(
                    "`{}` is not an operating-system slug like flatcar_stable",
                    values::shorten(v, 40)
                ),
            );
        }
    }
    let billing = raw
        .billing_cycle
        .as_ref()
        .map_or(d::PACKET_BILLING_CYCLE.to_string(), |v| v.to_string());
    if let Some(v) = &raw.billing_cycle {
        if !d::PACKET_BILLING_CYCLES.contains(&v.as_str()) {
            report.error(
                &at(&format!("{base}.billing_cycle"), v),
                format!(
                    "billing_cycle `{}` is not one of hourly, monthly",
                    values::shorten(v, 40)
                ),
            );
        }
    }
    PacketSettings {
        project_id: raw.project_id.to_string(),
        metro: raw.metro.to_string(),
        plan: raw.plan.to_string(),
        operating_system: os,
        billing_cycle: billing,
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub(crate) fn vagrant(
    raw: Option<&RawVagrant>,
    flannel: Option<&Flannel>,
    docker: Option<&DockerSettings>,
    report: &mut Report,
) -> (VagrantSettings, Option<At>) {
    let base = "$.platforms.vagrant";
    let empty = RawVagrant::default();
    let v = raw.unwrap_or(&empty);
    let box_name = v
        .box_name
        .as_ref()
        .map_or(d::VAGRANT_BOX.to_string(), |b| b.to_string());
    if let Some(b) = &v.box_name {
        if b.is_empty() || b.chars().any(char::is_whitespace) {
            report.error(
                &at(&format!("{base}.box"), b),
                "box must be a Vagrant box name like flatcar-stable",
            );
        }
    }
    let memory_mb = v.memory_mb.as_ref().map_or(d::VAGRANT_MEMORY_MB, |m| **m);
    if let Some(m) = &v.memory_mb {
        if **m < d::VAGRANT_MIN_MEMORY_MB {
            report.error(
                &at(&format!("{base}.memory_mb"), m),
                format!(
                    "{} MiB is too little for a node; give at least {}",
                    **m,
                    d::VAGRANT_MIN_MEMORY_MB
                ),
            );
        }
    }
    let cpus = v.cpus.as_ref().map_or(d::VAGRANT_CPUS, |c| **c);
    if let Some(c) = &v.cpus {
        if **c == 0 || **c > 64 {
            report.error(
                &at(&format!("{base}.cpus"), c),
                "cpus must be between 1 and 64",
            );
        }
    }
    let serve_port = v.serve_port.as_ref().map_or(d::VAGRANT_SERVE_PORT, |p| **p);
    if let Some(p) = &v.serve_port {
        if **p == 0 {
            report.error(
                &at(&format!("{base}.serve_port"), p),
                "port 0 is not a usable port",
            );
        }
    }
    let default_host: Ipv4Addr = d::VAGRANT_HOST_IP.parse().expect("valid default");
    let (host_ip, host_at) = match &v.host_ip {
        Some(text) => {
            let host_at = at(&format!("{base}.host_ip"), text);
            match values::ipv4(text) {
                Ok(ip) => {
                    if let Some(problem) = address_problem(ip, flannel, docker) {
                        report.error(
                            &host_at,
                            problem
                                .replace("a node's address", "the host's address")
                                .replace("node addresses", "the host's address"),
                        );
                    }
                    (ip, Some(host_at))
                }
                Err(message) => {
                    report.error(&host_at, message);
                    (default_host, None)
                }
            }
        }
        None => (default_host, None),
    };
    let settings = VagrantSettings {
        box_name,
        memory_mb,
        cpus,
        host_ip,
        serve_port,
    };
    (settings, host_at)
}

pub(crate) fn ipxe(raw: &RawIpxe, base_dir: &Path, report: &mut Report) -> IpxeSettings {
    let base = "$.platforms.ipxe";
    let url_at = at(&format!("{base}.base_url"), &raw.base_url);
    if let Err(message) = values::http_url(&raw.base_url) {
        report.error(&url_at, message);
    }
    let file = |value: Option<&Sp<String>>, key: &str, default: &str, report: &mut Report| {
        let Some(v) = value else {
            return default.to_string();
        };
        if let Err(message) = values::file_name(v) {
            report.error(&at(&format!("{base}.{key}"), v), message);
        }
        v.to_string()
    };
    let kernel = file(raw.kernel.as_ref(), "kernel", d::IPXE_KERNEL, report);
    let initrd = file(raw.initrd.as_ref(), "initrd", d::IPXE_INITRD, report);
    for (i, arg) in raw.kernel_args.iter().enumerate() {
        let arg_at = at(&format!("{base}.kernel_args[{i}]"), arg);
        if arg.is_empty() || arg.chars().any(|c| c.is_whitespace() || c.is_control()) {
            report.error(
                &arg_at,
                "a kernel argument is one word without spaces; list each separately",
            );
        } else if [
            "ignition.config.url=",
            "flatcar.first_boot",
            "flatcar.config.url=",
        ]
        .iter()
        .any(|own| arg.starts_with(own))
        {
            report.error(
                &arg_at,
                format!(
                    "molten sets `{}` itself",
                    arg.split('=').next().unwrap_or("")
                ),
            );
        }
    }
    let data_disk = raw.data_disk.as_ref().and_then(|disk| {
        let at = at(&format!("{base}.data_disk"), disk);
        disk_path(Some(disk), &at, report)
    });
    let assets = ipxe_assets::assets(raw, base_dir, &kernel, &initrd, report);
    IpxeSettings {
        base_url: raw.base_url.trim_end_matches('/').to_string(),
        kernel,
        initrd,
        kernel_args: raw.kernel_args.iter().map(|a| a.to_string()).collect(),
        install_to_disk: raw.install_to_disk.as_ref().is_some_and(|b| **b),
        data_disk,
        assets,
    }
}
