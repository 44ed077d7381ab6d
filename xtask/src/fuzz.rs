//! `cargo xtask fuzz`: builds the project's cargo-fuzz crates and runs each libFuzzer target
//! for a while from its committed seed corpus. Owns the list of fuzz crates, where their
//! build, working corpora, logs and crashes go (all under `target/fuzz/`, never in git), and
//! how a run's outcome is read from libFuzzer's output. FUZZING.md says how to use it.
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{root, setup};

/// A cargo-fuzz crate: its own `[workspace]`, so the main workspace never builds it.
struct FuzzCrate {
    /// How targets are named on the command line and in results: `agent/dns_query`.
    short: &'static str,
    /// Its directory, from the workspace root.
    dir: &'static str,
}

const CRATES: &[FuzzCrate] = &[
    FuzzCrate {
        short: "agent",
        dir: "node-agent/fuzz",
    },
    FuzzCrate {
        short: "proto",
        dir: "proto/fuzz",
    },
    FuzzCrate {
        short: "controller",
        dir: "controller/fuzz",
    },
    FuzzCrate {
        short: "xtask",
        dir: "xtask/fuzz",
    },
];

/// Seconds per target when none are given: a run worth reading, not a campaign.
const DEFAULT_SECONDS: u64 = 60;
/// Seconds per target for CI's smoke run.
const SMOKE_SECONDS: u64 = 5;
/// One input taking this long is a hang in a parser; libFuzzer's own default (1200 s) would
/// hold a CI run for 20 minutes.
const UNIT_TIMEOUT_SECS: u64 = 10;

/// How the targets are compiled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Build {
    /// cargo-fuzz's default: optimised with debug assertions (overflow checks), one codegen
    /// unit, AddressSanitizer.
    Full,
    /// CI's smoke: the same coverage-guided, assertion-checked build without AddressSanitizer
    /// and with 16 codegen units. The targets are safe Rust, so ASan finds little a panic
    /// would not; both cuts make the cold build cheaper (figures in FUZZING.md).
    Smoke,
}

impl Build {
    fn name(self) -> &'static str {
        match self {
            Build::Full => "full",
            Build::Smoke => "smoke",
        }
    }

    fn cargo_fuzz_args(self) -> &'static [&'static str] {
        match self {
            Build::Full => &[],
            Build::Smoke => &["--sanitizer", "none", "--codegen-units", "16"],
        }
    }

    /// Each build kind has its own target dir, shared by all four crates so the dependencies
    /// they agree on are compiled once; smoke and full never invalidate each other.
    fn target_dir(self) -> PathBuf {
        root().join("target/fuzz").join(self.name())
    }
}

/// One libFuzzer target: `fuzz_targets/<name>.rs` in a fuzz crate.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    krate: &'static str,
    dir: &'static str,
    name: String,
}

impl Target {
    fn id(&self) -> String {
        format!("{}/{}", self.krate, self.name)
    }
}

const USAGE: &str =
    "usage: cargo xtask fuzz [--smoke] [--seconds N] [--build-only] [--list] [TARGET…]
  TARGET is crate/target (agent/dns_query) or a target's name; default: every target
  --smoke       CI's run: 5 s per target, built without AddressSanitizer
  --seconds N   run each target N seconds (default 60)
  --build-only  build, run nothing";

struct Options {
    build: Build,
    seconds: u64,
    build_only: bool,
    list: bool,
    wanted: Vec<String>,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        build: Build::Full,
        seconds: 0,
        build_only: false,
        list: false,
        wanted: Vec::new(),
    };
    let mut seconds = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => o.build = Build::Smoke,
            "--build-only" => o.build_only = true,
            "--list" => o.list = true,
            "--seconds" => {
                let v = it.next().context("--seconds needs a number")?;
                let n: u64 = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--seconds {v:?}: give a whole number above 0"))?;
                seconds = Some(n);
            }
            "-h" | "--help" => bail!("{USAGE}"),
            s if s.starts_with('-') => bail!("unknown option {s:?}\n{USAGE}"),
            s => o.wanted.push(s.to_owned()),
        }
    }
    o.seconds = seconds.unwrap_or(match o.build {
        Build::Full => DEFAULT_SECONDS,
        Build::Smoke => SMOKE_SECONDS,
    });
    Ok(o)
}

