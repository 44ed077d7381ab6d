//! The first-run setup token: a random string in `<data-dir>/setup-token` (0600) that
//! setting the first password needs, so only someone with a root shell on the router can
//! take it over; checked without an early exit.

use std::path::{Path, PathBuf};

use super::{random_string, sha256};

pub const SETUP_TOKEN_FILE: &str = "setup-token";

pub fn setup_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SETUP_TOKEN_FILE)
}

pub(super) fn valid_token(t: &str) -> bool {
    t.len() == 20 && t.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The first-run token, creating it (0600) if it is missing or damaged. Kept across restarts
/// so a token someone already copied stays good until the password is set.
pub fn ensure_setup_token(data_dir: &Path) -> std::io::Result<String> {
    let path = setup_token_path(data_dir);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if valid_token(&t) {
            return Ok(t);
        }
    }
    let token = random_string(20);
    trellis_io::files::replace(
        &path,
        format!("{token}\n").as_bytes(),
        0o600,
        trellis_io::files::Medium::Flash,
    )?;
    Ok(token)
}

/// Once the password is set, the token has done its job.
pub fn remove_setup_token(data_dir: &Path) {
    let _ = std::fs::remove_file(setup_token_path(data_dir));
}

/// Compare a typed token with the real one without an early exit on the first wrong
/// character (digests of both are compared).
pub fn token_matches(real: &str, typed: &str) -> bool {
    sha256(real.trim().as_bytes()) == sha256(typed.trim().as_bytes())
}
