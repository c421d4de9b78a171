//! mc against the real parts: a real etcd (with and without mutual TLS), dockerd, systemd in a
//! lab node, and the real authority of `molten serve --authority`, via the library and the built
//! binary. One test binary (one link instead of nine); modules by topic.

mod core {
    pub mod bad_input;
    pub mod bosh;
    pub mod concurrency;
    pub mod docker_tls;
    pub mod enroll_cli;
    pub mod etcd_failover;
    pub mod etcd_join;
    pub mod etcd_membership;
    pub mod etcd_snapshot;
    pub mod flannel;
    pub mod hostile_records;
    pub mod idempotence;
    pub mod lock;
    pub mod pki;
    pub mod status;
    pub mod support;
}

mod authority_e2e;
mod docker_network;
mod docker_tls;
mod etcd_rbac;
mod systemd_dropins;
mod systemd_live;
mod trust_converge;
mod trust_docker;
