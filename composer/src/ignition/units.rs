//! The systemd units and drop-ins molten installs, as text. Names and paths come from the
//! contract's [`OsLayout`] so the agent orders itself around the same units.

use std::fmt::Write as _;

use molten_contract::trust::{CertificateKind, DEFAULT_STATE_DIR, ETCD_CA_FILE, IDENTITY_SUBDIR};
use molten_contract::{OsLayout, OsVariant};

use std::net::Ipv4Addr;

use crate::error::ComposeError;
use crate::ignition::lifecycle::{NO_START_LIMIT, RESTART_ON_FAILURE};
use crate::model::{Cluster, Node, Runtime};
use crate::plan::{etcd_url, BootMetadata};

/// The name of every drop-in molten writes for a unit the OS ships.
pub const DROPIN_NAME: &str = "20-molten.conf";

/// Where `mc etcd-join` leaves the membership it negotiated with the member it joined through.
pub const ETCD_JOIN_ENV: &str = "/run/molten/etcd-join.env";

/// etcd's data dir on a member, on every OS (Flatcar's etcd-member default; `mc`'s default).
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";

/// How long a static member's `mc etcd-join` looks for a cluster with a leader before etcd
/// starts from its static settings (empty data dir: a new cluster's first boot) or from its data
/// (a whole rack powered on at once). A first boot waits this long once; long enough for the
/// members that boot together to see each other's etcd, short enough not to slow a cold start.
pub const ETCD_BOOTSTRAP_AFTER_SECS: u64 = 10;

/// Flatcar's wrapper that runs etcd in a container with the `ETCD_*` environment.
const FLATCAR_ETCD_WRAPPER: &str = "/usr/lib/flatcar/etcd-wrapper";

/// The unit that enrolls the node with the authority before etcd and the agent start.
pub const ENROLL_UNIT: &str = "mc-enroll.service";
pub const RENEW_UNIT: &str = "mc-renew.service";
pub const RENEW_TIMER: &str = "mc-renew.timer";

/// On Flatcar, etcd-wrapper bind-mounts `ETCD_SSL_DIR` at `/etc/ssl/certs` inside etcd's
/// container (flannel-wrapper at the same path): the state dir, whose `identity/` holds the keys,
/// with a copy of the etcd CA beside it.
pub const FLATCAR_SSL_DIR: &str = "/var/lib/molten";
const FLATCAR_ETCD_CONTAINER_SSL_DIR: &str = "/etc/ssl/certs";

/// Where etcd or flanneld read the etcd CA and the node's certificates, as that process sees
/// the filesystem.
struct TlsFiles {
    ca: String,
    identity: String,
}

impl TlsFiles {
    fn for_etcd(os: OsVariant) -> TlsFiles {
        match os {
            OsVariant::Flatcar => TlsFiles {
                ca: format!("{FLATCAR_ETCD_CONTAINER_SSL_DIR}/etcd-ca.pem"),
                identity: format!("{FLATCAR_ETCD_CONTAINER_SSL_DIR}/identity"),
            },
            OsVariant::Debian => Self::on_host(os),
        }
    }

    fn for_flannel(os: OsVariant) -> TlsFiles {
        match os {
            OsVariant::Flatcar => TlsFiles {
                ca: os
                    .layout()
                    .etcd_ca_copy
                    .expect("Flatcar's layout has an etcd CA copy")
                    .to_string(),
                identity: format!("{FLATCAR_SSL_DIR}/identity"),
            },
            OsVariant::Debian => Self::on_host(os),
        }
    }

    fn on_host(os: OsVariant) -> TlsFiles {
        TlsFiles {
            ca: format!("{}/{ETCD_CA_FILE}", os.layout().tls_dir),
            identity: format!("{DEFAULT_STATE_DIR}/{IDENTITY_SUBDIR}"),
        }
    }

    fn file(&self, kind: CertificateKind, ext: &str) -> String {
        format!("{}/{}.{ext}", self.identity, kind.name())
    }
}

/// `mc-enroll.service`: keys made on the node, certificates from the authority, before etcd,
/// flanneld and the agent's converge. Retries without a start limit: an unreachable authority
/// must not leave the node unenrolled until someone restarts it.
pub fn mc_enroll_unit(layout: &OsLayout) -> String {
    format!(
        "[Unit]\n\
         Description=molten agent: enroll this node with the cluster authority\n\
         After=time-sync.target network-online.target\n\
         Wants=network-online.target\n\
         Before={etcd} {flannel} {agent}\n\
         {NO_START_LIMIT}\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={mc} enroll\n\
         {RESTART_ON_FAILURE}\
         [Install]\n\
         WantedBy=multi-user.target\n",
        etcd = layout.etcd_unit,
        flannel = layout.flannel_unit,
        agent = layout.agent_unit,
        mc = layout.agent_binary,
    )
}

