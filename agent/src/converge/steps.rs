//! The steps themselves, sharing what earlier steps produced (IP, identity, etcd sessions).

use std::net::Ipv4Addr;

use anyhow::Context;
use molten_contract::Role;

use super::options::{Options, Stage};
use super::record::node_record;
use super::trust::{self, IdentityState};
use crate::config::Config;
use crate::enroll;
use crate::etcd::Etcd;
use crate::identity::Kind;
use crate::outcome::{run_step, Done, State, StepOutcome};
use crate::records;
use crate::systemd::{self, Systemd};

/// How long a converge waits for this node's learner to catch up before failing the step.
const PROMOTE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) struct Run<'a> {
    options: &'a Options,
    config: &'a Config,
    systemd: &'a dyn Systemd,
    pub outcomes: Vec<StepOutcome>,
    pub etcd: Option<Etcd>,
    ip: Option<Ipv4Addr>,
    /// From node.json's `trust` section: the enrolled identity, etcd over mTLS.
    trust: enroll::Settings,
    identity: Option<IdentityState>,
    /// A member's session as etcd `root` (its etcd-admin identity), once opened.
    admin: Option<Etcd>,
}

impl<'a> Run<'a> {
    pub fn new(options: &'a Options, config: &'a Config, systemd: &'a dyn Systemd) -> Self {
        Self {
            options,
            config,
            systemd,
            outcomes: Vec::new(),
            etcd: None,
            ip: None,
            trust: enroll::Settings::from_config(config),
            identity: None,
            admin: None,
        }
    }

    pub async fn execute(&mut self) {
        let boot = matches!(self.options.stage, Stage::Boot | Stage::All);
        let network = matches!(self.options.stage, Stage::Network | Stage::All);
        let first = if boot { "boot" } else { "network" };
        self.address(first).await;
        if boot {
            self.identity().await;
        }
        self.connect(first).await;
        if boot && self.config.has_role(Role::Etcd) {
            self.etcd_member().await;
        }
        if boot {
            if self.trust.member {
                self.rbac().await;
            }
            self.flannel().await;
            self.units().await;
        }
        if network {
            self.docker_network().await;
        }
        if boot {
            self.record().await;
        }
    }

    fn push(&mut self, outcome: StepOutcome) {
        self.outcomes.push(outcome);
    }

    async fn address(&mut self, stage: &str) {
        let root = self.options.root.clone();
        let config = self.config;
        let (outcome, ip) = run_step("address", stage, async move {
            let ip = crate::address::private_ip(&root, config)?;
            Ok((Done::unchanged(format!("private IP {ip}")), ip))
        })
        .await;
        self.ip = ip;
        self.push(outcome);
    }

    async fn connect(&mut self, stage: &str) {
        let endpoints = self
            .options
            .etcd
            .clone()
            .unwrap_or_else(|| self.config.etcd.endpoints.clone());
        let retry = self.options.etcd_retry;
        let (root, settings) = (&self.options.root, &self.trust);
        let (outcome, client) = run_step("etcd", stage, async move {
            let tls = trust::etcd_tls(root, settings, Kind::EtcdClient)?;
            let etcd = Etcd::connect(&endpoints, retry, tls).await?;
            Ok((
                Done::unchanged(format!(
                    "connected to {} (of {})",
                    etcd.endpoint(),
                    endpoints.join(",")
                )),
                etcd,
            ))
        })
        .await;
        self.etcd = client;
        self.push(outcome);
    }

    async fn identity(&mut self) {
        let settings = &self.trust;
        let (root, config, sd) = (&self.options.root, self.config, self.systemd);
        let (outcome, state) = run_step("identity", "boot", async move {
            trust::ensure_identity(root, config, settings, sd).await
        })
        .await;
        self.identity = state;
        self.push(outcome);
    }

    async fn rbac(&mut self) {
        let mut open_error = None;
        if self.admin.is_none() {
            match self.open_admin().await {
                Ok(admin) => self.admin = Some(admin),
                Err(e) => open_error = Some(e),
            }
        }
        let (root, config, settings) = (&self.options.root, self.config, &self.trust);
        let admin = self.admin.as_mut();
        let (outcome, _) = run_step("rbac", "boot", async move {
            let Some(admin) = admin else {
                let e = open_error.unwrap_or_else(|| anyhow::anyhow!("no session"));
                return Err(e.context("connecting to etcd as root (etcd-admin)"));
            };
            let done = trust::ensure_rbac(root, config, settings, admin).await?;
            Ok((done, ()))
        })
        .await;
        self.push(outcome);
    }

