//! `cargo xtask test`: everything CI checks, as named stages in the order a failure is
//! cheapest to see.
//!
//! Every stage runs even when an earlier one failed (only a failed setup stops the run: without
//! its tools nothing after it means anything), so one failure never hides the rest. Each stage
//! says when it starts and how long it took; what it printed goes to its own log file under
//! `target/xtask-test/`, and the console gets only what a reader needs: the stage lines, the
//! figures (`GOAL`, `LAB measure`), and for a failed stage the end of its log and the one
//! command that re-runs it (for failed tests, one command per test). The last lines count the
//! tests and the stages, so a reader (or CI) sees the verdict at the bottom.
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, cross, root, setup};

/// What a stage runs: cargo itself, or a part of this xtask run as a child process (so its
/// output, and whatever it starts, goes to the stage's log).
enum Job {
    Cargo(&'static [&'static str]),
    Xtask,
}

struct Stage {
    name: &'static str,
    /// What it checks, for `--list` and the start line.
    what: &'static str,
    job: Job,
    /// Skipped by `--quick`.
    slow: bool,
}

/// The debug binaries the tests and the demo run. One feature set for both: the demo after a
/// test run then builds nothing.
pub const BINS_BUILD: &[&str] = &["build", "--workspace", "--all-features", "--bins"];

const STAGES: &[Stage] = &[
    Stage {
        name: "setup",
        what: "install the Debian packages, zig, cargo-zigbuild and rustup targets the tests use",
        job: Job::Xtask,
        slow: false,
    },
    Stage {
        name: "fmt",
        what: "cargo fmt --check",
        job: Job::Cargo(&["fmt", "--all", "--", "--check"]),
        slow: false,
    },
    Stage {
        name: "clippy",
        what: "cargo clippy, every target, warnings are errors",
        job: Job::Cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
        slow: false,
    },
    // Integration tests run the real binaries of other packages (the controller's CLI tests
    // run trellis-agent), which `cargo test` alone does not build.
    Stage {
        name: "build",
        what: "the debug binaries the tests run",
        job: Job::Cargo(BINS_BUILD),
        slow: false,
    },
    Stage {
        name: "tests",
        what: "every unit and integration test (namespace and browser tests need root)",
        job: Job::Cargo(&["test", "--workspace", "--all-features", "--no-fail-fast"]),
        slow: false,
    },
    // Seconds per target, but a cold nightly build of four fuzz crates (and cargo-fuzz itself
    // on a fresh machine) comes first: see FUZZING.md for the figures.
    Stage {
        name: "fuzz",
        what: "every cargo-fuzz target a few seconds from its seed corpus (nightly, cargo-fuzz)",
        job: Job::Xtask,
        slow: true,
    },
    Stage {
        name: "demo",
        what: "the README's first command: a demo home in namespaces, checked, stopped by kill -9, Ctrl-C and SIGTERM, nothing left",
        job: Job::Xtask,
        slow: false,
    },
    Stage {
        name: "router-binaries",
        what: "static router binaries, each started under qemu-user",
        job: Job::Xtask,
        slow: true,
    },
    Stage {
        name: "lab",
        what: "the 802.11s VM lab: qemu + mac80211_hwsim, a real SAE mesh",
        job: Job::Xtask,
        slow: true,
    },
    Stage {
        name: "packages",
        what: "OpenWrt packages built, read back and checked",
        job: Job::Xtask,
        slow: false,
    },
];

const USAGE: &str = "usage: cargo xtask test [--quick] [--only STAGE[,STAGE…]] [--list]";

pub fn run(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--only" => {
                let list = it.next().context("--only needs stage names")?;
                only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--list" => {
                for s in STAGES {
                    let slow = if s.slow { " (not with --quick)" } else { "" };
                    println!("{:<16} {}{slow}", s.name, s.what);
                }
                return Ok(());
            }
            other => bail!("{USAGE} (unknown {other:?})"),
        }
    }
    if let Some(names) = &only {
        for n in names {
            if !STAGES.iter().any(|s| s.name == n) {
                bail!("no stage {n:?}; `cargo xtask test --list` names them");
            }
        }
    }
    let chosen: Vec<&Stage> = STAGES
        .iter()
        .filter(|s| match &only {
            Some(names) => names.iter().any(|n| n == s.name),
            None => !(quick && s.slow),
        })
        .collect();
    run_stages(&chosen, quick)
}