/// `mc-renew.service`: renews certificates with less than a third of their validity left.
pub fn mc_renew_unit(layout: &OsLayout) -> String {
    format!(
        "[Unit]\n\
         Description=molten agent: renew this node's certificates\n\
         After=network-online.target time-sync.target {agent}\n\
         Wants=network-online.target\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={mc} renew\n",
        agent = layout.agent_unit,
        mc = layout.agent_binary,
    )
}

/// `mc-renew.timer`: daily, spread over an hour so a rack does not renew in one second.
pub fn mc_renew_timer() -> String {
    "[Unit]\n\
     Description=molten agent: daily certificate renewal\n\
     [Timer]\n\
     OnCalendar=daily\n\
     RandomizedDelaySec=1h\n\
     Persistent=true\n\
     [Install]\n\
     WantedBy=timers.target\n"
        .to_string()
}

/// `mc.service`: the boot converge, between etcd and flanneld/Docker. Retried on failure without
/// a start limit (a peer may take minutes to boot); units ordered after it keep their start jobs
/// queued while it restarts.
///
/// Not ordered before `docker.socket`: a socket is `Before=sockets.target`, which comes before
/// `basic.target`, which every service (etcd included) follows, so `Before=docker.socket` closes
/// an ordering cycle that PID 1 breaks by deleting a random job at every boot. `docker.service`
/// is ordered after `mc.service`, so a connection to the socket before then only queues dockerd.
/// Where addresses come from a metadata agent, it also waits for that.
pub fn mc_unit(layout: &OsLayout, metadata: Option<&BootMetadata>) -> String {
    let (mut metadata_after, mut metadata_wants) = match metadata {
        Some(m) => (format!(" {}", m.unit), format!(" {}", m.unit)),
        None => (String::new(), String::new()),
    };
    metadata_after.push_str(&format!(" {ENROLL_UNIT}"));
    metadata_wants.push_str(&format!(" {ENROLL_UNIT}"));
    // Every variant: certificates are neither requested nor trusted before the clock is set.
    // Ordering only (no Wants=): time-sync.target is passive, pulled in by whatever syncs the
    // clock (systemd.special(7)); mc itself refuses a clock before its build and retries.
    format!(
        "[Unit]\n\
         Description=molten agent: boot converge\n\
         After={etcd} network-online.target time-sync.target{metadata_after}\n\
         Wants=network-online.target{metadata_wants}\n\
         Before={flannel} {docker}\n\
         {NO_START_LIMIT}\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={mc} converge --stage boot\n\
         {RESTART_ON_FAILURE}\
         [Install]\n\
         WantedBy=multi-user.target\n",
        etcd = layout.etcd_unit,
        flannel = layout.flannel_unit,
        docker = layout.docker_unit,
        mc = layout.agent_binary,
    )
}

/// `mc-network.service`: the converge steps that need Docker and flannel up.
pub fn mc_network_unit(layout: &OsLayout) -> String {
    format!(
        "[Unit]\n\
         Description=molten agent: network converge\n\
         After={docker} {flannel}\n\
         Requires={docker}\n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={mc} converge --stage network\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        docker = layout.docker_unit,
        flannel = layout.flannel_unit,
        mc = layout.agent_binary,
    )
}

/// etcd's addresses and membership for one member: https client and peer URLs with mutual TLS
/// from the node's enrolled certificates.
pub struct EtcdMember<'a> {
    pub cluster: &'a Cluster,
    pub node: &'a Node,
}

