//! A qemu machine that network-boots with Debian's iPXE ROM (`ipxe-qemu`), under TCG (KVM is not
//! assumed), on qemu's user-mode network: the host is `10.0.2.2` inside the guest, so a server on
//! the host's 127.0.0.1 is reachable without touching the host's network.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::packages::ensure_binary;
use crate::process::ChildGuard;

pub const QEMU: &str = "/usr/bin/qemu-system-x86_64";
/// The ROM qemu loads for a virtio-net NIC, from Debian's `ipxe-qemu`.
pub const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";

/// A running machine; qemu is stopped by PID when this is dropped.
#[derive(Debug)]
pub struct PxeMachine {
    guard: ChildGuard,
    serial: PathBuf,
}

impl PxeMachine {
    /// Boots from the network: iPXE gets DHCP from qemu, whose `bootfile` option hands it
    /// `bootfile_url`. The NIC has `mac` (`52:54:00:...`). The serial console goes to `serial`.
    pub fn boot(bootfile_url: &str, mac: &str, serial: &Path) -> Result<PxeMachine> {
        let netdev = format!("user,id=n0,bootfile={bootfile_url}");
        Self::spawn(Command::new(QEMU), &netdev, mac, serial)
    }

    /// Boots from the network through the existing tap device `tap`, where a real DHCP server
    /// answers. `qemu` is the command to run qemu with, e.g. `NetNs::command(QEMU)` to run it
    /// inside the namespace that holds the tap.
    pub fn boot_on_tap(qemu: Command, tap: &str, mac: &str, serial: &Path) -> Result<PxeMachine> {
        let netdev = format!("tap,id=n0,ifname={tap},script=no,downscript=no");
        Self::spawn(qemu, &netdev, mac, serial)
    }

    fn spawn(mut qemu: Command, netdev: &str, mac: &str, serial: &Path) -> Result<PxeMachine> {
        ensure_binary(QEMU, "qemu-system-x86")?;
        ensure_binary(IPXE_ROM, "ipxe-qemu")?;
        let log =
            File::create(serial).with_context(|| format!("cannot create {}", serial.display()))?;
        let child = qemu
            .args([
                "-accel",
                "tcg",
                "-nographic",
                "-m",
                "1024",
                "-boot",
                "n",
                "-no-reboot",
            ])
            .args(["-netdev", netdev])
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={mac}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start qemu-system-x86_64")?;
        Ok(PxeMachine {
            guard: ChildGuard::new(format!("qemu ({mac})"), child)
                .with_grace(Duration::from_secs(5)),
            serial: serial.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The serial console so far, with terminal escape sequences and carriage returns removed.
    pub fn console(&self) -> String {
        std::fs::read(&self.serial)
            .map(|bytes| clean_console(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default()
    }

    /// Waits until the console shows `needle`; fails when the machine exits first or `timeout`
    /// passes, quoting the end of the console.
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let console = self.console();
            if console.contains(needle) {
                return Ok(console);
            }
            if let Some(status) = self.guard.try_wait()? {
                bail!("qemu exited ({status}) before the console showed {needle:?}; console ends:\n{}", tail(&self.console()));
            }
            if Instant::now() >= deadline {
                bail!(
                    "the console did not show {needle:?} within {timeout:?}; console ends:\n{}",
                    tail(&console)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits for qemu to exit by itself (the guest powered off; `-no-reboot` turns a reboot or
    /// panic into an exit too).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.guard.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "qemu did not exit within {timeout:?}; console ends:\n{}",
                    tail(&self.console())
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Stops qemu now (SIGTERM, then SIGKILL).
    pub fn kill(mut self) -> Result<()> {
        self.guard.stop().map(|_| ())
    }
}

/// Drops ANSI escape sequences (`ESC [ ... letter`, `ESC c`) and `\r`, which iPXE and the
/// firmware write to the serial console.
pub fn clean_console(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if c.is_ascii_alphabetic() {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_terminal_sequences() {
        let raw = "\u{1b}c\u{1b}[?7l\u{1b}[2J\u{1b}[0;1miPXE 1.0\u{1b}[0m\r\nhttp://h/a... ok\r\n";
        assert_eq!(clean_console(raw), "iPXE 1.0\nhttp://h/a... ok\n");
    }
}