/// How one stage ended.
struct Ended {
    name: &'static str,
    ok: bool,
    took: Duration,
    log: PathBuf,
    /// Commands that re-run what failed.
    rerun: Vec<String>,
}

fn run_stages(stages: &[&Stage], quick: bool) -> Result<()> {
    setup::ensure_disk_space(setup::TEST_RUN_NEEDS_GIB)?;
    let logs = root().join("target/xtask-test");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    // The stages run this very xtask as children, from a copy: the build and demo stages
    // rebuild `target/debug/xtask` (with the whole workspace's features), which would
    // leave this process's own file deleted under it.
    let me = logs.join("xtask");
    std::fs::copy(
        std::env::current_exe().context("finding xtask itself")?,
        &me,
    )
    .with_context(|| format!("copying xtask to {}", me.display()))?;
    let started = Instant::now();
    let total = stages.len();
    println!(
        "cargo xtask test: {total} stages; each stage's output goes to {}/",
        rel(&logs)
    );
    let mut ended: Vec<Ended> = Vec::new();
    let mut tests = TestCount::default();
    for (i, stage) in stages.iter().enumerate() {
        let tag = format!("[{}/{total}]", i + 1);
        let log = logs.join(format!("{:02}-{}.log", i + 1, stage.name));
        println!("{tag} {} … ({})", stage.name, stage.what);
        let t0 = Instant::now();
        let result = run_stage(stage, quick, &log, &me);
        let took = t0.elapsed();
        // Tools installed by the setup stage (pip's scripts directory) for the later stages.
        setup::add_python_scripts_to_path();
        let scan = Scan::of(&log);
        let ok = result.is_ok();
        let mut line = format!(
            "{tag} {} {} {}",
            stage.name,
            if ok { "ok" } else { "FAILED" },
            clock(took)
        );
        if let Some((p, f)) = scan.passed_failed {
            line.push_str(&format!(" ({p} passed, {f} failed)"));
        }
        println!("{line}");
        for h in &scan.highlights {
            println!("    {h}");
        }
        if stage.name == "tests" {
            tests = scan.tests.clone();
        }
        let mut rerun = Vec::new();
        if let Err(e) = &result {
            println!("    {e:#}");
            println!("    --- the end of {} ---", rel(&log));
            for l in tail(&log, 40) {
                println!("    | {l}");
            }
            rerun = scan.rerun.clone();
            rerun.push(format!("cargo xtask test --only {}", stage.name));
        }
        ended.push(Ended {
            name: stage.name,
            ok,
            took,
            log,
            rerun,
        });
        if !ok && stage.name == "setup" {
            println!("setup failed: the later stages need its tools; stopping here");
            break;
        }
    }
    let failed: Vec<&Ended> = ended.iter().filter(|e| !e.ok).collect();
    println!();
    println!("cargo xtask test: {} in all", clock(started.elapsed()));
    for e in &ended {
        println!(
            "  {:<16} {:<7} {:>7}",
            e.name,
            if e.ok { "ok" } else { "FAILED" },
            clock(e.took)
        );
    }
    for e in &failed {
        println!("{} failed; its log: {}; to re-run:", e.name, rel(&e.log));
        for r in &e.rerun {
            println!("    {r}");
        }
    }
    if tests.passed + tests.failed > 0 {
        println!(
            // libtest's "ignored" are skipped tests; this is the closing line CI readers know.
            "tests: {} passed, {} failed, {} skipped",
            tests.passed, tests.failed, tests.ignored
        );
    }
    println!(
        "stages: {} passed, {} failed",
        ended.len() - failed.len(),
        failed.len() + (stages.len() - ended.len())
    );
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|e| e.name).collect();
        bail!("failed: {}", names.join(", "));
    }
    Ok(())
}