impl EtcdMember<'_> {
    fn client_port(&self) -> u16 {
        self.cluster.etcd.client_port
    }

    fn peer_port(&self) -> u16 {
        self.cluster.etcd.peer_port
    }

    fn url(&self, host: &str, port: u16) -> String {
        etcd_url(host, port)
    }

    /// `(flag/variable suffix, value)` pairs of etcd's TLS settings.
    fn tls_settings(&self) -> Vec<(&'static str, String)> {
        let files = TlsFiles::for_etcd(self.cluster.os);
        vec![
            ("CERT_FILE", files.file(CertificateKind::EtcdServer, "pem")),
            ("KEY_FILE", files.file(CertificateKind::EtcdServer, "key")),
            ("TRUSTED_CA_FILE", files.ca.clone()),
            ("CLIENT_CERT_AUTH", "true".into()),
            (
                "PEER_CERT_FILE",
                files.file(CertificateKind::EtcdPeer, "pem"),
            ),
            (
                "PEER_KEY_FILE",
                files.file(CertificateKind::EtcdPeer, "key"),
            ),
            ("PEER_TRUSTED_CA_FILE", files.ca),
            ("PEER_CLIENT_CERT_AUTH", "true".into()),
        ]
    }

    /// `[Unit]` lines that order etcd after enrollment.
    fn enroll_ordering(&self) -> String {
        format!("After={ENROLL_UNIT}\nWants={ENROLL_UNIT}\n")
    }

    /// Flatcar: the wrapper's mount of the state dir, and etcd as root in its container (the
    /// keys are 0600 root on the state dir).
    fn flatcar_wrapper_env(&self) -> Vec<(String, String)> {
        vec![
            ("ETCD_SSL_DIR".into(), FLATCAR_SSL_DIR.into()),
            ("ETCD_USER".into(), "root".into()),
        ]
    }

    /// `(flag/variable suffix, value)` pairs for a member whose address is `ip`.
    fn address_settings(&self, ip: &str) -> Vec<(&'static str, String)> {
        vec![
            (
                "LISTEN_CLIENT_URLS",
                format!(
                    "{},{}",
                    self.url(ip, self.client_port()),
                    self.url("127.0.0.1", self.client_port())
                ),
            ),
            ("ADVERTISE_CLIENT_URLS", self.url(ip, self.client_port())),
            ("LISTEN_PEER_URLS", self.url(ip, self.peer_port())),
            (
                "INITIAL_ADVERTISE_PEER_URLS",
                self.url(ip, self.peer_port()),
            ),
        ]
    }

    /// All settings of a statically bootstrapped member, `(suffix, value)`.
    fn static_settings(&self, ip: Ipv4Addr, initial_cluster: &str) -> Vec<(&'static str, String)> {
        let mut settings = vec![("NAME", self.node.name.clone())];
        settings.extend(self.address_settings(&ip.to_string()));
        settings.push(("INITIAL_CLUSTER", initial_cluster.to_string()));
        settings.push(("INITIAL_CLUSTER_STATE", "new".to_string()));
        settings.push(("INITIAL_CLUSTER_TOKEN", self.cluster.name.clone()));
        settings.extend(self.tls_settings());
        settings
    }

    /// Flatcar, addresses from the profile: `etcd-member.service` configured by `ETCD_*`.
    pub fn flatcar_static_dropin(
        &self,
        ip: Ipv4Addr,
        initial_cluster: &str,
    ) -> Result<String, ComposeError> {
        let mut env = vec![(
            "ETCD_IMAGE".to_string(),
            container_image(&self.cluster.etcd.runtime, "etcd")?.to_string(),
        )];
        for (suffix, value) in self.static_settings(ip, initial_cluster) {
            env.push((format!("ETCD_{suffix}"), value));
        }
        env.extend(self.flatcar_wrapper_env());
        Ok(format!(
            "[Unit]\n{}[Service]\n{}{}",
            self.enroll_ordering(),
            environment(&env),
            self.static_join(OsVariant::Flatcar),
        ))
    }

    /// A static member negotiates its membership before etcd starts: `mc etcd-join` writes
    /// `ETCD_INITIAL_CLUSTER` and state `existing` to its env file when the member joins a running
    /// cluster (a wiped disk, a node added to the profile, a member held back at first boot),
    /// and removes the file otherwise. `EnvironmentFile=` overrides `Environment=` whatever the
    /// order, so the negotiated values replace the static ones.
    fn static_join(&self, os: OsVariant) -> String {
        format!(
            "EnvironmentFile=-{ETCD_JOIN_ENV}\n\
             ExecStartPre={mc} etcd-join --peer-port {port} --data-dir {ETCD_DATA_DIR} \
             --bootstrap-after {ETCD_BOOTSTRAP_AFTER_SECS}\n",
            mc = os.layout().agent_binary,
            port = self.peer_port(),
        )
    }

    /// Debian: replaces the packaged `etcd.service` command with the profile's binary and the
    /// same settings as flags. The packaged unit sets `ETCD_NAME=%H` (and reads more `ETCD_*`
    /// from `/etc/default/etcd`); etcd refuses a flag whose variable is also set, so the
    /// variables of exactly the flags passed here are unset. The initial cluster and its state
    /// are variables instead, which `mc etcd-join`'s env file can override.
    pub fn debian_dropin(
        &self,
        ip: Ipv4Addr,
        initial_cluster: &str,
    ) -> Result<String, ComposeError> {
        let binary = binary_path(&self.cluster.etcd.runtime, "etcd")?;
        let mut settings = self.static_settings(ip, initial_cluster);
        // The packaged unit keeps the data in /var/lib/etcd/default; molten's data dir is
        // /var/lib/etcd on every OS (where `mc etcd-join`, `mc etcd restore` and
        // docs/operations.md look for the member).
        settings.push(("DATA_DIR", ETCD_DATA_DIR.to_string()));
        // The membership `mc etcd-join` may override from its env file: variables, not flags.
        let (membership, flags): (Vec<_>, Vec<_>) =
            settings.into_iter().partition(|(suffix, _)| {
                matches!(*suffix, "INITIAL_CLUSTER" | "INITIAL_CLUSTER_STATE")
            });
        let unset: Vec<String> = flags
            .iter()
            .map(|(suffix, _)| format!("ETCD_{suffix}"))
            .collect();
        let membership: Vec<(String, String)> = membership
            .into_iter()
            .map(|(suffix, value)| (format!("ETCD_{suffix}"), value))
            .collect();
        // The packaged unit runs etcd as `etcd`; the keys are 0600 root on the state dir. It
        // restarts only on a signal or timeout: a failed join is retried here like mc's units.
        let mut text = format!(
            "[Unit]\n{}{NO_START_LIMIT}[Service]\nUser=root\nUnsetEnvironment={}\n{}{}\
             {RESTART_ON_FAILURE}ExecStart=\nExecStart={binary}",
            self.enroll_ordering(),
            unset.join(" "),
            environment(&membership),
            self.static_join(OsVariant::Debian),
        );
        for (suffix, value) in flags {
            let flag = suffix.to_ascii_lowercase().replace('_', "-");
            let _ = write!(text, " \\\n  --{flag}={value}");
        }
        text.push('\n');
        Ok(text)
    }

    /// Addresses from a metadata file at boot: they are flags on the command line (systemd
    /// expands `${VAR}` there, not in `Environment=`). The first member (`join_through` none)
    /// starts a one-member cluster; every other one first joins through it with
    /// `mc etcd-join`, whose environment file supplies `ETCD_INITIAL_CLUSTER` and the
    /// `existing` state.
    pub fn flatcar_at_boot_dropin(
        &self,
        metadata: &BootMetadata,
        join_through: Option<&str>,
    ) -> Result<String, ComposeError> {
        let seed = join_through.is_none();
        let ip = format!("${{{}}}", metadata.private_ipv4_var);
        let mut text = format!(
            "[Unit]\nRequires={unit}\nAfter={unit}\n{enroll}[Service]\nEnvironmentFile={env}\n",
            unit = metadata.unit,
            env = metadata.env_file,
            enroll = self.enroll_ordering(),
        );
        let state = if seed { "new" } else { "existing" };
        text.push_str(&environment(
            &[
                (
                    "ETCD_IMAGE".into(),
                    container_image(&self.cluster.etcd.runtime, "etcd")?.into(),
                ),
                ("ETCD_NAME".into(), self.node.name.clone()),
                ("ETCD_INITIAL_CLUSTER_STATE".into(), state.into()),
                (
                    "ETCD_INITIAL_CLUSTER_TOKEN".into(),
                    self.cluster.name.clone(),
                ),
            ]
            .into_iter()
            .chain(
                self.tls_settings()
                    .into_iter()
                    .map(|(suffix, value)| (format!("ETCD_{suffix}"), value)),
            )
            .chain(self.flatcar_wrapper_env())
            .collect::<Vec<_>>(),
        ));
        if let Some(through) = join_through {
            // Through another member: this member's own etcd is not running yet.
            let _ = write!(
                text,
                "EnvironmentFile=-{ETCD_JOIN_ENV}\n\
                 ExecStartPre={} etcd-join --peer-port {} --etcd {through}\n",
                OsVariant::Flatcar.layout().agent_binary,
                self.peer_port(),
            );
        }
        let _ = write!(
            text,
            "ExecStart=\nExecStart={FLATCAR_ETCD_WRAPPER} $ETCD_OPTS"
        );
        let mut flags = self.address_settings(&ip);
        if seed {
            flags.push((
                "INITIAL_CLUSTER",
                format!("{}={}", self.node.name, self.url(&ip, self.peer_port())),
            ));
        }
        for (suffix, value) in flags {
            let flag = suffix.to_ascii_lowercase().replace('_', "-");
            let _ = write!(text, " \\\n  --{flag}={value}");
        }
        text.push('\n');
        Ok(text)
    }
}

