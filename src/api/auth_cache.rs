//! A short-lived in-process cache of authenticated API keys, so a request with a known key costs no
//! database round trip.
//!
//! Staleness is bounded by invalidation, not only by age: triggers on `users`, `api_keys` and
//! `organization_members` (`migrations/0005_auth_invalidations.sql`) publish the affected user on
//! [`CHANNEL`] from whichever replica made the change, and every replica's listener evicts that
//! user's keys. Changes made by this replica also evict synchronously, so a response that says a
//! user is suspended is never followed by a request served from the old entry. The cache is used
//! only while the listener is connected (it is emptied when the connection drops), and an entry
//! read from the database before an eviction is never stored after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::users::UserRow;

/// NOTIFY channel; payload: the id of a user whose keys, roles, status or memberships changed.
pub const CHANNEL: &str = "auth_invalidations";

/// How long an entry is trusted even if no invalidation arrives.
pub const TTL: Duration = Duration::from_secs(5);

/// Entries kept at most (one per active key).
const CAPACITY: usize = 10_000;

/// What authentication needs from the database for one key.
#[derive(Debug, Clone)]
pub struct CachedKey {
    pub hashed_secret: Vec<u8>,
    pub last_used: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub lifetime_seconds: i64,
    pub user: UserRow,
    pub memberships: Vec<(Uuid, Vec<String>)>,
}

#[derive(Default)]
pub struct AuthCache {
    entries: Mutex<HashMap<String, (Instant, Arc<CachedKey>)>>,
    /// Bumped by every eviction: a read that started before it must not be stored.
    generation: AtomicU64,
    /// Whether the replica's listener is connected (invalidations can arrive).
    listening: AtomicBool,
}

impl AuthCache {
    /// The generation to pass to [`AuthCache::put`] for a database read starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn get(&self, key_id: &str) -> Option<Arc<CachedKey>> {
        if !self.listening.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key_id)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, key)| key.clone())
    }

    /// Stores a key read from the database at `generation`, unless an eviction happened since.
    pub fn put(&self, key_id: &str, key: CachedKey, generation: u64) {
        if !self.listening.load(Ordering::SeqCst) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock evictions take, so no eviction can slip in between.
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if entries.len() >= CAPACITY {
                return;
            }
        }
        entries.insert(key_id.to_string(), (Instant::now(), Arc::new(key)));
    }

    /// Forgets every key of `user`.
    pub fn evict_user(&self, user: Uuid) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|_, (_, key)| key.user.id != user);
    }

    /// Forgets one key.
    pub fn evict_key(&self, key_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.remove(key_id);
    }

    /// The listener connected (`true`) or lost its connection (`false`); either way, forget
    /// everything, since invalidations may have been missed.
    pub fn set_listening(&self, listening: bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.listening.store(listening, Ordering::SeqCst);
        entries.clear();
    }

    /// Handles a payload of [`CHANNEL`]; one that is not a user id empties the cache.
    pub fn on_notification(&self, payload: &str) {
        match payload.parse::<Uuid>() {
            Ok(user) => self.evict_user(user),
            Err(_) => self.set_listening(self.listening.load(Ordering::SeqCst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: Uuid) -> CachedKey {
        let now = Utc::now();
        CachedKey {
            hashed_secret: vec![1, 2, 3],
            last_used: now,
            expires_at: now,
            lifetime_seconds: 60,
            user: UserRow {
                id: user,
                email: String::new(),
                username: String::new(),
                name: String::new(),
                hashed_password: String::new(),
                created_at: now,
                updated_at: now,
                last_seen_at: now,
                status: "active".into(),
                rbac_roles: Vec::new(),
                login_type: "password".into(),
                avatar_url: String::new(),
                theme_preference: String::new(),
                deleted: false,
                is_system: false,
            },
            memberships: Vec::new(),
        }
    }

    #[test]
    fn unused_until_the_listener_is_connected() {
        let cache = AuthCache::default();
        let user = Uuid::new_v4();
        cache.put("k", key(user), cache.generation());
        assert!(cache.get("k").is_none());
        cache.set_listening(true);
        cache.put("k", key(user), cache.generation());
        assert!(cache.get("k").is_some());
        cache.set_listening(false);
        assert!(cache.get("k").is_none());
    }

    #[test]
    fn a_read_that_started_before_an_eviction_is_not_stored() {
        let cache = AuthCache::default();
        cache.set_listening(true);
        let user = Uuid::new_v4();
        let before = cache.generation();
        cache.evict_user(Uuid::new_v4());
        cache.put("k", key(user), before);
        assert!(cache.get("k").is_none());
        cache.put("k", key(user), cache.generation());
        assert!(cache.get("k").is_some());
    }

    #[test]
    fn evictions_by_user_key_and_notification() {
        let cache = AuthCache::default();
        cache.set_listening(true);
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        for (k, u) in [("a1", alice), ("a2", alice), ("b1", bob)] {
            cache.put(k, key(u), cache.generation());
        }
        cache.evict_user(alice);
        assert!(cache.get("a1").is_none() && cache.get("a2").is_none());
        assert!(cache.get("b1").is_some());
        cache.evict_key("b1");
        assert!(cache.get("b1").is_none());
        cache.put("b1", key(bob), cache.generation());
        cache.on_notification(&bob.to_string());
        assert!(cache.get("b1").is_none());
        cache.put("b1", key(bob), cache.generation());
        cache.on_notification("garbage");
        assert!(cache.get("b1").is_none());
    }
}