fn run_stage(stage: &Stage, quick: bool, log: &Path, xtask: &Path) -> Result<()> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = match stage.job {
        Job::Cargo(args) => {
            let mut c = cargo();
            c.args(args);
            c
        }
        Job::Xtask => {
            let mut c = Command::new(xtask);
            c.current_dir(root()).args(["test-stage", stage.name]);
            if quick {
                c.arg("--quick");
            }
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("CARGO_TERM_COLOR", "never");
    crate::run_quiet(&mut cmd)
}

/// `cargo xtask test-stage NAME [--quick]` (hidden): one of this xtask's own stages, run by
/// `run_stages` as a child whose output is the stage's log.
pub fn stage(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let name = args.first().map(String::as_str).unwrap_or("");
    match in_process(name) {
        Some(job) => job(quick),
        None => bail!("no xtask stage {name:?}"),
    }
}

/// The stages this xtask runs itself, by name (`quick` given to each).
fn in_process(name: &str) -> Option<fn(bool) -> Result<()>> {
    Some(match name {
        "setup" => |_| setup::ensure_test_tools(),
        // The README's first command, checked the way a newcomer would run it.
        "demo" => |_| crate::demo::stops::stage(),
        "fuzz" => |_| crate::fuzz::smoke(),
        "router-binaries" => |_| router_binaries(),
        // The wifi half on a real 802.11s stack: qemu + mac80211_hwsim, ~3 min.
        "lab" => |_| crate::lab::run(&[]),
        "packages" => crate::package::ci_checks,
        _ => return None,
    })
}

/// Tests counted from libtest's `test result:` lines.
#[derive(Debug, Default, Clone, PartialEq)]
struct TestCount {
    passed: u64,
    failed: u64,
    ignored: u64,
}

/// What a stage's log says, for the console.
#[derive(Debug, Default)]
struct Scan {
    /// Figures and failures worth a line of their own.
    highlights: Vec<String>,
    /// The stage's own "N passed, M failed" (its last one), or the tests' sum.
    passed_failed: Option<(u64, u64)>,
    tests: TestCount,
    /// One command per failed test.
    rerun: Vec<String>,
}

impl Scan {
    fn of(log: &Path) -> Scan {
        let Ok(f) = File::open(log) else {
            return Scan::default();
        };
        Scan::lines(BufReader::new(f).lines().map_while(|l| l.ok()))
    }

    fn lines(lines: impl Iterator<Item = String>) -> Scan {
        let mut s = Scan::default();
        // The test binary being run: `Running tests/x.rs (target/debug/deps/x-1a2b)` or
        // `Doc-tests crate`; failed tests are named under it.
        let mut running: Option<String> = None;
        let mut failed_tests: Vec<(Option<String>, String)> = Vec::new();
        let mut failed_targets: Vec<String> = Vec::new();
        let mut in_failed_targets = false;
        for line in lines {
            let t = line.trim();
            if in_failed_targets {
                // cargo --no-fail-fast ends with "error: N targets failed:" and one
                // "`-p pkg --test name`" per line.
                if let Some(target) = t.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
                    failed_targets.push(target.to_owned());
                    continue;
                }
                in_failed_targets = false;
            }
            if let Some(r) = t.strip_prefix("Running ") {
                running = artifact_stem(r);
            } else if let Some(r) = t.strip_prefix("Doc-tests ") {
                running = Some(format!("doc:{}", r.trim()));
            } else if let Some(r) = t.strip_prefix("test result: ") {
                let n = |word: &str| number_before(r, word).unwrap_or(0);
                s.tests.passed += n(" passed");
                s.tests.failed += n(" failed");
                s.tests.ignored += n(" ignored");
            } else if let Some(name) = t.strip_prefix("test ").and_then(|r| {
                r.strip_suffix(" ... FAILED")
                    .or_else(|| r.strip_suffix(" - should panic ... FAILED"))
            }) {
                failed_tests.push((running.clone(), name.to_owned()));
            } else if t.starts_with("error: ") && t.ends_with("failed:") && t.contains("target") {
                in_failed_targets = true;
            } else if t.starts_with("GOAL ")
                || t.starts_with("LAB measure")
                || (t.starts_with("LAB scenario=") && t.contains("result=fail"))
                || t.starts_with("router binary ")
                || t.starts_with("FAIL ")
            {
                s.highlights.push(t.to_owned());
            }
            if let Some(pf) = passed_failed(t) {
                s.passed_failed = Some(pf);
            }
            // The fuzz stage's one line per target (`fuzz agent/dns_query: 81234 runs …`).
            if t.starts_with("fuzz ") && t.contains(": ") {
                s.highlights.push(t.to_owned());
            }
        }
        if s.tests.passed + s.tests.failed > 0 {
            s.passed_failed = Some((s.tests.passed, s.tests.failed));
        }
        for (bin, test) in failed_tests {
            let target = bin.as_deref().and_then(|b| target_for(b, &failed_targets));
            s.rerun.push(match target {
                Some(t) => format!("cargo test {t} -- {test} --exact"),
                None => format!("cargo test --workspace -- {test} --exact"),
            });
        }
        s
    }
}

