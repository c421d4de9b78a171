//! Which node a request is about, read from the bundle itself: `ignition/<node>.ign` names a
//! node's config (`ignition/<node>-install.ign` its install-to-disk config when both exist), and
//! `nodes/<mac>.ipxe` names the config it boots with via its `ignition.config.url=` argument.

use std::collections::{BTreeMap, BTreeSet};

use super::content::{Content, Data};

/// What a served path is to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFile {
    /// The node's iPXE script, `nodes/<mac>.ipxe`.
    Script { mac: String, node: Option<String> },
    /// The node's Ignition config, `ignition/<node>.ign`.
    Config { node: String },
    /// The config that installs the node to disk, `ignition/<node>-install.ign`.
    InstallConfig { node: String },
}

impl NodeFile {
    pub fn node(&self) -> Option<&str> {
        match self {
            NodeFile::Script { node, .. } => node.as_deref(),
            NodeFile::Config { node } | NodeFile::InstallConfig { node } => Some(node),
        }
    }
}

/// Served path → node, for the paths that belong to a node.
#[derive(Debug, Clone, Default)]
pub struct NodeIndex {
    files: BTreeMap<String, NodeFile>,
}

impl NodeIndex {
    /// Indexes the manifest's node files. A script whose config cannot be found still maps to its
    /// MAC (the log then shows the MAC alone).
    pub fn build(content: &Content) -> NodeIndex {
        let configs: BTreeSet<String> = content
            .entries()
            .filter_map(|e| config_node(&e.rel))
            .collect();
        // `<node>-install` is an install config only when `<node>` has a config too.
        let owner = |name: String| match name.strip_suffix("-install") {
            Some(base) if configs.contains(base) => (base.to_string(), true),
            _ => (name, false),
        };
        let mut files = BTreeMap::new();
        for entry in content.entries() {
            if let Some(name) = config_node(&entry.rel) {
                let file = match owner(name) {
                    (node, true) => NodeFile::InstallConfig { node },
                    (node, false) => NodeFile::Config { node },
                };
                files.insert(entry.rel.clone(), file);
            } else if let Some(mac) = script_mac(&entry.rel) {
                // Scripts are small, so their verified bytes are in memory.
                let node = match &entry.data {
                    Data::Memory(bytes) => std::str::from_utf8(bytes).ok(),
                    Data::File(_) => None,
                }
                .and_then(node_of_script)
                .map(|name| owner(name).0);
                files.insert(entry.rel.clone(), NodeFile::Script { mac, node });
            }
        }
        NodeIndex { files }
    }

    pub fn get(&self, rel: &str) -> Option<&NodeFile> {
        self.files.get(rel)
    }

    /// Names of the nodes that have a config in the bundle, sorted.
    pub fn config_nodes(&self) -> Vec<&str> {
        self.files
            .values()
            .filter_map(|file| match file {
                NodeFile::Config { node } => Some(node.as_str()),
                NodeFile::Script { .. } | NodeFile::InstallConfig { .. } => None,
            })
            .collect()
    }
}

/// `ignition/<node>.ign` → `<node>`.
fn config_node(rel: &str) -> Option<String> {
    let name = rel.strip_prefix("ignition/")?.strip_suffix(".ign")?;
    (!name.is_empty() && !name.contains('/')).then(|| name.to_string())
}

/// `nodes/<mac>.ipxe` → `<mac>`.
fn script_mac(rel: &str) -> Option<String> {
    let mac = rel.strip_prefix("nodes/")?.strip_suffix(".ipxe")?;
    (!mac.is_empty() && !mac.contains('/')).then(|| mac.to_string())
}

/// The node whose config a script boots: the `<node>` of `ignition.config.url=.../<node>.ign`.
fn node_of_script(script: &str) -> Option<String> {
    script
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("ignition.config.url="))
        .find_map(|url| {
            let file = url.rsplit('/').next()?;
            let node = file.strip_suffix(".ign")?;
            (!node.is_empty()).then(|| node.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_configs_and_scripts() {
        assert_eq!(config_node("ignition/n1.ign").as_deref(), Some("n1"));
        assert_eq!(config_node("ignition/x/n1.ign"), None);
        assert_eq!(config_node("assets/n1.ign"), None);
        assert_eq!(
            script_mac("nodes/52-54-00-12-34-56.ipxe").as_deref(),
            Some("52-54-00-12-34-56")
        );
        assert_eq!(script_mac("boot.ipxe"), None);
    }

    #[test]
    fn reads_the_node_from_the_kernel_line() {
        let script = "#!ipxe\nkernel http://10.0.0.1:8080/assets/vmlinuz initrd=initrd flatcar.first_boot=1 \
                      ignition.config.url=http://10.0.0.1:8080/ignition/rack-a-3.ign console=ttyS0\n\
                      initrd http://10.0.0.1:8080/assets/initrd\nboot\n";
        assert_eq!(node_of_script(script).as_deref(), Some("rack-a-3"));
        assert_eq!(node_of_script("#!ipxe\nkernel x\nboot\n"), None);
    }
}
