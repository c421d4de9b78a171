//! `platforms.ipxe.assets`: operator files (Flatcar's PXE kernel and initrd, anything else the
//! boot needs) that the ipxe bundle serves as `assets/<file name>`. Only their metadata is read
//! here; the composer hashes and copies them by streaming.

use std::collections::HashMap;
use std::path::Path;

use super::raw::{RawIpxe, Sp};
use super::report::{At, Report};
use super::values;
use crate::model::IpxeAsset;
use crate::model::AGENT_ASSET;

const BASE: &str = "$.platforms.ipxe";

/// The listed assets, each checked; `kernel` and `initrd` are the file names the boot scripts
/// fetch from `assets/`.
pub(crate) fn assets(
    raw: &RawIpxe,
    base_dir: &Path,
    kernel: &str,
    initrd: &str,
    report: &mut Report,
) -> Vec<IpxeAsset> {
    let Some(list) = &raw.assets else {
        return Vec::new();
    };
    let agent_name = AGENT_ASSET.trim_start_matches("assets/");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut assets = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = At::of(format!("{BASE}.assets[{i}]"), entry);
        let Some(name) = file_name(entry, &at, report) else {
            continue;
        };
        if name == agent_name {
            report.error(
                &at,
                format!(
                    "`{name}` would be {AGENT_ASSET}, where molten puts the agent: rename the file"
                ),
            );
            continue;
        }
        if let Some(line) = seen.get(&name) {
            report.error(
                &at,
                format!(
                    "another asset at line {line} is also named `{name}`: both would be assets/{name}"
                ),
            );
            continue;
        }
        seen.insert(name.clone(), entry.position().0);
        let path = base_dir.join(entry.as_str());
        if let Err(problem) = regular_file(&path) {
            let relative = if Path::new(entry.as_str()).is_relative() {
                " (relative to the profile's directory)"
            } else {
                ""
            };
            report.error(
                &at,
                format!("cannot use `{}`{relative}: {problem}", entry.as_str()),
            );
            continue;
        }
        assets.push(IpxeAsset { name, path });
    }
    let listed_at = At::of(format!("{BASE}.assets"), list);
    for (key, name, given) in [
        ("kernel", kernel, raw.kernel.as_ref()),
        ("initrd", initrd, raw.initrd.as_ref()),
    ] {
        if seen.contains_key(name) {
            continue;
        }
        let (at, whose) = match given {
            Some(value) => (At::of(format!("{BASE}.{key}"), value), "".to_string()),
            None => (listed_at.clone(), format!(" (the default {key})")),
        };
        report.error(
            &at,
            format!(
                "{key} `{name}`{whose} is not among platforms.ipxe.assets, so the bundle would \
                 not serve it: list its path there"
            ),
        );
    }
    assets
}

/// The entry's file name, which becomes its name under `assets/`.
fn file_name(entry: &Sp<String>, at: &At, report: &mut Report) -> Option<String> {
    let name = Path::new(entry.as_str())
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| values::file_name(n).is_ok());
    if name.is_none() {
        report.error(
            at,
            format!(
                "`{}` does not end in a plain file name (no spaces) to serve as assets/<name>",
                values::shorten(entry, 60)
            ),
        );
    }
    name.map(str::to_string)
}

/// Whether `path` is a regular file this process can open (its contents are read later).
fn regular_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    std::fs::File::open(path).map_err(|e| e.to_string())?;
    Ok(())
}
