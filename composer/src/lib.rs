//! `molten`: compiles a cluster profile into per-node Ignition and platform files.
//!
//! Stages: `profile` (raw YAML → validated [`model::Cluster`], errors pointing at the YAML) →
//! `ignition` (per-node Ignition 3.3.0) → `platform` (per-platform files) → `output` (written to a
//! temporary directory, moved into place only when complete).

pub mod authority;
pub mod cli;
pub mod diagnostics;
pub mod ignition;
pub mod model;
pub mod nodeconfig;
pub mod output;
pub mod platform;
pub mod profile;
pub mod serve;
