//! `molten`: compiles a cluster profile into per-node Ignition and platform files.
//!
//! The pipeline, each module using only those below it (docs/architecture.md):
//! `profile` (raw YAML → validated [`model::Cluster`], errors pointing at the YAML, the target
//! platform's rules included) → [`plan`] (what the platform decides per node) → `ignition`
//! (per-node Ignition 3.3.0, knows no platform) → `platform` (per-platform files) → [`compose`]
//! (the driver) → `output` (written to a temporary directory, moved into place only when
//! complete) → `cli`.

pub mod authority;
pub mod cli;
pub mod compose;
pub mod diagnostics;
pub mod digest;
pub mod error;
pub mod ignition;
pub mod model;
pub mod nodeconfig;
pub mod output;
pub mod plan;
pub mod platform;
pub mod profile;
pub mod serve;
pub mod trust;

pub use compose::{compose, Composition};
pub use error::ComposeError;
