//! molten's integration tests, one binary (cargo links one test executable instead of one per
//! file): each module is a suite; `common`, `serve_support` and `authority_support` are their
//! shared helpers.

mod authority_support;
mod common;
mod serve_support;

mod authority_cli;
mod authority_serve;
mod compose_cli;
mod compose_ignition;
mod compose_snapshots;
mod compose_trust;
mod profile_corpus;
mod profile_fuzz;
mod profile_rules;
mod profile_shipped;
mod serve_bundles;
mod serve_cli;
mod serve_http;
