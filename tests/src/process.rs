//! Small helpers every harness piece uses: free ports, bounded polling, and a guard that stops a
//! child process by its PID when it goes out of scope (also when a test panics).

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768-60999), so the
/// source ports of the many outgoing connections tests make never land on them.
const TEST_PORTS: std::ops::Range<u16> = 20000..32000;

/// A free TCP port on 127.0.0.1, picked at random below the ephemeral range (binding port 0
/// would give an ephemeral port, which a parallel test's outgoing connection could take before
/// the caller binds it). Another process may still take it: callers that bind later should
/// retry on "address in use".
pub fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, RandomState};
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    let start = RandomState::new().hash_one(std::process::id()) % span;
    for step in 0..span {
        let port = TEST_PORTS.start + ((start + step) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on 127.0.0.1 in {TEST_PORTS:?}")
}

/// Calls `check` every `poll` until it returns `Ok(Some(value))` or `timeout` passes.
/// `Ok(None)` means "not yet"; an `Err` ends the wait at once (e.g. the daemon died).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(poll);
    }
}

/// Sends `signal` to `pid`; "no such process" is not an error (it is already gone).
pub fn signal(pid: u32, signal: i32) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err).with_context(|| format!("kill({pid}, {signal}) failed"));
        }
    }
    Ok(())
}

/// Owns a child process: [`ChildGuard::stop`] (or drop) sends SIGTERM, waits up to the grace
/// period, then SIGKILLs and reaps it.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
    grace: Duration,
}

impl ChildGuard {
    pub fn new(what: impl Into<String>, child: Child) -> Self {
        Self {
            child: Some(child),
            what: what.into(),
            grace: Duration::from_secs(10),
        }
    }

    /// How long [`ChildGuard::stop`] waits after SIGTERM before SIGKILL.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The child's piped stderr, once.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut()?.stderr.take()
    }

    /// The child's PID (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` if the child has exited (it is reaped then).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .with_context(|| format!("failed to poll {}", self.what)),
            None => bail!("{} was already stopped", self.what),
        }
    }

    /// Fails if the child has already exited, naming its status.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_wait()? {
            bail!("{} exited early with {status}", self.what);
        }
        Ok(())
    }

    /// Stops the child: SIGTERM, wait up to the grace period, SIGKILL. Returns its exit status.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        self.stop_with(libc::SIGTERM)
    }

    /// Like [`ChildGuard::stop`], with another first signal (systemd as PID 1 wants SIGRTMIN+3
    /// to halt, and ignores SIGTERM).
    pub fn stop_with(&mut self, first: i32) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        signal(child.id(), first)?;
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "molten-testkit: {} (pid {}) ignored signal {first} for {:?}; sending SIGKILL",
            self.what,
            child.id(),
            self.grace
        );
        signal(child.id(), libc::SIGKILL)?;
        let status = child
            .wait()
            .with_context(|| format!("failed to reap {}", self.what))?;
        Ok(Some(status))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("molten-testkit: failed to stop {}: {err:#}", self.what);
        }
    }
}

/// Makes the kernel SIGKILL the process `cmd` starts when the thread that started it ends, so
/// a test process killed without running destructors leaves no daemon behind.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs `cmd` to completion and returns its stdout; fails with its stderr and exit status.
pub fn run(cmd: &mut Command) -> Result<String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("{cmd:?} printed non-UTF-8"))
}

/// The last `max` bytes of a log file, for error messages (lossy UTF-8).
pub fn log_tail(path: &std::path::Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_the_value_or_times_out() {
        let mut n = 0;
        let v = wait_until(
            "n",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                Ok((n == 3).then_some(n))
            },
        )
        .unwrap();
        assert_eq!(v, 3);
        let err = wait_until::<()>(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || Ok(None),
        )
        .unwrap_err();
        assert!(err.to_string().contains("waiting for never"), "{err}");
    }

    #[test]
    fn guard_stops_a_child_that_ignores_nothing() {
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut guard = ChildGuard::new("sleep", child);
        assert_eq!(guard.pid(), pid);
        guard.ensure_running().unwrap();
        let status = guard.stop().unwrap().unwrap();
        assert!(!status.success());
        assert_eq!(guard.pid(), 0);
    }

    #[test]
    fn free_ports_are_bindable() {
        // Right after free_port's probe socket closes, a child another test thread is spawning
        // can still hold a copy of it until its exec (the fork window): callers retry, as here.
        let port = free_port().unwrap();
        let bound = wait_until(
            "the port to bind",
            Duration::from_secs(2),
            Duration::from_millis(10),
            || Ok(TcpListener::bind(("127.0.0.1", port)).ok()),
        );
        assert!(bound.is_ok(), "port {port}: {bound:?}");
    }
}
