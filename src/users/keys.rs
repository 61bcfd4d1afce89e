//! API keys: `<10-char id>-<22-char secret>`; only SHA-256 of the secret is stored.

use chrono::{DateTime, Duration, Utc};
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub const ID_LEN: usize = 10;
pub const SECRET_LEN: usize = 22;

fn random_alnum(n: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn secret_matches(secret: &str, stored_hash: &[u8]) -> bool {
    hash_secret(secret).ct_eq(stored_hash).into()
}

/// Splits a presented token, with Coder's error details for malformed ones.
pub fn split_token(token: &str) -> Result<(&str, &str), String> {
    let parts: Vec<&str> = token.split('-').collect();
    if parts.len() != 2 {
        return Err(format!(
            "Invalid API key format: incorrect number of parts: {}",
            parts.len()
        ));
    }
    let (id, secret) = (parts[0], parts[1]);
    if id.len() != ID_LEN {
        return Err("Invalid API key format: invalid API key ID length".into());
    }
    if secret.len() != SECRET_LEN {
        return Err("Invalid API key format: invalid API key secret length".into());
    }
    Ok((id, secret))
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub user_id: Uuid,
    pub login_type: String,
    pub lifetime: Duration,
    pub token_name: String,
}

/// Inserts a key and returns the token to hand to the client (the only time the secret exists).
pub async fn create(
    conn: impl PgExecutor<'_>,
    key: &NewKey,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let id = random_alnum(ID_LEN);
    let secret = random_alnum(SECRET_LEN);
    sqlx::query(
        "INSERT INTO api_keys (id, hashed_secret, user_id, last_used, expires_at, created_at, updated_at,
                               login_type, lifetime_seconds, token_name)
         VALUES ($1, $2, $3, $4, $5, $4, $4, $6, $7, $8)",
    )
    .bind(&id)
    .bind(hash_secret(&secret))
    .bind(key.user_id)
    .bind(now)
    .bind(now + key.lifetime)
    .bind(&key.login_type)
    .bind(key.lifetime.num_seconds())
    .bind(&key.token_name)
    .execute(conn)
    .await?;
    Ok(format!("{id}-{secret}"))
}

pub async fn delete(conn: impl PgExecutor<'_>, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM api_keys WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Coder's refresh rule: `last_used` is bumped at most hourly, and the expiry slides to now + lifetime
/// once less than lifetime − 1h remains. Returns the new (last_used, expires_at) when either changes.
pub fn refresh(
    now: DateTime<Utc>,
    last_used: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    lifetime_seconds: i64,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let lifetime = Duration::seconds(lifetime_seconds);
    let bump_used = now - last_used > Duration::hours(1);
    let extend = lifetime > Duration::hours(1) && expires_at - now <= lifetime - Duration::hours(1);
    if !bump_used && !extend {
        return None;
    }
    let new_used = if bump_used { now } else { last_used };
    let new_expiry = if extend { now + lifetime } else { expires_at };
    Some((new_used, new_expiry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_format() {
        assert!(split_token("abcdefghij-abcdefghijklmnopqrstuv").is_ok());
        assert!(split_token("abc-def").is_err());
        assert!(split_token("abcdefghij-abcdefghijklmnopqrstuv-x").is_err());
        assert!(split_token("").is_err());
    }

    #[test]
    fn secret_comparison() {
        let h = hash_secret("s3cret");
        assert!(secret_matches("s3cret", &h));
        assert!(!secret_matches("s3cres", &h));
    }

    #[test]
    fn refresh_rule() {
        let t0 = Utc::now();
        let day = 86_400;
        // Fresh key: nothing to do.
        assert_eq!(refresh(t0, t0, t0 + Duration::hours(24), day), None);
        // Two hours later: last_used bumped and expiry extended.
        let t2 = t0 + Duration::hours(2);
        let (used, exp) = refresh(t2, t0, t0 + Duration::hours(24), day).unwrap();
        assert_eq!(used, t2);
        assert_eq!(exp, t2 + Duration::hours(24));
    }
}
