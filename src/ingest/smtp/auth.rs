//! Password checks for AUTH: argon2 PHC hashes verified on the blocking pool, a
//! short cache of successful verifications, and the per-address failure window.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use super::limits::canonical;
use crate::config::sections::User;
use crate::ingest::ListenerError;
use crate::smtp::server::{AuthOutcome, Credentials};

/// How long a successful verification is remembered: argon2 is slow on purpose,
/// and clients reconnect for every few messages.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most remembered verifications (expired ones are dropped first).
const CACHE_MAX: usize = 10_000;
/// Most client addresses tracked for failures (the oldest are dropped first).
const FAILURES_MAX_IPS: usize = 100_000;

/// One account.
#[derive(Debug, Clone)]
struct Account {
    /// The PHC string, checked at start.
    hash: Arc<str>,
    /// The account's tenant.
    tenant: Option<String>,
}

/// A verified password: the key is the user name and the SHA-256 of the password,
/// so the password itself is not kept.
type CacheKey = (String, [u8; 32]);

/// The accounts of the submission listener and what AUTH has taught it.
#[derive(Debug)]
pub struct Authenticator {
    /// User name to account.
    users: HashMap<String, Account>,
    /// Verified for unknown user names too, so that the reply takes as long and
    /// does not tell which names exist. `None` with no accounts.
    decoy: Option<Arc<str>>,
    /// Recent successful verifications and when they expire.
    cache: Mutex<HashMap<CacheKey, (Instant, Option<String>)>>,
    /// Failed attempts per client address inside the window.
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    /// `smtp.max_auth_failures_per_ip`.
    max_failures_per_ip: u32,
    /// `smtp.auth_failure_window`.
    window: Duration,
    /// Verifications running at once: each argon2 check holds its memory cost
    /// (19 MiB by default), so a crowd of clients must queue, not multiply it.
    verifying: tokio::sync::Semaphore,
}

impl Authenticator {
    /// Checks every hash parses as a PHC string; errors name the user's key.
    pub fn new(
        users: &[User],
        max_failures_per_ip: u32,
        window: Duration,
    ) -> Result<Authenticator, ListenerError> {
        let mut accounts = HashMap::new();
        for (i, u) in users.iter().enumerate() {
            if let Err(why) = check_phc(&u.password_hash) {
                return Err(ListenerError::Config {
                    key: format!("smtp.submission.users[{i}].password_hash"),
                    message: format!(
                        "not an argon2 PHC password hash ({why}); `volley hash-password` makes one"
                    ),
                });
            }
            if accounts.contains_key(&u.username) {
                return Err(ListenerError::Config {
                    key: format!("smtp.submission.users[{i}].username"),
                    message: format!("user {:?} is listed twice", u.username),
                });
            }
            accounts.insert(
                u.username.clone(),
                Account {
                    hash: Arc::from(u.password_hash.as_str()),
                    tenant: u.tenant.clone(),
                },
            );
        }
        let decoy = users.first().map(|u| Arc::from(u.password_hash.as_str()));
        Ok(Authenticator {
            users: accounts,
            decoy,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            max_failures_per_ip: max_failures_per_ip.max(1),
            window,
            verifying: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            ),
        })
    }

    /// Whether `ip` has failed `max_auth_failures_per_ip` times within the window.
    pub fn is_locked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get_mut(&canonical(ip)) {
            Some(times) => {
                expire(times, now, self.window);
                times.len() >= self.max_failures_per_ip as usize
            }
            None => false,
        }
    }

    /// Counts a failed attempt from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= FAILURES_MAX_IPS {
            let window = self.window;
            failures.retain(|_, times| {
                expire(times, now, window);
                !times.is_empty()
            });
            if failures.len() >= FAILURES_MAX_IPS {
                failures.clear();
            }
        }
        let times = failures.entry(canonical(ip)).or_default();
        expire(times, now, self.window);
        // Only the last `max` matter for the lockout.
        if times.len() >= self.max_failures_per_ip as usize {
            times.pop_front();
        }
        times.push_back(now);
    }

    /// Verifies `credentials` (from the cache, or argon2 on the blocking pool).
    pub async fn verify(&self, credentials: Credentials) -> AuthOutcome {
        let Credentials { username, password } = credentials;
        let key: CacheKey = (username, Sha256::digest(password.as_bytes()).into());
        if let Some(tenant) = self.cached(&key) {
            return AuthOutcome::Accepted { tenant };
        }
        let account = self.users.get(&key.0).cloned();
        let Some(hash) = account
            .as_ref()
            .map(|a| a.hash.clone())
            .or_else(|| self.decoy.clone())
        else {
            return AuthOutcome::Rejected;
        };
        let Ok(_permit) = self.verifying.acquire().await else {
            return AuthOutcome::Unavailable;
        };
        let checked = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await;
        match (checked, account) {
            (Ok(true), Some(account)) => {
                self.remember(key, account.tenant.clone());
                AuthOutcome::Accepted {
                    tenant: account.tenant,
                }
            }
            (Ok(_), _) => AuthOutcome::Rejected,
            (Err(_), _) => AuthOutcome::Unavailable,
        }
    }

    fn cached(&self, key: &CacheKey) -> Option<Option<String>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(key) {
            Some((expires, tenant)) if *expires > Instant::now() => Some(tenant.clone()),
            _ => None,
        }
    }

    fn remember(&self, key: CacheKey, tenant: Option<String>) {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (expires, _)| *expires > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (now + CACHE_TTL, tenant));
    }
}