pub fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let all = targets()?;
    if o.list {
        for t in &all {
            println!("{}", t.id());
        }
        return Ok(());
    }
    let chosen = choose(&all, &o.wanted)?;
    setup::ensure_fuzz_tools()?;
    let target_dir = o.build.target_dir();
    let host = host_triple()?;
    let t0 = Instant::now();
    for c in CRATES
        .iter()
        .filter(|c| chosen.iter().any(|t| t.dir == c.dir))
    {
        let t = Instant::now();
        let mut cmd = cargo_fuzz(c.dir);
        cmd.arg("build")
            .args(o.build.cargo_fuzz_args())
            .arg("--target-dir")
            .arg(&target_dir);
        crate::run(&mut cmd)?;
        println!("built {} in {}s", c.dir, t.elapsed().as_secs());
    }
    println!(
        "fuzz build: {}s ({} build, {})",
        t0.elapsed().as_secs(),
        o.build.name(),
        rel(&target_dir)
    );
    if o.build_only {
        return Ok(());
    }
    let bin_dir = target_dir.join(&host).join("release");
    let mut failed = 0;
    for t in &chosen {
        let outcome = fuzz_one(t, &bin_dir.join(&t.name), o.seconds)?;
        match &outcome {
            Outcome::Clean { runs } => {
                println!("fuzz {}: {runs} runs in {}s, no crash", t.id(), o.seconds)
            }
            Outcome::Crashed { input, log, why } => {
                failed += 1;
                let input = rel(input);
                println!("FAIL fuzz {}: crashed ({why}); input {input}", t.id());
                println!("    reproduce: {}", reproduce(t, o.build, &input));
                println!("    its log: {}", rel(log));
            }
        }
    }
    println!("fuzz: {} passed, {failed} failed", chosen.len() - failed);
    if failed > 0 {
        bail!("{failed} fuzz targets crashed; each crash becomes a test (FUZZING.md)");
    }
    Ok(())
}

/// Every target of every fuzz crate, from the crates' `fuzz_targets/` folders (the files
/// cargo-fuzz builds), in a fixed order.
fn targets() -> Result<Vec<Target>> {
    let mut all = Vec::new();
    for c in CRATES {
        let dir = root().join(c.dir).join("fuzz_targets");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".rs").map(str::to_owned)
            })
            .collect();
        names.sort();
        all.extend(names.into_iter().map(|name| Target {
            krate: c.short,
            dir: c.dir,
            name,
        }));
    }
    // All binaries land in one target dir, where a second target of the same name would
    // overwrite the first.
    for (i, t) in all.iter().enumerate() {
        if let Some(o) = all[..i].iter().find(|o| o.name == t.name) {
            bail!(
                "fuzz targets {} and {} share a binary name; rename one (they are built into one target dir)",
                o.id(),
                t.id()
            );
        }
    }
    Ok(all)
}

fn choose(all: &[Target], wanted: &[String]) -> Result<Vec<Target>> {
    if wanted.is_empty() {
        return Ok(all.to_vec());
    }
    let mut chosen = Vec::new();
    for w in wanted {
        let hits: Vec<&Target> = all
            .iter()
            .filter(|t| t.id() == *w || t.name == *w || t.krate == w.as_str())
            .collect();
        if hits.is_empty() {
            let names: Vec<String> = all.iter().map(Target::id).collect();
            bail!(
                "no fuzz target {w:?}; give a crate ({}) or one of: {}",
                CRATES
                    .iter()
                    .map(|c| c.short)
                    .collect::<Vec<_>>()
                    .join(", "),
                names.join(", ")
            );
        }
        for h in hits {
            if !chosen.contains(h) {
                chosen.push(h.clone());
            }
        }
    }
    Ok(chosen)
}

