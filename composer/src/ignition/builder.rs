//! A small typed builder over `ignition_config::v3_3`: adding the same file path or unit twice is
//! an error (two parts of molten claiming one path is a bug, never something to merge silently).

use std::collections::BTreeSet;

use ignition_config::v3_3::{
    Config, Directory, Dropin, File, Filesystem, Passwd, Resource, Storage, Systemd, Unit, User,
    Verification,
};

use super::dataurl::{self, Inline};
use crate::plan::InlineEncoding;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("Ignition config would write {0} twice")]
    DuplicateFile(String),
    #[error("Ignition config would define unit {0} twice")]
    DuplicateUnit(String),
    #[error("Ignition config would define user {0} twice")]
    DuplicateUser(String),
    #[error("Ignition config would create a filesystem on {0} twice")]
    DuplicateFilesystem(String),
    #[error("Ignition config has no unit {0} to make require a mount")]
    NoSuchUnit(String),
}

/// How a unit is configured: its own contents, or drop-ins for a unit the OS ships.
pub enum UnitBody {
    Contents(String),
    /// `(drop-in file name, contents)`.
    Dropin(String, String),
    /// Link the unit to /dev/null so it never starts.
    Masked,
}

#[derive(Default)]
pub struct ConfigBuilder {
    files: Vec<File>,
    directories: Vec<Directory>,
    filesystems: Vec<Filesystem>,
    units: Vec<Unit>,
    users: Vec<User>,
    paths: BTreeSet<String>,
    unit_names: BTreeSet<String>,
    encoding: InlineEncoding,
}

impl ConfigBuilder {
    /// A builder whose inline files take the smaller encoding ([`InlineEncoding::Smallest`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder whose inline files use `encoding`.
    pub fn with_inline_encoding(encoding: InlineEncoding) -> Self {
        Self {
            encoding,
            ..Self::default()
        }
    }

    /// A file whose contents are inline (a `data:` URL).
    pub fn inline_file(&mut self, path: &str, mode: i64, contents: &str) -> Result<(), BuildError> {
        let inline = dataurl::encode(contents, self.encoding);
        self.file(path, mode, inline, None, false)
    }

    /// Like [`Self::inline_file`] for a file the OS may already have (e.g. `/etc/hostname`):
    /// ours replaces it instead of failing the boot.
    pub fn inline_file_replacing(
        &mut self,
        path: &str,
        mode: i64,
        contents: &str,
    ) -> Result<(), BuildError> {
        let inline = dataurl::encode(contents, self.encoding);
        self.file(path, mode, inline, None, true)
    }

    /// A file fetched from `source` and checked against `hash` (`sha512-<hex>`).
    pub fn remote_file(
        &mut self,
        path: &str,
        mode: i64,
        source: &str,
        hash: &str,
    ) -> Result<(), BuildError> {
        let remote = Inline {
            source: source.to_string(),
            compression: None,
        };
        self.file(path, mode, remote, Some(hash.to_string()), false)
    }

    fn file(
        &mut self,
        path: &str,
        mode: i64,
        contents: Inline,
        hash: Option<String>,
        overwrite: bool,
    ) -> Result<(), BuildError> {
        if !self.paths.insert(path.to_string()) {
            return Err(BuildError::DuplicateFile(path.to_string()));
        }
        let mut file = File::new(path.to_string());
        file.mode = Some(mode);
        if overwrite {
            file.overwrite = Some(true);
        }
        file.contents = Some(Resource {
            source: Some(contents.source),
            compression: contents.compression.map(str::to_string),
            verification: hash.map(|hash| Verification { hash: Some(hash) }),
            ..Default::default()
        });
        self.files.push(file);
        Ok(())
    }

    /// A directory (created if absent, its mode set either way).
    pub fn directory(&mut self, path: &str, mode: i64) -> Result<(), BuildError> {
        if !self.paths.insert(path.to_string()) {
            return Err(BuildError::DuplicateFile(path.to_string()));
        }
        let mut dir = Directory::new(path.to_string());
        dir.mode = Some(mode);
        self.directories.push(dir);
        Ok(())
    }

    /// A filesystem Ignition creates (or reuses) and mounts at its `path` while it runs.
    pub fn filesystem(&mut self, fs: Filesystem) -> Result<(), BuildError> {
        if self.filesystems.iter().any(|f| f.device == fs.device) {
            return Err(BuildError::DuplicateFilesystem(fs.device));
        }
        self.filesystems.push(fs);
        Ok(())
    }

    /// Makes the unit `name` (already added) require and order after the mounts of `paths`
    /// (space-separated): a `RequiresMountsFor=` line at the top of its `[Unit]` section (of its
    /// drop-in, for a unit the OS ships).
    pub fn require_mounts(&mut self, name: &str, paths: &str) -> Result<(), BuildError> {
        let unit = self
            .units
            .iter_mut()
            .find(|u| u.name == name && u.mask != Some(true))
            .ok_or_else(|| BuildError::NoSuchUnit(name.to_string()))?;
        let text = match (&mut unit.contents, &mut unit.dropins) {
            (Some(contents), _) => contents,
            (None, Some(dropins)) => dropins[0].contents.get_or_insert_with(String::new),
            (None, None) => return Err(BuildError::NoSuchUnit(name.to_string())),
        };
        let line = format!("RequiresMountsFor={paths}\n");
        match text.strip_prefix("[Unit]\n") {
            Some(rest) => *text = format!("[Unit]\n{line}{rest}"),
            None => *text = format!("[Unit]\n{line}{text}"),
        }
        Ok(())
    }

