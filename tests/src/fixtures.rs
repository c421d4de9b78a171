//! Sample inputs the suites share, so a test spells out only what it cares about.

use std::net::Ipv4Addr;

use molten_contract::trust::{NodeTlsIdentity, SubjectAltName, DEFAULT_STATE_DIR};
use molten_contract::{
    AddressSource, BoshSettings, DockerSettings, EtcdSettings, FlannelSettings, NodeConfig,
    NodeIdentity, OsVariant, Role, TrustSettings, NODE_CONFIG_VERSION,
};

/// The node config of an etcd + worker node `name` in zone `zone` with the static address `ip`,
/// on a Debian node of cluster "test". The rest are the shipped defaults: etcd at
/// `https://<ip>:2379`, flannel `10.1.0.0/16` with /24 subnets, docker0 on `10.255.240.0/20`,
/// Docker TLS on 2376, the BOSH network "bosh", and a trust section whose CAs are placeholders
/// ([`crate::pki::TestTrust::enroll`] puts real ones and the identity files in). Tests change
/// the fields they need afterwards.
pub fn node_config(name: &str, zone: u32, ip: Ipv4Addr) -> NodeConfig {
    NodeConfig {
        version: NODE_CONFIG_VERSION,
        cluster: "test".into(),
        os: OsVariant::Debian,
        node: NodeIdentity {
            name: name.into(),
            zone,
            roles: vec![Role::Etcd, Role::Worker],
            address: AddressSource::Static { private_ip: ip },
        },
        etcd: EtcdSettings {
            endpoints: vec![format!("https://{ip}:2379")],
            snapshots: Default::default(),
        },
        flannel: FlannelSettings::new("10.1.0.0/16".parse().expect("valid CIDR"), 24),
        docker: DockerSettings {
            bridge_cidr: "10.255.240.0/20".parse().expect("valid CIDR"),
            tls_port: 2376,
        },
        bosh: BoshSettings {
            enabled: true,
            network_name: "bosh".into(),
        },
        trust: TrustSettings {
            authority_url: format!("https://{ip}:8443"),
            authority_ca: "(test: no authority CA)".into(),
            etcd_ca: "(test: no etcd CA)".into(),
            docker_ca: "(test: no Docker CA)".into(),
            identity: NodeTlsIdentity {
                etcd_peer_sans: vec![SubjectAltName::Ip(ip.into())],
                etcd_server_sans: vec![SubjectAltName::Ip(ip.into())],
                etcd_client_cn: name.into(),
                docker_server_sans: vec![SubjectAltName::Ip(ip.into())],
            },
            roster: vec![name.into()],
            state_dir: DEFAULT_STATE_DIR.into(),
        },
    }
}

/// The `/run/flannel/subnet.env` flanneld writes once it holds the lease of `config`'s zone
/// subnet (first host address / prefix, as flanneld does).
pub fn flannel_subnet_env(config: &NodeConfig) -> String {
    let subnet = config
        .subnet()
        .expect("the fixture's zone has a subnet in its network");
    format!(
        "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
        config.flannel.network,
        molten_contract::gateway(subnet),
        subnet.prefix_len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_is_a_valid_node_config() {
        let config = node_config("node-3", 3, Ipv4Addr::new(10, 0, 0, 13));
        let again = NodeConfig::from_json("fixture", &config.to_json()).unwrap();
        assert_eq!(again, config);
        assert_eq!(config.etcd.endpoints, ["https://10.0.0.13:2379"]);
        // Zone 3 gets 10.1.(3 + 1).0/24: subnet_for_zone never hands out the first /24.
        assert_eq!(config.subnet().unwrap().to_string(), "10.1.4.0/24");
    }
}