    /// A session as etcd `root` with this member's etcd-admin identity.
    async fn open_admin(&self) -> anyhow::Result<Etcd> {
        let endpoints = self
            .options
            .etcd
            .clone()
            .unwrap_or_else(|| self.config.etcd.endpoints.clone());
        let tls = trust::etcd_tls(&self.options.root, &self.trust, Kind::EtcdAdmin)?;
        Etcd::connect(&endpoints, self.options.etcd_retry, tls).await
    }

    /// A member that joined as a learner becomes a voter here once it has caught up; a failure
    /// fails only this step (mc.service runs again and retries it).
    async fn etcd_member(&mut self) {
        // With access control on, promoting a member takes the root identity.
        if self.admin.is_none() {
            self.admin = self.open_admin().await.ok();
        }
        let Some(etcd) = self.admin.as_mut() else {
            return self.push(StepOutcome::skipped(
                "etcd-member",
                "boot",
                "needs etcd as root (etcd-admin)",
            ));
        };
        let name = &self.config.node.name;
        let (outcome, _) = run_step("etcd-member", "boot", async move {
            let promoted = crate::etcd::membership::promote_self(etcd, name, PROMOTE_WAIT).await?;
            Ok((
                match promoted {
                    Some(detail) => Done::changed(detail),
                    None => Done::unchanged("a voting member (or not joined yet)"),
                },
                (),
            ))
        })
        .await;
        self.push(outcome);
    }

    async fn flannel(&mut self) {
        let (Some(etcd), Some(ip)) = (self.etcd.as_mut(), self.ip) else {
            return self.push(StepOutcome::skipped(
                "flannel",
                "boot",
                "needs etcd and the IP",
            ));
        };
        let settings = &self.config.flannel;
        let node = &self.config.node.name;
        let subnet = self.config.subnet;
        let (outcome, _) = run_step("flannel", "boot", async move {
            let config = etcd
                .run("flannel network config", |mut client| async move {
                    crate::flannel::ensure_network_config(&mut client, settings).await
                })
                .await?;
            let lease = etcd
                .run("flannel subnet reservation", |mut client| async move {
                    crate::flannel::ensure_reservation(&mut client, settings, node, subnet, ip)
                        .await
                })
                .await?;
            etcd.run("flannel lease check", |mut client| async move {
                crate::flannel_leases::check(&mut client, settings, subnet, ip).await
            })
            .await?;
            let detail = format!("{}; {}; no foreign lease", config.detail, lease.detail);
            Ok((Done::from_flag(changed(&[&config, &lease]), detail), ()))
        })
        .await;
        self.push(outcome);
    }

    async fn units(&mut self) {
        let Some(ip) = self.ip else {
            return self.push(StepOutcome::skipped("units", "boot", "needs the IP"));
        };
        let tls = trust::docker_tls_paths(self.config, &self.trust);
        let (root, config, sd) = (&self.options.root, self.config, self.systemd);
        let (outcome, _) = run_step("units", "boot", async move {
            let result = systemd::converge_node_units(root, config, ip, &tls, sd)?;
            Ok((result.done(), ()))
        })
        .await;
        self.push(outcome);
    }

    async fn docker_network(&mut self) {
        if !self.config.bosh.enabled || !self.config.has_role(Role::Worker) {
            return self.push(StepOutcome::skipped(
                "docker-network",
                "network",
                "BOSH is not enabled on this node",
            ));
        }
        let (config, options, subnet) = (self.config, self.options, self.config.subnet);
        let (outcome, _) = run_step("docker-network", "network", async move {
            Ok((super::network::ensure(options, config, subnet).await?, ()))
        })
        .await;
        self.push(outcome);
    }

    async fn record(&mut self) {
        let certs = trust::record_certs(&self.trust, self.identity.as_ref(), &self.options.root);
        let (Some(etcd), Some(ip), Some(certs)) = (self.etcd.as_mut(), self.ip, certs) else {
            return self.push(StepOutcome::skipped(
                "record",
                "boot",
                "needs etcd, the IP and the certificates",
            ));
        };
        let record = node_record(self.config, ip, &certs);
        let (outcome, _) = run_step("record", "boot", async move {
            let record = &record;
            let wrote = etcd
                .run("node record", |mut client| async move {
                    records::publish_record(&mut client, record).await
                })
                .await
                .context("publishing the node record")?;
            let key = molten_contract::keys::node_record(&record.name);
            Ok((Done::from_flag(wrote, key), ()))
        })
        .await;
        self.push(outcome);
    }
}

fn changed(done: &[&Done]) -> bool {
    done.iter().any(|d| d.state == State::Changed)
}
