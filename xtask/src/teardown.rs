//! What a namespace home made (`demo`, `bench`), and taking it all down again: on a normal
//! end, on Ctrl-C or SIGTERM, and — for a run that was killed — at the start of the next one.
//!
//! Everything a command starts or creates is recorded here as it happens: processes by PID,
//! namespaces (with their `/etc/netns` directories) and host links. [`teardown`] kills and removes all of it
//! and says what it removed; it is idempotent and serialised, so the signal thread and the
//! main thread's drop guard can both call it. A process started with [`die_with_parent`]
//! also dies by itself if xtask is killed with SIGKILL (`PR_SET_PDEATHSIG`), and [`sweep`]
//! removes what such a run left behind, by name prefix, before a new run builds anything.
use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::netns::del_quietly;

#[derive(Default)]
struct Made {
    pids: Vec<u32>,
    namespaces: Vec<String>,
    links: Vec<String>,
}

static MADE: Mutex<Made> = Mutex::new(Made {
    pids: Vec::new(),
    namespaces: Vec::new(),
    links: Vec::new(),
});
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn made() -> std::sync::MutexGuard<'static, Made> {
    MADE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process this run started: killed at teardown.
pub fn track(pid: u32) {
    made().pids.push(pid);
}

/// It ended and was reaped: forget it (its PID may be reused).
pub fn untrack(pid: u32) {
    made().pids.retain(|p| *p != pid);
}

/// A namespace this run created: every process in it is killed, then it is deleted, with
/// its `/etc/netns/<name>` directory.
pub fn namespace(name: &str) {
    made().namespaces.push(name.to_owned());
}

/// A link in the host's namespace this run created.
pub fn link(name: &str) {
    made().links.push(name.to_owned());
}

/// Whether Ctrl-C or SIGTERM arrived: loops that wait give up at once.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The child gets SIGKILL when xtask dies, however it dies. `ip netns exec` and `taskset`
/// exec the program, so the setting reaches it.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// What a teardown or a sweep removed, for the one line that says so.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub processes: usize,
    pub namespaces: usize,
    pub links: Vec<String>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.processes == 0 && self.namespaces == 0 && self.links.is_empty()
    }
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = vec![
            format!("stopped {}", plural(self.processes, "process", "processes")),
            format!(
                "removed {}",
                plural(self.namespaces, "namespace", "namespaces")
            ),
        ];
        for l in &self.links {
            parts.push(format!("the {l} link"));
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// Tears everything down when dropped — however the command ends — and says what it
/// removed, prefixed with the command's name.
pub struct Guard(pub &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        let removed = teardown();
        if !removed.is_empty() {
            println!("{}: {removed}", self.0);
        }
    }
}

static TEARING_DOWN: Mutex<()> = Mutex::new(());

/// Kill and remove everything recorded so far. Idempotent; concurrent calls wait for the
/// first to finish, so when any call returns, nothing is left.
pub fn teardown() -> Removed {
    let _one_at_a_time = TEARING_DOWN.lock().unwrap_or_else(|e| e.into_inner());
    let made = std::mem::take(&mut *made());
    let mut removed = Removed::default();
    for &pid in &made.pids {
        if kill(pid) {
            removed.processes += 1;
        }
    }
    for &pid in &made.pids {
        // SAFETY: reaps a child this process spawned (ECHILD if someone else already did).
        unsafe {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
    }
    for ns in &made.namespaces {
        // Grandchildren too (a `nft` an agent ran, a server a test started in there).
        removed.processes += kill_all_in(ns);
        if remove_namespace(ns) {
            removed.namespaces += 1;
        }
    }
    for l in &made.links {
        if remove_link(l) {
            removed.links.push(l.clone());
        }
    }
    removed
}

/// Remove what a killed run left behind: processes in, and namespaces named, `prefix*`, their
/// `/etc/netns` directories, and the given host links.
pub fn sweep(prefix: &str, links: &[&str]) -> Removed {
    let mut removed = Removed::default();
    let names = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for ns in &names {
        removed.processes += kill_all_in(ns);
    }
    for ns in &names {
        if remove_namespace(ns) {
            removed.namespaces += 1;
        }
    }
    if let Ok(d) = std::fs::read_dir("/etc/netns") {
        for e in d.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    for l in links {
        if remove_link(l) {
            removed.links.push((*l).to_owned());
        }
    }
    removed
}

/// On Ctrl-C, SIGTERM or SIGHUP: tear down, say what was removed, exit 130 (143 for SIGTERM).
/// `what` names the command in that line.
pub fn install_signal_handler(what: &'static str) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            let (name, code) = tokio::select! {
                _ = int.recv() => ("Ctrl-C", 130),
                _ = term.recv() => ("SIGTERM", 143),
                _ = hup.recv() => ("SIGHUP", 129),
            };
            INTERRUPTED.store(true, Ordering::SeqCst);
            eprintln!("\n{what}: {name}: stopping");
            let removed = teardown();
            eprintln!("{what}: {removed}; nothing of it is left running");
            std::process::exit(code);
        });
    });
}

/// SIGKILL; whether the process was there.
fn kill(pid: u32) -> bool {
    // SAFETY: a plain syscall on a PID this run recorded.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) == 0 }
}

/// Kill every process in namespace `ns` until none is left (a dying parent may have forked).
fn kill_all_in(ns: &str) -> usize {
    let mut killed = 0;
    for _ in 0..20 {
        let pids = crate::output(
            Command::new("ip")
                .args(["netns", "pids", ns])
                .stderr(Stdio::null()),
        )
        .unwrap_or_default();
        let pids: Vec<u32> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p != std::process::id())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            if kill(pid) {
                killed += 1;
            }
        }
        // Our own children among them are reaped by the caller; others by init.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    killed
}

fn remove_namespace(ns: &str) -> bool {
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
    let existed = Path::new("/run/netns").join(ns).exists();
    del_quietly(ns);
    existed && !Path::new("/run/netns").join(ns).exists()
}

fn remove_link(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "del", name])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
