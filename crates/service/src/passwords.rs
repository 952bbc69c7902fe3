//! Passwords: argon2id hashes (bcrypt accepted for data imported from PocketBase), on the blocking
//! pool under a cap of concurrent computations.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::error::{ServiceError, ServiceResult};

pub fn hash_password(pw: &str) -> ServiceResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError(basalt_core::Error::internal(e)))
}

/// Whether `pw` matches `hash`. An empty `hash` (no such record, or one without a password) is
/// verified against [`dummy_hash`] and fails, so the answer takes as long as a real check.
pub fn verify_password(pw: &str, hash: &str) -> bool {
    if hash.starts_with("$2") {
        return bcrypt::verify(pw, hash).unwrap_or(false);
    }
    let real = !hash.is_empty();
    let hash = if real { hash } else { dummy_hash() };
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(pw.as_bytes(), &h).is_ok() && real,
        Err(_) => false,
    }
}

/// An argon2id hash (same parameters as real ones) of a random password nobody knows, made once per
/// process: what a sign-in for a missing identity verifies against.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        hash_password(&basalt_core::id::random_id(32)).unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()
        })
    })
}

/// At most this many argon2 computations (≈19 MiB each) run at once; others wait their turn, so a
/// burst of sign-ins cannot exhaust memory or the blocking pool.
const HASH_SLOTS: usize = 8;

fn hash_slots() -> &'static tokio::sync::Semaphore {
    static S: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    S.get_or_init(|| tokio::sync::Semaphore::new(HASH_SLOTS))
}

/// Hashes passwords off the async workers (argon2 takes tens of milliseconds by design).
pub async fn hash_password_blocking(pw: String) -> ServiceResult<String> {
    let _slot = hash_slots()
        .acquire()
        .await
        .map_err(|e| ServiceError(basalt_core::Error::internal(e)))?;
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| ServiceError(basalt_core::Error::internal(e)))?
}

pub async fn verify_password_blocking(pw: String, hash: String) -> bool {
    let Ok(_slot) = hash_slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
        .await
        .unwrap_or(false)
}
