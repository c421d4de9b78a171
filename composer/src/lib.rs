//! `molten`: compiles a cluster profile into per-node Ignition and platform files.
