//! The Trellis agent, run on every router of the home (primary and satellites).
//!
//! It owns the node's side of the control plane:
//! - [`cli`]: the `trellis-agent` command line (`run`, `join`).
pub mod cli;
