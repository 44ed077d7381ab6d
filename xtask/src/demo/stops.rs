//! The demo stage's checks of how the demo *ends*, run as a person would end it: Ctrl-C in
//! the terminal (SIGINT to the foreground process group), `kill` (SIGTERM to xtask alone),
//! and `kill -9`, after which the next demo must clear what was left. Each ends with nothing
//! of the demo left: no process, no `tl-*` namespace, no `tl-host` link, no `/etc/netns/tl-*`.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{HOST_LINK, PREFIX};

/// How long a demo may take to come up on a busy 2-core machine (its build is done by then).
const UP_WITHIN: Duration = Duration::from_secs(300);
const DOWN_WITHIN: Duration = Duration::from_secs(60);

/// The demo stage: `demo --once` after a killed demo (which it must sweep up), then a demo
/// stopped by Ctrl-C and one stopped by SIGTERM. Prints one line per check and the count.
pub fn stage() -> Result<()> {
    let checks: [(&str, Check); 3] = [
        (
            "kill -9, then demo --once clears the leftovers and passes",
            killed_then_once,
        ),
        ("Ctrl-C stops the demo and removes everything", |x| {
            stopped_by(x, Stop::CtrlC)
        }),
        ("SIGTERM stops the demo and removes everything", |x| {
            stopped_by(x, Stop::Term)
        }),
    ];
    let xtask = std::env::current_exe().context("finding this xtask")?;
    if !crate::netns::is_root() {
        println!("not root: the demo runs on loopback; its stop checks need namespaces (root)");
        return super::run(&["--once".to_owned()]);
    }
    let (mut passed, mut failed) = (0, 0);
    for (what, check) in checks {
        match check(&xtask) {
            Ok(()) => {
                passed += 1;
                println!("ok   {what}");
            }
            Err(e) => {
                failed += 1;
                println!("FAIL demo: {what}: {e:#}");
            }
        }
    }
    println!("demo checks: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} of the demo's checks failed");
    }
    Ok(())
}

/// One way of ending a demo, given this xtask's path.
type Check = fn(&Path) -> Result<()>;

#[derive(Clone, Copy)]
enum Stop {
    CtrlC,
    Term,
}

/// A demo started as from a terminal: its own process group, output read line by line.
struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(xtask: &Path, args: &[&str]) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(xtask)
            .arg("demo")
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting xtask demo")?;
        let (tx, lines) = mpsc::channel();
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Demo {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Read output until a line contains `text`; an error (with the output) if the demo ends
    /// first or takes longer than `within`.
    fn wait_for_line(&mut self, text: &str, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no {text:?} within {within:?}; it printed:\n{}",
                        self.output()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("it ended before printing {text:?}:\n{}", self.output())
                }
            }
        }
    }

    /// Wait for the demo to exit (bounded); its exit code, all output read.
    fn wait_exit(&mut self) -> Result<Option<i32>> {
        let deadline = Instant::now() + DOWN_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "still running {DOWN_WITHIN:?} after it was told to stop:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, sig: libc::c_int, group: bool) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscalls on our own child (or its process group, which it leads).
        unsafe {
            libc::kill(if group { -pid } else { pid }, sig);
        }
    }

    fn output(&self) -> String {
        let n = self.seen.len();
        self.seen[n.saturating_sub(40)..].join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything that runs inside the demo's namespaces now.
fn demo_processes() -> Vec<(u32, String)> {
    namespaces()
        .iter()
        .flat_map(|ns| {
            crate::output(Command::new("ip").args(["netns", "pids", ns]))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .map(|pid| (pid, start_time(pid).unwrap_or_default()))
        .collect()
}

/// A process's start time (field 22 of /proc/PID/stat): tells a PID reused since apart.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Not a zombie waiting to be reaped by init: that one is gone for every purpose.
    (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| s.to_string()))?
}

fn namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(PREFIX))
                .collect()
        })
        .unwrap_or_default()
}

/// What of a demo is still here; empty when nothing is.
fn leftovers(processes: &[(u32, String)]) -> Vec<String> {
    let mut left: Vec<String> = namespaces()
        .into_iter()
        .map(|n| format!("namespace {n}"))
        .collect();
    for (pid, started) in processes {
        if start_time(*pid).as_ref() == Some(started) {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            left.push(format!("process {pid} ({})", exe.display()));
        }
    }
    if Path::new("/sys/class/net").join(HOST_LINK).exists() {
        left.push(format!("link {HOST_LINK}"));
    }
    let etc: Vec<PathBuf> = std::fs::read_dir("/etc/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(PREFIX))
                })
                .collect()
        })
        .unwrap_or_default();
    left.extend(etc.iter().map(|p| format!("directory {}", p.display())));
    left
}

fn nothing_left(processes: &[(u32, String)]) -> Result<()> {
    let left = leftovers(processes);
    if !left.is_empty() {
        bail!("left behind: {}", left.join(", "));
    }
    Ok(())
}

fn stopped_by(xtask: &Path, stop: Stop) -> Result<()> {
    let mut demo = Demo::start(xtask, &[])?;
    demo.wait_for_line("runs until Ctrl-C", UP_WITHIN)?;
    let running = demo_processes();
    if running.is_empty() {
        bail!("the demo said it runs, but nothing runs in its namespaces");
    }
    let expected = match stop {
        // A terminal's Ctrl-C goes to the whole foreground process group.
        Stop::CtrlC => {
            demo.signal(libc::SIGINT, true);
            130
        }
        // `kill PID` reaches xtask alone.
        Stop::Term => {
            demo.signal(libc::SIGTERM, false);
            143
        }
    };
    let code = demo.wait_exit()?;
    nothing_left(&running)?;
    if code != Some(expected) {
        bail!(
            "it exited with {code:?}, not {expected}:\n{}",
            demo.output()
        );
    }
    if !demo
        .seen
        .iter()
        .any(|l| l.contains("nothing of it is left running"))
    {
        bail!("it did not say what it removed:\n{}", demo.output());
    }
    Ok(())
}

fn killed_then_once(xtask: &Path) -> Result<()> {
    let mut demo = Demo::start(xtask, &[])?;
    demo.wait_for_line("runs until Ctrl-C", UP_WITHIN)?;
    let running = demo_processes();
    demo.signal(libc::SIGKILL, false);
    demo.wait_exit()?;
    // The processes die with xtask (PR_SET_PDEATHSIG); the namespaces stay for the next run.
    if namespaces().is_empty() {
        bail!("no namespace was left by kill -9: this check would prove nothing");
    }
    let mut again = Demo::start(xtask, &["--once"])?;
    let code = again.wait_exit_within(UP_WITHIN)?;
    if code != Some(0) {
        bail!(
            "demo --once after a killed demo failed ({code:?}):\n{}",
            again.output()
        );
    }
    if !again
        .seen
        .iter()
        .any(|l| l.contains("an earlier demo was still there"))
    {
        bail!(
            "demo --once did not say it cleared an earlier demo:\n{}",
            again.output()
        );
    }
    nothing_left(&running)
}

impl Demo {
    fn wait_exit_within(&mut self, within: Duration) -> Result<Option<i32>> {
        let deadline = Instant::now() + within;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!(
                    "demo --once did not finish within {within:?}:\n{}",
                    self.output()
                );
            }
            while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line);
            }
        }
        self.wait_exit()
    }
}