/// flanneld's options: the etcd v3 endpoints and prefix, the etcd CA and the node's etcd client
/// certificate.
fn flannel_opts(cluster: &Cluster, endpoints: &[String]) -> String {
    let files = TlsFiles::for_flannel(cluster.os);
    format!(
        "--etcd-endpoints={} --etcd-prefix={} --etcd-cafile={} --etcd-certfile={} \
         --etcd-keyfile={}",
        endpoints.join(","),
        cluster.flannel.settings.prefix,
        files.ca,
        files.file(CertificateKind::EtcdClient, "pem"),
        files.file(CertificateKind::EtcdClient, "key"),
    )
}

/// Flatcar: `flanneld.service` drop-in pinning the image and pointing it at etcd; it starts
/// only after `mc` has put this node's subnet reservation.
pub fn flannel_flatcar_dropin(
    cluster: &Cluster,
    layout: &OsLayout,
    endpoints: &[String],
) -> Result<String, ComposeError> {
    let mut text = format!(
        "[Unit]\nAfter={mc}\nRequires={mc}\n[Service]\n",
        mc = layout.agent_unit
    );
    let env = vec![
        (
            "FLANNEL_IMAGE".into(),
            container_image(&cluster.flannel.runtime, "flannel")?.into(),
        ),
        ("FLANNEL_OPTS".into(), flannel_opts(cluster, endpoints)),
        ("ETCD_SSL_DIR".into(), FLATCAR_SSL_DIR.into()),
    ];
    text.push_str(&environment(&env));
    Ok(text)
}

