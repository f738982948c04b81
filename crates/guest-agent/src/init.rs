//! What being PID 1 takes: mounting the kernel filesystems, reaping every orphan, and powering the
//! machine off on request — from a signal (`poweroff` sends SIGUSR2, `reboot` SIGTERM, the kernel
//! SIGPWR) or from the ACPI power button (QMP `system_powerdown`), read as `KEY_POWER` from the
//! evdev devices the `button` and `evdev` modules create.
//!
//! Signals are blocked in every thread and taken synchronously by one thread (`sigwait`), so there
//! are no signal handlers and no `unsafe`. Reaping with `waitpid(-1)` would steal the exit status of
//! commands the agent waits for itself, so [`Children`] makes the two take turns: waiting callers
//! hold a read lock, the reaper the write lock.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// `PATH` for the commands the agent starts.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Prints one line to the console (the agent's stdout) in a single write.
pub fn console(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// A command with the agent's `PATH` and the signals the agent blocks unblocked again: a child
/// inherits the signal mask of the thread that starts it, and std leaves it as it is, so without
/// this `udhcpc` or a user's script would never see SIGTERM.
pub fn command(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.env("PATH", PATH);
    let set = handled_signals();
    // SAFETY: the hook runs in the forked child before exec; it only calls pthread_sigmask, which
    // is async-signal-safe, and allocates nothing (an error becomes an `io::Error` from errno).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || set.thread_unblock().map_err(std::io::Error::from));
    }
    cmd
}

/// The signals the agent takes with `sigwait`.
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPWR,
    ] {
        set.add(sig);
    }
    set
}

/// Blocks the handled signals in the calling thread; call first thing in `main`, so that every
/// thread started later inherits the mask. Start children with [`command`], which unblocks them.
pub fn block_signals() -> Result<(), Errno> {
    handled_signals().thread_block()
}

/// The agent's child processes: commands it waits for, and the orphans PID 1 inherits.
#[derive(Debug, Default)]
pub struct Children {
    /// Read: a caller is starting or waiting for a child; write: the reaper runs.
    turn: RwLock<()>,
    /// Pids whose exit the agent wants to learn, with their status once reaped.
    watched: Mutex<HashMap<u32, Option<String>>>,
}

impl Children {
    /// Runs `cmd` to completion.
    pub fn run(&self, cmd: &mut Command) -> std::io::Result<ExitStatus> {
        let _turn = self.turn.read().unwrap_or_else(PoisonError::into_inner);
        cmd.status()
    }

    /// Starts `cmd` without waiting for it; the reaper collects it.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<u32> {
        let _turn = self.turn.read().unwrap_or_else(PoisonError::into_inner);
        cmd.spawn().map(|child| child.id())
    }

    /// [`Children::spawn`], remembering the exit status for [`Children::exit_of`].
    pub fn spawn_watched(&self, cmd: &mut Command) -> std::io::Result<u32> {
        let _turn = self.turn.read().unwrap_or_else(PoisonError::into_inner);
        let pid = cmd.spawn()?.id();
        self.watched.lock().unwrap_or_else(PoisonError::into_inner).insert(pid, None);
        Ok(pid)
    }

    /// How a watched child ended, once it has.
    pub fn exit_of(&self, pid: u32) -> Option<String> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner).get(&pid).cloned().flatten()
    }

    /// Reaps every exited child; returns whether any children remain.
    pub fn reap(&self) -> bool {
        let _turn = self.turn.write().unwrap_or_else(PoisonError::into_inner);
        loop {
            let (pid, how) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return true,
                Ok(WaitStatus::Exited(pid, code)) => (pid, format!("exit status {code}")),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, format!("killed by {sig}")),
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(_) => return false, // ECHILD: no children left
            };
            let mut watched = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = u32::try_from(pid.as_raw()).ok().and_then(|p| watched.get_mut(&p)) {
                *slot = Some(how);
            }
        }
    }
}

