//! Test harness shared by molten's integration and end-to-end suites: the real components, each
//! started on 127.0.0.1 (random free ports) in its own temp dir and stopped by PID when dropped,
//! also when a test panics.
//!
//! | module | what | entry points |
//! |---|---|---|
//! | [`etcd`] | Debian's etcd (v3 API), one member | `EtcdServer::start()`, `start_named(name)`, `start_tls(name, tls)` (mTLS, `--client-cert-auth`), `.endpoint()`, `.pid()`, `.etcdctl(args)`, `.stop()` |
//! | [`etcd_cluster`] | several etcd members on 127.0.0.1 | `EtcdCluster::start(names)`, `.stop(n)`, `.wipe(n)`, `.restart(n)`, `.reserve(n)`, `.start_existing(n, initial)` |
//! | [`docker`] | Debian's dockerd, isolated (own data/exec root, socket, `--bridge=none --iptables=false`) | `Dockerd::start()`, `Dockerd::builder().arg(..).start()`, `.host()`, `.cli(args)`, `.import_busybox_image(name)`, `.stop()` |
//! | [`fresh_root`] | README's first command on a pristine Debian root with only Rust (cached debootstrap, overlay per run, chroot) | `fresh_root::run_first_command(source)` |
//! | [`ignition`] | the real Ignition validator and engine | `validate(path)`, `apply_files(config, root)`, `apply_files_online(config, root)`, `prepare_root(root)` |
//! | [`lab`] | the local lab: Debian node image, systemd-as-PID-1 nodes in network namespaces, the composed cluster (docs/lab.md) | `lab::cluster::Lab::provision(..)`, `.boot_all()`, `lab::checks`, `lab::probes` |
//! | [`man_pages`] | the generated man pages in docs/man, and the check that they are current | `check_current(command, version)` |
//! | [`pki`] | throwaway CAs and certificates (files, keys 0600) for etcd/dockerd over mTLS | `pki::TestCa::new(name, dir)`, `.issue(cn, sans)` |
//! | [`tls`] | a blocking HTTPS request pinned to one CA, with or without a client certificate; returns the server's certificate | `tls::request(addr, ca, client, method, path, body)` |
//! | [`process`] | helpers | `free_port()`, `wait_until(what, timeout, poll, f)`, `ChildGuard` (kill by PID on drop), `run(cmd)` |
//!
//! Missing Debian packages are installed with apt-get when running as root (said on stderr);
//! otherwise the harness fails naming the package.

pub mod docker;
pub mod etcd;
pub mod etcd_cluster;
pub mod fixtures;
pub mod fresh_root;
pub mod http;
pub mod ignition;
pub mod ipxe;
pub mod lab;
pub mod man_pages;
pub mod modgraph;
pub mod mounts;
pub mod packages;
pub mod pki;
pub mod process;
pub mod tls;

pub use process::{free_port, wait_until, ChildGuard};