    pub fn unit(&mut self, name: &str, enabled: bool, body: UnitBody) -> Result<(), BuildError> {
        if !self.unit_names.insert(name.to_string()) {
            return Err(BuildError::DuplicateUnit(name.to_string()));
        }
        let mut unit = Unit::new(name.to_string());
        match body {
            UnitBody::Contents(contents) => unit.contents = Some(contents),
            UnitBody::Dropin(file, contents) => {
                let mut dropin = Dropin::new(file);
                dropin.contents = Some(contents);
                unit.dropins = Some(vec![dropin]);
            }
            UnitBody::Masked => unit.mask = Some(true),
        }
        if enabled {
            unit.enabled = Some(true);
        }
        self.units.push(unit);
        Ok(())
    }

    pub fn user_keys(&mut self, name: &str, keys: &[String]) -> Result<(), BuildError> {
        if self.users.iter().any(|u| u.name == name) {
            return Err(BuildError::DuplicateUser(name.to_string()));
        }
        let mut user = User::new(name.to_string());
        user.ssh_authorized_keys = Some(keys.to_vec());
        self.users.push(user);
        Ok(())
    }

    pub fn build(self) -> Config {
        let mut config = Config::default();
        if !self.users.is_empty() {
            config.passwd = Some(Passwd {
                users: Some(self.users),
                ..Default::default()
            });
        }
        let storage = Storage {
            files: some(self.files),
            directories: some(self.directories),
            filesystems: some(self.filesystems),
            ..Default::default()
        };
        if storage != Storage::default() {
            config.storage = Some(storage);
        }
        if !self.units.is_empty() {
            config.systemd = Some(Systemd {
                units: Some(self.units),
            });
        }
        config
    }
}

/// `None` for an empty list: Ignition's optional lists are left out rather than empty.
fn some<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// A config that replaces itself with the one at `source` (checked against `hash`).
pub fn replace_config(source: &str, hash: &str) -> Config {
    let mut config = Config::default();
    config.ignition.config = Some(ignition_config::v3_3::IgnitionConfig {
        merge: None,
        replace: Some(Resource {
            source: Some(source.to_string()),
            verification: Some(Verification {
                hash: Some(hash.to_string()),
            }),
            ..Default::default()
        }),
    });
    config
}

/// [`replace_config`] fetched over HTTPS from a server whose certificate `ca_pem` signed: the
/// CA goes into `ignition.security.tls.certificateAuthorities` (the only extra root Ignition
/// trusts for the fetch), inline as the smaller of text and gzip.
pub fn replace_config_pinned(source: &str, hash: &str, ca_pem: &str) -> Config {
    let mut config = replace_config(source, hash);
    let inline = dataurl::encode(ca_pem, InlineEncoding::Smallest);
    config.ignition.security = Some(ignition_config::v3_3::Security {
        tls: Some(ignition_config::v3_3::SecurityTls {
            certificate_authorities: Some(vec![Resource {
                source: Some(inline.source),
                compression: inline.compression.map(str::to_string),
                ..Default::default()
            }]),
        }),
    });
    config
}

/// Compact JSON without the `null`s `ignition_config` emits for unset optional fields: smaller,
/// and identical for identical input (object keys come out in a fixed order).
pub fn to_json(config: &Config) -> String {
    let mut value = serde_json::to_value(config).expect("an Ignition config serializes");
    drop_nulls(&mut value);
    let mut text = serde_json::to_string(&value).expect("a JSON value serializes");
    text.push('\n');
    text
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_path_twice_is_an_error() {
        let mut b = ConfigBuilder::new();
        b.inline_file("/etc/hostname", 0o644, "a").unwrap();
        let err = b.inline_file("/etc/hostname", 0o644, "b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Ignition config would write /etc/hostname twice"
        );
    }

    #[test]
    fn the_same_unit_twice_is_an_error() {
        let mut b = ConfigBuilder::new();
        b.unit("mc.service", true, UnitBody::Contents("[Unit]\n".into()))
            .unwrap();
        let err = b.unit("mc.service", false, UnitBody::Masked).unwrap_err();
        assert_eq!(err, BuildError::DuplicateUnit("mc.service".into()));
    }

    #[test]
    fn json_is_compact_and_has_no_nulls() {
        let mut b = ConfigBuilder::new();
        b.inline_file_replacing("/etc/hostname", 0o644, "node-0\n")
            .unwrap();
        b.unit("a.service", true, UnitBody::Contents("[Unit]\n".into()))
            .unwrap();
        let json = to_json(&b.build());
        assert_eq!(
            json,
            concat!(
                r#"{"ignition":{"version":"3.3.0"},"storage":{"files":[{"contents":{"source":"data:,node-0%0A"},"#,
                r#""mode":420,"overwrite":true,"path":"/etc/hostname"}]},"#,
                r#""systemd":{"units":[{"contents":"[Unit]\n","enabled":true,"name":"a.service"}]}}"#,
                "\n"
            )
        );
    }
}