/// PID 1's duties, shared by the threads that may trigger a power-off.
#[derive(Debug)]
pub struct Init {
    /// The agent's children.
    pub children: Children,
    /// Whether this process is PID 1 (otherwise power-off just exits: tests run it on a host).
    pid1: bool,
    powering_off: AtomicBool,
}

impl Init {
    /// Init state; `pid1` says whether to really power off.
    pub fn new(pid1: bool) -> Arc<Self> {
        Arc::new(Self { children: Children::default(), pid1, powering_off: AtomicBool::new(false) })
    }

    /// Starts the thread taking the signals [`block_signals`] blocked.
    pub fn spawn_signal_thread(self: &Arc<Self>) -> std::io::Result<()> {
        let init = Arc::clone(self);
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let set = handled_signals();
            loop {
                match set.wait() {
                    Ok(Signal::SIGCHLD) => {
                        init.children.reap();
                    }
                    Ok(sig @ (Signal::SIGTERM | Signal::SIGUSR1 | Signal::SIGUSR2 | Signal::SIGPWR)) => {
                        init.power_off(sig.as_str());
                    }
                    Ok(Signal::SIGINT) if !init.pid1 => init.power_off("SIGINT"),
                    // SIGINT (Ctrl-Alt-Del) and SIGHUP mean nothing to this guest.
                    Ok(_) | Err(_) => {}
                }
            }
        })?;
        Ok(())
    }

    /// Stops every process, syncs, remounts the root read-only and powers off. Never returns;
    /// a second caller just waits for the first.
    pub fn power_off(&self, reason: &str) -> ! {
        if self.powering_off.swap(true, Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        console(&format!("ULTRACLOUD-GUEST-POWEROFF reason={reason}"));
        if !self.pid1 {
            std::process::exit(0);
        }
        self.stop_all_processes();
        nix::unistd::sync();
        let ro = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = nix::mount::mount(None::<&str>, "/", None::<&str>, ro, None::<&str>) {
            console(&format!("ULTRACLOUD-GUEST-ERROR poweroff: remounting / read-only: {e}"));
        }
        nix::unistd::sync();
        let err = nix::sys::reboot::reboot(RebootMode::RB_POWER_OFF).unwrap_err();
        console(&format!("ULTRACLOUD-GUEST-ERROR poweroff: reboot(RB_POWER_OFF): {err}"));
        std::process::exit(1)
    }

    /// SIGTERM to every other process, two seconds' grace, then SIGKILL; reaps them all.
    fn stop_all_processes(&self) {
        use nix::sys::signal::kill;
        let all = Pid::from_raw(-1);
        let _ = kill(all, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.children.reap() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = kill(all, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.children.reap() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Watches every `/dev/input/event*` device for a `KEY_POWER` press and powers off on one.
    pub fn watch_power_button(self: &Arc<Self>) -> Vec<String> {
        let mut errors = Vec::new();
        let Ok(dir) = std::fs::read_dir("/dev/input") else {
            return vec!["no /dev/input (modules button and evdev not loaded?)".to_string()];
        };
        let mut watching = 0;
        for entry in dir.filter_map(Result::ok) {
            let path = entry.path();
            if !entry.file_name().to_string_lossy().starts_with("event") {
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(format!("opening {}: {e}", path.display()));
                    continue;
                }
            };
            let init = Arc::clone(self);
            let spawned = std::thread::Builder::new().name("power-button".into()).spawn(move || {
                if watch_events(file) {
                    init.power_off("power-button");
                }
            });
            match spawned {
                Ok(_) => watching += 1,
                Err(e) => errors.push(format!("starting a thread: {e}")),
            }
        }
        if watching == 0 && errors.is_empty() {
            errors.push("no input event devices".to_string());
        }
        errors
    }
}

/// Size of `struct input_event` on x86_64: a 16-byte timeval, u16 type, u16 code, i32 value.
const INPUT_EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;

/// Whether one `struct input_event` is a press of the power key.
pub fn is_power_press(event: &[u8; INPUT_EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Reads input events until the power key is pressed (true) or the device fails (false).
fn watch_events(mut device: impl Read) -> bool {
    let mut event = [0u8; INPUT_EVENT_SIZE];
    loop {
        // evdev returns whole events, so read_exact never splits one.
        match device.read_exact(&mut event) {
            Ok(()) if is_power_press(&event) => return true,
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Mounts `/proc`, `/sys`, `/dev` and `/run` where they are not mounted yet, and makes `/`
/// writable; returns one message per failure.
pub fn mount_basics() -> Vec<String> {
    let mut errors = Vec::new();
    let mut mount = |source: &str, target: &str, fstype: &str, data: Option<&str>| {
        if is_mounted(target) {
            return;
        }
        let _ = std::fs::create_dir_all(target);
        let flags = MsFlags::MS_NOSUID | if fstype == "devtmpfs" { MsFlags::empty() } else { MsFlags::MS_NODEV };
        if let Err(e) = nix::mount::mount(Some(source), target, Some(fstype), flags, data) {
            errors.push(format!("mounting {fstype} on {target}: {e}"));
        }
    };
    mount("proc", "/proc", "proc", None);
    mount("sysfs", "/sys", "sysfs", None);
    mount("devtmpfs", "/dev", "devtmpfs", None);
    mount("tmpfs", "/run", "tmpfs", Some("mode=0755"));
    if let Err(e) = nix::mount::mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REMOUNT, None::<&str>) {
        errors.push(format!("remounting / read-write: {e}"));
    }
    errors
}

/// Whether something is mounted on `target` (`/proc` itself is checked by its contents).
fn is_mounted(target: &str) -> bool {
    if target == "/proc" {
        return Path::new("/proc/self/mountinfo").exists();
    }
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| mount_points(&info).any(|p| p == target))
        .unwrap_or(false)
}

/// The mount points (fifth field) of `/proc/self/mountinfo`.
fn mount_points(mountinfo: &str) -> impl Iterator<Item = &str> {
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> [u8; INPUT_EVENT_SIZE] {
        let mut e = [0u8; INPUT_EVENT_SIZE];
        e[16..18].copy_from_slice(&kind.to_ne_bytes());
        e[18..20].copy_from_slice(&code.to_ne_bytes());
        e[20..24].copy_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn power_key_press_is_recognised() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0))); // release
        assert!(!is_power_press(&event(EV_KEY, 30, 1))); // KEY_A
        assert!(!is_power_press(&event(0, 0, 0))); // EV_SYN
        let stream: Vec<u8> = [event(0, 0, 0), event(EV_KEY, KEY_POWER, 1)].concat();
        assert!(watch_events(stream.as_slice()));
        let stream: Vec<u8> = [event(EV_KEY, 30, 1), event(0, 0, 0)].concat();
        assert!(!watch_events(stream.as_slice()));
    }

    #[test]
    fn parses_mountinfo() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n23 1 0:5 / /dev rw - devtmpfs udev rw\n";
        assert_eq!(mount_points(info).collect::<Vec<_>>(), ["/proc", "/dev"]);
    }

    /// One test, because reaping with `waitpid(-1)` would race with any other test's children.
    #[test]
    fn children_start_unblocked_and_report_exits() {
        block_signals().unwrap();
        let out = command("sh").args(["-c", "grep SigBlk /proc/self/status"]).output().unwrap();
        let line = String::from_utf8(out.stdout).unwrap();
        let mask = u64::from_str_radix(line.trim().trim_start_matches("SigBlk:").trim(), 16).unwrap();
        assert_eq!(mask & (1 << (Signal::SIGTERM as u64 - 1)), 0, "{line}");
        assert_eq!(mask & (1 << (Signal::SIGCHLD as u64 - 1)), 0, "{line}");

        let children = Children::default();
        assert!(children.run(Command::new("true").arg("x")).unwrap().success());
        let pid = children.spawn_watched(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while children.exit_of(pid).is_none() && Instant::now() < deadline {
            children.reap();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(children.exit_of(pid).as_deref(), Some("exit status 3"));
    }
}