/// `tests/home_netns.rs (target/debug/deps/home_netns-1a2b3c)` → `home_netns`.
fn artifact_stem(running: &str) -> Option<String> {
    let inside = running.rsplit_once('(')?.1.trim_end_matches(')');
    let file = Path::new(inside).file_name()?.to_str()?;
    Some(
        file.rsplit_once('-')
            .map_or(file, |(stem, _)| stem)
            .to_owned(),
    )
}

/// The `-p pkg --test name` (as cargo printed it) that a failed binary belongs to.
fn target_for(bin: &str, failed_targets: &[String]) -> Option<String> {
    failed_targets
        .iter()
        .find(|t| {
            let words: Vec<&str> = t.split_whitespace().collect();
            let pkg = words
                .iter()
                .position(|w| *w == "-p")
                .and_then(|i| words.get(i + 1))
                .map(|p| p.replace('-', "_"));
            let named = |flag: &str| {
                words
                    .iter()
                    .position(|w| *w == flag)
                    .and_then(|i| words.get(i + 1))
                    .map(|n| n.replace('-', "_"))
            };
            match bin.strip_prefix("doc:") {
                Some(krate) => words.contains(&"--doc") && pkg.as_deref() == Some(krate),
                None => {
                    named("--test").or_else(|| named("--bin")).as_deref() == Some(bin)
                        || (words.contains(&"--lib") && pkg.as_deref() == Some(bin))
                }
            }
        })
        .cloned()
}

