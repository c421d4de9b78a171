//! `mc`: the molten node agent. It runs at every boot (`mc converge`) and makes the node match its
//! node config: flannel reservation, cluster CA and Docker TLS, systemd drop-ins, the BOSH Docker
//! network, and a published record and status. Every step is idempotent and reported.
//!
//! The binary (`main.rs`) only parses the command line ([`cli`]) and dispatches here.

pub mod address;
pub mod bosh;
pub mod cert_expiry;
pub mod cli;
pub mod commands;
pub mod config;
pub mod converge;
pub mod docker;
pub mod enroll;
pub mod etcd;
pub mod etcd_commands;
pub mod etcd_join;
pub mod flannel;
pub mod flannel_leases;
pub mod fs;
pub mod identity;
pub mod lock;
pub mod node_access;
pub mod outcome;
pub mod records;
pub mod status;
pub mod systemd;
pub mod text;
pub mod timestamp;
