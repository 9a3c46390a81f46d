//! Hashing a new password for an account.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
use chatd_core::Password;

/// Hashes `password` with Argon2id at the crate's default parameters and a
/// fresh random salt, as a PHC string (`$argon2id$v=19$m=...`). The
/// engine's verifier ([`crate::auth::verify`]) reads the parameters back
/// from the string, so hashes made with other parameters keep working.
///
/// Takes tens of milliseconds by design: call it off the core's thread
/// (the [`super::AccountWorker`] does).
pub fn hash_password(password: &Password) -> String {
    // The salt comes from the operating system's generator; it cannot
    // fail on the systems we build for (getrandom panics if it does).
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        // Hashing fails only on invalid parameters or a salt of the wrong
        // length; the defaults and a generated salt are neither.
        .expect("Argon2id with default parameters hashes any password")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatd_core::PasswordVerdict;

    #[test]
    fn a_hash_is_argon2id_and_verifies_only_its_own_password() {
        let password = Password::new("correct horse battery");
        let hash = hash_password(&password);
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert_eq!(
            crate::auth::verify(&hash, &password),
            PasswordVerdict::Match
        );
        assert_eq!(
            crate::auth::verify(&hash, &Password::new("correct horse battery!")),
            PasswordVerdict::Mismatch
        );
    }

    #[test]
    fn the_same_password_gets_a_new_salt_each_time() {
        let password = Password::new("hunter22");
        assert_ne!(hash_password(&password), hash_password(&password));
    }
}
