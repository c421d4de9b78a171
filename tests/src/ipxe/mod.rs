//! A real iPXE client for the ipxe bundle: qemu with Debian's iPXE ROM boots Debian's kernel and
//! an initramfs that runs Debian's Ignition engine (`fetch` stage, `metal` platform), so a test
//! can see which config a node fetched. Used by `tests/tests/ipxe.rs`; see docs/platforms.md.
//!
//! | module | what |
//! |---|---|
//! | [`cpio`] | deterministic `newc` archive writer |
//! | [`kernel`] | Debian's kernel, unpacked from its .deb into the cache (never installed) |
//! | [`initramfs`] | builds and caches the initramfs (busybox, Ignition, virtio-net) |
//! | [`qemu`] | `PxeMachine::boot(url, mac, serial_log)`, console waits, kill by PID on drop |
//! | [`workspace`] | builds and finds the workspace's `molten` and `mc` binaries |

pub mod cpio;
pub mod initramfs;
pub mod kernel;
pub mod qemu;
pub mod workspace;
