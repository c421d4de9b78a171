//! mc's core against the real parts: a real etcd (and dockerd where the step needs it), via the
//! library and the built binary. One test binary; modules by topic.

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
