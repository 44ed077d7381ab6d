//! `cargo xtask test`: everything CI checks, in the order a failure is cheapest to see.
use std::process::Command;

use anyhow::{bail, Result};

use crate::{cargo, cross, setup};

pub fn run_all(quick: bool) -> Result<()> {
    setup::ensure_test_tools()?;
    crate::run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    crate::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Integration tests run the real binaries of other packages (the controller's CLI tests
    // run trellis-agent), which `cargo test` alone does not build.
    crate::run(cargo().args(["build", "--workspace", "--bins"]))?;
    crate::run(cargo().args(["test", "--workspace"]))?;
    // The README's first command, checked the way a newcomer would run it.
    crate::demo::run(&["--once".to_owned()])?;
    if !quick {
        router_binaries()?;
        // The wifi half on a real 802.11s stack: qemu + mac80211_hwsim, ~2 min.
        crate::lab::run(&[])?;
    }
    crate::package::ci_checks(quick)?;
    Ok(())
}

pub fn run(args: &[String]) -> Result<()> {
    let quick = match args {
        [] => false,
        [flag] if flag == "--quick" => true,
        _ => bail!("usage: cargo xtask test [--quick]"),
    };
    run_all(quick)
}

/// Build the aarch64 router binaries (the most common home-router CPU) and prove each is
/// static and starts under qemu-user.
fn router_binaries() -> Result<()> {
    let target = "aarch64-unknown-linux-musl";
    let built = cross::run(&[target.to_owned()])?;
    let row = cross::targets()?
        .into_iter()
        .find(|t| t.rust_target == target)
        .ok_or_else(|| anyhow::anyhow!("{target} missing from cross/targets.tsv"))?;
    let mut failures = 0;
    for b in &built {
        let version = cross::smoke_run(&row, b)?;
        let ok = b.is_static && version.contains(env!("CARGO_PKG_VERSION"));
        println!(
            "router binary {} ({target}): {} / {}",
            b.binary,
            if b.is_static { "static" } else { "NOT STATIC" },
            version.trim()
        );
        if !ok {
            failures += 1;
        }
    }
    let file = crate::output(Command::new("file").arg("-b").arg(&built[0].path))?;
    println!("file: {}", file.trim());
    println!(
        "router binaries: {} passed, {failures} failed",
        built.len() - failures
    );
    if failures > 0 {
        bail!("{failures} router binaries failed the static/--version check");
    }
    Ok(())
}
