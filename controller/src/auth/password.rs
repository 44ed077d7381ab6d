//! The admin password: the rule for a new one ([`check_new_password`]) and its argon2id
//! hash: making a record with a fresh salt and checking a password against one. The `_in`
//! variants run in memory the caller lends, which is how the [`Hasher`](super::Hasher) reuses
//! one buffer for every run.

use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::error::{HomeError, Kind};
use crate::store::PasswordRecord;

/// argon2id with 12 MiB and 3 passes: one of OWASP's recommended settings, and the one
/// with the least memory, which a 128 MB router can spare for the moment of a login.
pub const ALGORITHM: &str = "argon2id-m12288-p1";
const MEMORY_KIB: u32 = 12 * 1024;
/// Stored in the record's `iterations` column.
pub const ITERATIONS: u32 = 3;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
pub const MIN_PASSWORD: usize = 8;
/// Bounds the input of one hash run on attacker-chosen input.
pub const MAX_PASSWORD: usize = 128;

/// Check the password's shape, with a message a person can act on.
pub fn check_new_password(password: &str) -> Result<(), HomeError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(HomeError::new(
            Kind::BadRequest,
            format!("the password is too short: use at least {MIN_PASSWORD} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(HomeError::new(
            Kind::BadRequest,
            format!("the password is too long: use at most {MAX_PASSWORD} bytes"),
        ));
    }
    Ok(())
}

fn argon2id(passes: u32) -> Option<Argon2<'static>> {
    let params = Params::new(MEMORY_KIB, passes, 1, Some(HASH_LEN)).ok()?;
    Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The argon2id memory of one run ([`MEMORY_KIB`] blocks of 1 KiB), to be reused.
pub(super) fn new_memory() -> Vec<Block> {
    vec![Block::default(); MEMORY_KIB as usize]
}

fn derive(password: &str, salt: &[u8], passes: u32, memory: &mut [Block]) -> Option<Vec<u8>> {
    let mut hash = vec![0u8; HASH_LEN];
    argon2id(passes)?
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut hash, memory)
        .ok()?;
    Some(hash)
}

/// Hash a new password with a fresh salt (in fresh memory: the web page goes through
/// [`Hasher`](super::Hasher)).
pub fn hash_password(password: &str, now: u64) -> PasswordRecord {
    hash_password_in(password, now, &mut new_memory())
}

pub(super) fn hash_password_in(password: &str, now: u64, memory: &mut [Block]) -> PasswordRecord {
    let salt: [u8; SALT_LEN] = rand::random();
    // The parameters are constants known to be valid, the salt is 16 bytes and the memory
    // has MEMORY_KIB blocks.
    let hash = derive(password, &salt, ITERATIONS, memory)
        .unwrap_or_else(|| unreachable!("valid argon2id parameters"));
    PasswordRecord {
        algorithm: ALGORITHM.into(),
        iterations: ITERATIONS,
        salt: salt.to_vec(),
        hash,
        set_at: now,
    }
}

/// Check a password against its record, comparing in constant time (in fresh memory: the
/// web page goes through [`Hasher`](super::Hasher)).
pub fn verify_password(rec: &PasswordRecord, password: &str) -> bool {
    verify_password_in(rec, password, &mut new_memory())
}

pub(super) fn verify_password_in(
    rec: &PasswordRecord,
    password: &str,
    memory: &mut [Block],
) -> bool {
    if rec.algorithm != ALGORITHM
        || password.len() > MAX_PASSWORD
        || rec.iterations == 0
        || rec.iterations > 16
    {
        return false;
    }
    let Some(hash) = derive(password, &rec.salt, rec.iterations, memory) else {
        return false;
    };
    hash.len() == rec.hash.len()
        && hash
            .iter()
            .zip(&rec.hash)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
