//! Password hashing (Argon2id, PHC strings) and Coder's password-strength rule.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id cost parameters. Stored hashes carry their own parameters, so changing these only affects new
/// hashes; tests use cheap ones the way Coder's tests use cheaper PBKDF2 iterations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashParams {
    /// OWASP's recommended Argon2id baseline (19 MiB, 2 passes).
    pub fn production() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }

    pub fn fast_for_tests() -> Self {
        Self {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("hash password: {0}")]
pub struct HashError(String);

pub fn hash(password: &str, params: HashParams) -> Result<String, HashError> {
    let params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        None,
    )
    .map_err(|e| HashError(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Constant-time verification against a stored PHC string; a malformed or empty hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of a random password, verified against when the user does not exist so that login takes
/// the same time whether or not the email is known.
pub fn dummy_hash(params: HashParams) -> String {
    hash("not-a-real-password-0123456789", params).unwrap_or_default()
}

/// Coder's rule (`userpassword.Validate`): 6 to 64 characters and enough entropy (52 bits) by the
/// estimate of go-password-validator: character-class pool size to the power of the effective length.
pub fn validate_strength(password: &str) -> Result<(), String> {
    let len = password.chars().count();
    if len < 6 {
        return Err("Password must be at least 6 characters long.".into());
    }
    if len > 64 {
        return Err("Password must be no more than 64 characters long.".into());
    }
    let bits = entropy_bits(password);
    if bits < 52.0 {
        return Err(format!(
            "insecure password, try including more special characters, using uppercase letters, using numbers or using a longer password (entropy {bits:.0} bits, need 52)"
        ));
    }
    Ok(())
}

fn entropy_bits(password: &str) -> f64 {
    const SPECIAL: &str = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    let mut pool = 0u32;
    let chars: Vec<char> = password.chars().collect();
    if chars.iter().any(|c| c.is_ascii_lowercase()) {
        pool += 26;
    }
    if chars.iter().any(|c| c.is_ascii_uppercase()) {
        pool += 26;
    }
    if chars.iter().any(|c| c.is_ascii_digit()) {
        pool += 10;
    }
    if chars.iter().any(|c| SPECIAL.contains(*c)) {
        pool += SPECIAL.len() as u32;
    }
    if chars
        .iter()
        .any(|c| !c.is_ascii_alphanumeric() && !SPECIAL.contains(*c))
    {
        pool += 1;
    }
    // Runs of one repeated character count at most twice, as in the reference estimator.
    let mut effective = 0usize;
    let mut run = 0usize;
    let mut prev: Option<char> = None;
    for &c in &chars {
        run = if Some(c) == prev { run + 1 } else { 1 };
        if run <= 2 {
            effective += 1;
        }
        prev = Some(c);
    }
    (pool.max(1) as f64).log2() * effective as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify_round_trip() {
        let h = hash("SomeSecurePassword!", HashParams::fast_for_tests()).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("SomeSecurePassword!", &h));
        assert!(!verify("somesecurepassword!", &h));
        assert!(!verify("x", ""));
    }

    #[test]
    fn strength_rule() {
        assert!(validate_strength("SomeSecurePassword!").is_ok());
        assert!(validate_strength("password").is_err());
        assert!(validate_strength("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(validate_strength("abc").is_err());
        assert!(validate_strength(&"Ab1!".repeat(20)).is_err());
    }
}