/// Whether `phc` is an argon2 PHC string that verification can use.
fn check_phc(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| e.to_string())?;
    argon2::Algorithm::try_from(hash.algorithm).map_err(|e| e.to_string())?;
    argon2::Params::try_from(&hash).map_err(|e| e.to_string())?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err("no salt or no hash".into());
    }
    Ok(())
}

/// Drops failure times older than the window.
fn expire(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, SaltString};

    use super::*;

    fn hash(password: &str) -> String {
        let salt = SaltString::encode_b64(b"fixed salt 16 by").unwrap();
        let cheap = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        );
        cheap
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn user(name: &str, password: &str, tenant: Option<&str>) -> User {
        User {
            username: name.into(),
            password_hash: hash(password),
            tenant: tenant.map(Into::into),
        }
    }

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[tokio::test]
    async fn verifies_and_caches() {
        let a = Authenticator::new(
            &[
                user("alice", "pw-a", Some("acme")),
                user("bob", "pw-b", None),
            ],
            3,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            a.verify(creds("alice", "pw-a")).await,
            AuthOutcome::Accepted {
                tenant: Some("acme".into())
            }
        );
        assert_eq!(a.cache.lock().unwrap().len(), 1);
        assert_eq!(
            a.verify(creds("alice", "pw-a")).await,
            AuthOutcome::Accepted {
                tenant: Some("acme".into())
            }
        );
        assert_eq!(
            a.verify(creds("alice", "pw-b")).await,
            AuthOutcome::Rejected
        );
        assert_eq!(a.verify(creds("bob", "pw-a")).await, AuthOutcome::Rejected);
        // Unknown users are checked against the decoy, and refused even with its
        // password.
        assert_eq!(
            a.verify(creds("mallory", "pw-a")).await,
            AuthOutcome::Rejected
        );
        assert_eq!(
            a.verify(creds("bob", "pw-b")).await,
            AuthOutcome::Accepted { tenant: None }
        );
        let none = Authenticator::new(&[], 3, Duration::from_secs(60)).unwrap();
        assert_eq!(none.verify(creds("x", "y")).await, AuthOutcome::Rejected);
    }

    #[test]
    fn bad_hashes_and_duplicates_name_the_key() {
        let mut u = user("alice", "pw", None);
        u.password_hash = "$argon2id$garbage".into();
        let e = Authenticator::new(&[user("ok", "pw", None), u], 3, Duration::from_secs(1))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("smtp.submission.users[1].password_hash:"),
            "{e}"
        );
        let e = Authenticator::new(
            &[user("a", "1", None), user("a", "2", None)],
            3,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("smtp.submission.users[1].username:"),
            "{e}"
        );
    }

    #[test]
    fn failure_window_locks_and_expires() {
        let a = Authenticator::new(&[], 3, Duration::from_millis(200)).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            a.record_failure(ip);
        }
        assert!(!a.is_locked(ip));
        a.record_failure("::ffff:192.0.2.1".parse().unwrap());
        assert!(a.is_locked(ip));
        assert!(!a.is_locked(other));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!a.is_locked(ip), "the window passed");
    }
}
