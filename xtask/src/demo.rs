//! `cargo xtask demo`: run what exists of a Trellis home with embedded defaults.
use anyhow::Result;

use crate::cargo;

pub fn run(_args: &[String]) -> Result<()> {
    crate::run(cargo().args(["build", "--workspace"]))?;
    println!(
        "demo: the controller and agent are built; the demo home arrives with the controller issue"
    );
    Ok(())
}