/// "… 12 passed; 0 failed" → 12 for " passed".
fn number_before(text: &str, word: &str) -> Option<u64> {
    let at = text.find(word)?;
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// A line that is a stage's own count: "13 passed, 0 failed" or "packages: 14 passed, 0 failed".
fn passed_failed(line: &str) -> Option<(u64, u64)> {
    let body = match line.split_once(": ") {
        Some((word, rest)) if !word.contains(' ') => rest,
        _ => line,
    };
    let (p, f) = body.split_once(" passed, ")?;
    let f = f.strip_suffix(" failed")?;
    Some((p.trim().parse().ok()?, f.trim().parse().ok()?))
}

fn tail(log: &Path, n: usize) -> Vec<String> {
    let Ok(f) = File::open(log) else {
        return Vec::new();
    };
    let all: Vec<String> = BufReader::new(f).lines().map_while(|l| l.ok()).collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

/// "7m05s", "42s".
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A path relative to the workspace root, as a person would type it there.
fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// Build the static router binaries for every CPU of `cross/targets.tsv` and prove each is
/// static and starts (`--version`) under its qemu-user, or natively for x86_64: aarch64 as
/// it ships, the others with the `router-smoke` profile. One `target/cross` holds every
/// build, so the packages stage after this reuses aarch64's.
fn router_binaries() -> Result<()> {
    let rows = cross::targets()?;
    crate::setup::ensure_programs(
        &rows
            .iter()
            .map(|r| r.runner.as_str())
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>(),
    )?;
    let started = std::time::Instant::now();
    // aarch64 as it ships (the packages stage packs it); the other CPUs with the fast
    // router-smoke profile: release LTO for all five takes 70-90 min on 2 cores.
    let shipped = "aarch64-unknown-linux-musl";
    let mut built = cross::run(&[shipped.to_owned()])?;
    let others: Vec<String> = rows
        .iter()
        .map(|r| r.rust_target.clone())
        .filter(|t| t != shipped)
        .fold(Vec::new(), |mut v, t| {
            if !v.contains(&t) {
                v.push(t);
            }
            v
        });
    built.extend(cross::run_with(&others, cross::Profile::Smoke)?);
    let mut failures = 0;
    for b in &built {
        let Some(row) = rows.iter().find(|t| t.rust_target == b.rust_target) else {
            bail!("{} missing from cross/targets.tsv", b.rust_target);
        };
        let version = cross::smoke_run(row, b).unwrap_or_else(|e| format!("did not start: {e:#}"));
        let ok = b.is_static && version.contains(env!("CARGO_PKG_VERSION"));
        println!(
            "router binary {} ({}): {} / {}",
            b.binary,
            b.rust_target,
            if b.is_static { "static" } else { "NOT STATIC" },
            version.trim()
        );
        if !ok {
            failures += 1;
        }
    }
    println!(
        "router binaries of {} targets built and started in {} s",
        built.len() / cross::BINARIES.len().max(1),
        started.elapsed().as_secs()
    );
    println!(
        "router-binaries: {} passed, {failures} failed",
        built.len() - failures
    );
    if failures > 0 {
        bail!("{failures} router binaries failed the static/--version check");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Scan {
        Scan::lines(text.lines().map(str::to_owned))
    }

    #[test]
    fn failed_tests_get_one_rerun_command_each() {
        let log = "\
     Running unittests src/lib.rs (target/debug/deps/trellis_agent-0f1e2d)
test proxy::tests::fine ... ok
test proxy::tests::broken ... FAILED
test result: FAILED. 40 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out
     Running tests/home_netns.rs (target/debug/deps/home_netns-9a8b7c)
test a_home_of_three ... FAILED
test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out
   Doc-tests trellis_proto
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out
error: 2 targets failed:
    `-p trellis-agent --lib`
    `-p trellis-agent --test home_netns`
";
        let s = scan(log);
        assert_eq!(
            s.rerun,
            vec![
                "cargo test -p trellis-agent --lib -- proxy::tests::broken --exact",
                "cargo test -p trellis-agent --test home_netns -- a_home_of_three --exact",
            ]
        );
        assert_eq!(
            s.tests,
            TestCount {
                passed: 43,
                failed: 2,
                ignored: 2
            }
        );
        assert_eq!(s.passed_failed, Some((43, 2)));
    }

    #[test]
    fn figures_and_counts_are_picked_out_of_a_stage_log() {
        let s = scan(
            "+ cargo build\nLAB-LOG {\"x\":1}\nLAB scenario=line result=pass\n\
             LAB measure name=reroute_s value=1.1\nGOAL size 3.2MB <=3.5MB MET\n\
             13 passed, 0 failed\nTRELLIS LAB: PASS\n",
        );
        assert_eq!(
            s.highlights,
            vec![
                "LAB measure name=reroute_s value=1.1",
                "GOAL size 3.2MB <=3.5MB MET"
            ]
        );
        assert_eq!(s.passed_failed, Some((13, 0)));
        assert_eq!(
            passed_failed("packages: 14 passed, 1 failed"),
            Some((14, 1))
        );
        assert_eq!(passed_failed("it passed, we failed"), None);
    }

    #[test]
    fn a_failed_test_outside_cargos_list_still_gets_a_command() {
        let s = scan("test weird ... FAILED\n");
        assert_eq!(s.rerun, vec!["cargo test --workspace -- weird --exact"]);
    }

    #[test]
    fn clocks_read_like_a_stopwatch() {
        assert_eq!(clock(Duration::from_secs(425)), "7m05s");
        assert_eq!(clock(Duration::from_secs(42)), "42s");
    }

    #[test]
    fn the_fuzz_stage_shows_one_line_per_target_and_its_count() {
        let s = scan(
            "+ cargo +nightly fuzz build\nbuilt node-agent/fuzz in 80s\nfuzz build: 312s (smoke build, target/fuzz/smoke)\n\
             fuzz agent/dns_query: 81234 runs in 5s, no crash\n\
             FAIL fuzz proto/identity_text: crashed (x.rs:3:5:); input t/crash-1\n\
             fuzz: 1 passed, 1 failed\n",
        );
        assert_eq!(
            s.highlights,
            vec![
                "fuzz build: 312s (smoke build, target/fuzz/smoke)",
                "fuzz agent/dns_query: 81234 runs in 5s, no crash",
                "FAIL fuzz proto/identity_text: crashed (x.rs:3:5:); input t/crash-1",
            ]
        );
        assert_eq!(s.passed_failed, Some((1, 1)));
    }

    #[test]
    fn every_stage_run_in_process_is_known_to_the_child() {
        for s in STAGES.iter().filter(|s| matches!(s.job, Job::Xtask)) {
            assert!(in_process(s.name).is_some(), "{}", s.name);
        }
        assert!(in_process("nonsense").is_none());
    }
}
