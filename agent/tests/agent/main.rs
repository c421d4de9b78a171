//! mc against the real parts: a real etcd (always with mutual TLS and client certificates, as
//! molten runs it), dockerd, systemd in a lab node, and the real authority of `molten serve --authority`, via the library and the built
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
    pub mod etcd_static_join;
    pub mod flannel;
    pub mod hostile_records;
    pub mod idempotence;
    pub mod identity;
    pub mod lock;
    pub mod status;
    pub mod support;
}

mod authority_e2e;
mod docker_network;
mod docker_probe;
mod docker_tls;
mod etcd_rbac;
mod fuzz_corpus;
mod record_ca;
mod systemd_dropins;
mod systemd_live;
mod timers_live;
mod trust_converge;
mod trust_docker;