/// `cargo +nightly fuzz …` for one crate. Run from the crate's parent (cargo-fuzz's project
/// dir) through rustup's proxy; the stable toolchain this xtask runs under is cleared.
fn cargo_fuzz(dir: &str) -> Command {
    let crate_dir = root().join(dir);
    let mut cmd = Command::new("cargo");
    cmd.current_dir(crate_dir.parent().unwrap_or(&crate_dir))
        .args(["+nightly", "fuzz"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC");
    crate::without_cargo_run_env(&mut cmd);
    cmd
}

fn host_triple() -> Result<String> {
    let vv = crate::output(
        Command::new("rustc")
            .args(["+nightly", "-vV"])
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC"),
    )?;
    vv.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_owned())
        .context("rustc +nightly -vV printed no host line")
}

/// How one target's run ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    Clean {
        runs: u64,
    },
    Crashed {
        input: PathBuf,
        log: PathBuf,
        why: String,
    },
}

fn fuzz_one(t: &Target, binary: &Path, seconds: u64) -> Result<Outcome> {
    if !binary.is_file() {
        bail!(
            "{} was not built at {}; run `cargo xtask fuzz --build-only`",
            t.id(),
            binary.display()
        );
    }
    let fuzz = root().join("target/fuzz");
    let seeds = root().join(t.dir).join("corpus").join(&t.name);
    // What libFuzzer finds goes to the first corpus folder: this one, outside git.
    let work = fuzz.join("corpus").join(t.krate).join(&t.name);
    let artifacts = fuzz.join("artifacts").join(t.krate).join(&t.name);
    let logs = fuzz.join("logs");
    for d in [&work, &artifacts, &logs] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let log = logs.join(format!("{}-{}.log", t.krate, t.name));
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new(binary);
    cmd.arg(&work);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={UNIT_TIMEOUT_SECS}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", binary.display()))?;
    let lines: Vec<String> = BufReader::new(File::open(&log)?)
        .lines()
        .map_while(|l| l.ok())
        .collect();
    Ok(read_outcome(&lines, status.success(), &log))
}