/// Debian: a `flanneld.service` for the profile's flanneld binary. `/run/flannel/options.env`
/// (as on Flatcar) is where per-boot settings such as `FLANNELD_IFACE` can go.
pub fn flannel_debian_unit(
    cluster: &Cluster,
    layout: &OsLayout,
    endpoints: &[String],
) -> Result<String, ComposeError> {
    let binary = binary_path(&cluster.flannel.runtime, "flannel")?;
    Ok(format!(
        "[Unit]\n\
         Description=flannel overlay network\n\
         After=network-online.target {mc}\n\
         Wants=network-online.target\n\
         Before={docker}\n\
         [Service]\n\
         Type=notify\n\
         EnvironmentFile=-/run/flannel/options.env\n\
         ExecStart={binary} {opts}\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        mc = layout.agent_unit,
        docker = layout.docker_unit,
        opts = flannel_opts(cluster, endpoints),
    ))
}

/// One `Environment=` setting holding every `(name, value)`, one per continued line (fewer
/// bytes than a line each). Values are molten's own URLs, names and image references; only
/// those with a space need quotes.
fn environment(vars: &[(String, String)]) -> String {
    let assignments: Vec<String> = vars
        .iter()
        .map(|(name, value)| {
            if value.contains(' ') {
                format!("\"{name}={value}\"")
            } else {
                format!("{name}={value}")
            }
        })
        .collect();
    format!("Environment={}\n", assignments.join(" \\\n  "))
}

fn container_image<'a>(runtime: &'a Runtime, what: &str) -> Result<&'a str, ComposeError> {
    match runtime {
        Runtime::Container { image } => Ok(image),
        Runtime::Binary { .. } => Err(ComposeError::invalid(
            &format!("$.{what}"),
            format!("Flatcar runs {what} as a container: give an image pinned by digest"),
        )),
    }
}

fn binary_path<'a>(runtime: &'a Runtime, what: &str) -> Result<&'a str, ComposeError> {
    match runtime {
        Runtime::Binary { path } => Ok(path),
        Runtime::Container { .. } => Err(ComposeError::invalid(
            &format!("$.{what}"),
            format!("Debian runs {what} as a binary: give the binary's path"),
        )),
    }
}