/// What libFuzzer's output says: the run count, or the saved input and why it stopped.
fn read_outcome(lines: &[String], exited_ok: bool, log: &Path) -> Outcome {
    let input = lines.iter().find_map(|l| {
        l.split_once("Test unit written to ")
            .map(|(_, p)| PathBuf::from(p.trim()))
    });
    if exited_ok && input.is_none() {
        let runs = lines
            .iter()
            .rev()
            .find_map(|l| {
                l.strip_prefix("stat::number_of_executed_units:")
                    .or_else(|| {
                        l.strip_prefix("Done ")
                            .and_then(|r| r.split(" runs").next())
                    })
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0);
        return Outcome::Clean { runs };
    }
    // Rust's panic (`panicked at file:line:col:`, its message on the next line) or
    // libFuzzer's own verdict (timeout, out of memory).
    let panic = lines
        .iter()
        .position(|l| l.contains("panicked at "))
        .map(|i| {
            let at = lines[i]
                .split_once("panicked at ")
                .map_or("", |(_, r)| r.trim());
            let message = lines.get(i + 1).map_or("", |m| m.trim());
            format!("{at} {message}").trim().to_owned()
        });
    let why = panic
        .or_else(|| {
            lines.iter().find_map(|l| {
                l.split_once("ERROR: libFuzzer: ")
                    .map(|(_, r)| r.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "see its log".into());
    Outcome::Crashed {
        input: input.unwrap_or_else(|| log.to_path_buf()),
        log: log.to_path_buf(),
        why,
    }
}

/// The one command that runs a saved input again, with the same build.
fn reproduce(t: &Target, build: Build, input: &str) -> String {
    let project = Path::new(t.dir)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let up = "../".repeat(Path::new(&project).components().count());
    format!(
        "(cd {project} && cargo +nightly fuzz run {}--target-dir {up}{} {} {up}{input})",
        build
            .cargo_fuzz_args()
            .iter()
            .map(|a| format!("{a} "))
            .collect::<String>(),
        rel(&build.target_dir()),
        t.name
    )
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// `cargo xtask test`'s fuzz stage: the smoke run of every target.
pub fn smoke() -> Result<()> {
    run(&["--smoke".to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_clean_run_counts_its_runs() {
        let out = lines(
            "#2\tINITED cov: 40 ft: 41 corp: 3/60b\n\
             Done 183211 runs in 6 second(s)\n\
             stat::number_of_executed_units: 183212\n",
        );
        assert_eq!(
            read_outcome(&out, true, Path::new("l")),
            Outcome::Clean { runs: 183212 }
        );
    }

    #[test]
    fn a_panic_names_its_input_and_message() {
        let out = lines(
            "thread '<unnamed>' panicked at fuzz_targets/dns_query.rs:30:5:\n\
             answer of 3 bytes\n\
             ==12== ERROR: libFuzzer: deadly signal\n\
             artifact_prefix='/r/target/fuzz/artifacts/agent/dns_query/'; \
             Test unit written to /r/target/fuzz/artifacts/agent/dns_query/crash-ab12\n",
        );
        let Outcome::Crashed { input, why, .. } = read_outcome(&out, false, Path::new("l")) else {
            panic!("a crash reads as clean");
        };
        assert_eq!(
            input,
            PathBuf::from("/r/target/fuzz/artifacts/agent/dns_query/crash-ab12")
        );
        assert_eq!(why, "fuzz_targets/dns_query.rs:30:5: answer of 3 bytes");
    }

    #[test]
    fn a_failed_exit_without_an_input_is_still_a_failure() {
        let out = lines("==9== ERROR: libFuzzer: out-of-memory (used: 2100Mb)\n");
        let got = read_outcome(&out, false, Path::new("the.log"));
        assert_eq!(
            got,
            Outcome::Crashed {
                input: PathBuf::from("the.log"),
                log: PathBuf::from("the.log"),
                why: "out-of-memory (used: 2100Mb)".into()
            }
        );
    }

    #[test]
    fn every_target_has_a_seed_corpus_and_a_unique_name() {
        let all = targets().expect("the fuzz crates list");
        assert_eq!(all.len(), 15, "{all:?}");
        for t in &all {
            let seeds = root().join(t.dir).join("corpus").join(&t.name);
            let n = std::fs::read_dir(&seeds).map(|d| d.count()).unwrap_or(0);
            assert!(n >= 2, "{} has {n} seeds in {}", t.id(), seeds.display());
        }
    }

    #[test]
    fn targets_are_chosen_by_crate_name_or_both() {
        let all = targets().expect("the fuzz crates list");
        let ids = |w: &[&str]| -> Vec<String> {
            let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            choose(&all, &w)
                .expect("known names")
                .iter()
                .map(Target::id)
                .collect()
        };
        assert_eq!(ids(&["dns_query"]), vec!["agent/dns_query"]);
        assert_eq!(
            ids(&["proto", "proto/identity_text"]),
            vec!["proto/identity_text", "proto/pairing_messages"]
        );
        let err = choose(&all, &["dns".into()]).unwrap_err().to_string();
        assert!(err.contains("agent/dns_query"), "{err}");
    }

    #[test]
    fn bad_options_say_what_to_give() {
        let err = options(&["--seconds".into(), "0".into()])
            .err()
            .expect("0 s refused")
            .to_string();
        assert!(err.contains("above 0"), "{err}");
        let o = options(&["--smoke".into()]).expect("fine");
        assert_eq!((o.build, o.seconds), (Build::Smoke, SMOKE_SECONDS));
    }

    #[test]
    fn the_reproduce_command_runs_from_the_crates_project() {
        let t = Target {
            krate: "agent",
            dir: "node-agent/fuzz",
            name: "dns_query".into(),
        };
        assert_eq!(
            reproduce(&t, Build::Smoke, "target/fuzz/artifacts/agent/dns_query/crash-1"),
            "(cd node-agent && cargo +nightly fuzz run --sanitizer none --codegen-units 16 \
             --target-dir ../target/fuzz/smoke dns_query ../target/fuzz/artifacts/agent/dns_query/crash-1)"
        );
    }
}
