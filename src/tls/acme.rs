//! Certificates by themselves (`--tls-domain`): an ACME client on a thread
//! of its own obtains one certificate for every name, keeps it and the
//! account in `--acme-cache DIR`, puts it in the [`CertStore`] the
//! handshakes read, and renews it when less than [`ACME_RENEW_BEFORE`] of
//! its life is left. The reactor never waits for any of it: until the
//! first certificate arrives, handshakes fail with an alert and the plain
//! listener (`http/redirect.rs`) answers the HTTP-01 challenges this
//! thread publishes in [`Challenges`].
//!
//! The client is `instant-acme` (RFC 8555, kept by a rustls maintainer,
//! rustls and *ring* like the rest of the server). It is async, so this
//! thread runs a current-thread tokio runtime of its own, contained here;
//! tokio is already in the tree through the PostgreSQL client, which runs
//! the same way on the storage threads.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::{CertStore, certified_key};
use crate::config::{
    ACME_CHECK_INTERVAL, ACME_ORDER_TIMEOUT, ACME_RENEW_BEFORE, ACME_RETRY_MAX, ACME_RETRY_MIN,
    MAX_ACME_CHALLENGES,
};

/// HTTP-01 challenges waiting to be fetched: token → key authorization.
/// Written by the ACME thread, read by the plain listener on the loop.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: RwLock<HashMap<String, String>>,
}

impl Challenges {
    /// Publishes one; false (and nothing published) past [`MAX_ACME_CHALLENGES`].
    pub fn publish(&self, token: String, key_authorization: String) -> bool {
        let mut pending = self.pending.write().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= MAX_ACME_CHALLENGES && !pending.contains_key(&token) {
            return false;
        }
        pending.insert(token, key_authorization);
        true
    }

    pub fn withdraw(&self, token: &str) {
        self.pending
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    pub fn key_authorization(&self, token: &str) -> Option<String> {
        self.pending
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

/// What the ACME thread needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The names of the certificate (`--tls-domain`, at least one).
    pub domains: Vec<String>,
    /// The ACME directory URL (`--acme-directory`).
    pub directory: String,
    /// Where the account and the certificate are kept (`--acme-cache`).
    pub cache: PathBuf,
    /// A PEM root to trust for the directory's own HTTPS instead of the
    /// system's (`--acme-ca`: a test CA such as pebble's).
    pub ca: Option<PathBuf>,
}

/// The running ACME thread; dropping it stops the thread at its next wait.
pub struct Manager {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Manager {
    /// Loads a cached certificate into `store` at once (so a restart serves
    /// immediately), then starts the thread that orders and renews.
    pub fn start(
        settings: Settings,
        store: Arc<CertStore>,
        challenges: Arc<Challenges>,
    ) -> Result<Manager, String> {
        let cache = Cache::open(&settings.cache, &settings.domains)?;
        if let Some(cert) = cache.certificate() {
            store.set(cert.key.clone());
            log::info!(
                "acme: serving the cached certificate for {} (valid for {} more days)",
                settings.domains.join(", "),
                cert.remaining().as_secs() / 86_400
            );
        }
        let (stop, stopped) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("acme".into())
            .spawn(move || {
                crate::priority::lower_current_thread(crate::priority::ACME_NICE);
                run(&settings, &cache, &store, &challenges, &stopped);
            })
            .map_err(|e| format!("cannot start the ACME thread: {e}"))?;
        Ok(Manager {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            // An order in flight finishes or times out first; a process
            // that is exiting does not wait for that.
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// The thread: serve what is cached, order when there is nothing usable
/// or it is due for renewal, back off on failure.
fn run(
    settings: &Settings,
    cache: &Cache,
    store: &CertStore,
    challenges: &Challenges,
    stopped: &mpsc::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return log::error!("acme: cannot start its runtime: {e}"),
    };
    let mut retry = ACME_RETRY_MIN;
    loop {
        let due = cache
            .certificate()
            .is_none_or(|c| c.remaining() < ACME_RENEW_BEFORE);
        let wait = if !due {
            ACME_CHECK_INTERVAL
        } else {
            log::info!(
                "acme: ordering a certificate for {} from {}",
                settings.domains.join(", "),
                settings.directory
            );
            let ordered = runtime.block_on(async {
                tokio::time::timeout(ACME_ORDER_TIMEOUT, order(settings, cache, challenges))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("no certificate within {ACME_ORDER_TIMEOUT:?}"))
                    })
            });
            match ordered.and_then(|()| {
                cache
                    .certificate()
                    .ok_or("the new certificate does not load".into())
            }) {
                Ok(cert) => {
                    log::info!(
                        "acme: certificate for {} installed (valid for {} days)",
                        settings.domains.join(", "),
                        cert.remaining().as_secs() / 86_400
                    );
                    store.set(cert.key);
                    retry = ACME_RETRY_MIN;
                    ACME_CHECK_INTERVAL
                }
                Err(e) => {
                    log::error!("acme: {e}; trying again in {retry:?}");
                    let wait = retry;
                    retry = (retry * 2).min(ACME_RETRY_MAX);
                    wait
                }
            }
        };
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// One order, start to finish: the account (cached, or created), one
/// HTTP-01 challenge per name, the CSR (a fresh key), the chain. Writes
/// the result to the cache.
async fn order(settings: &Settings, cache: &Cache, challenges: &Challenges) -> Result<(), String> {
    let account = account(settings, cache).await?;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    let mut published = Vec::new();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut challenge = authz
                .challenge(ChallengeType::Http01)
                .ok_or("the CA offers no http-01 challenge")?;
            let token = challenge.token.clone();
            if !challenges.publish(token.clone(), challenge.key_authorization().as_str().into()) {
                return Err("too many challenges at once".into());
            }
            published.push(token);
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        let polls = RetryPolicy::new().timeout(ACME_ORDER_TIMEOUT);
        let status = order
            .poll_ready(&polls)
            .await
            .map_err(|e| format!("validation: {e}"))?;
        if status != OrderStatus::Ready {
            let why = order.state().error.as_ref().map(|p| p.to_string());
            return Err(format!(
                "the order is {status:?}{}",
                why.map(|w| format!(": {w}")).unwrap_or_default()
            ));
        }
        let key_pem = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain_pem = order
            .poll_certificate(&polls)
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        cache.save_certificate(&chain_pem, &key_pem)
    }
    .await;
    for token in &published {
        challenges.withdraw(token);
    }
    result
}

/// The cached account for this directory, or a new one (cached).
async fn account(settings: &Settings, cache: &Cache) -> Result<Account, String> {
    let builder = || match &settings.ca {
        Some(ca) => {
            Account::builder_with_root(ca).map_err(|e| format!("--acme-ca {}: {e}", ca.display()))
        }
        None => Account::builder().map_err(|e| format!("HTTPS client: {e}")),
    };
    if let Some(credentials) = cache.account(&settings.directory) {
        match builder()?.from_credentials(credentials).await {
            Ok(a) => return Ok(a),
            Err(e) => log::warn!("acme: the cached account does not load ({e}); making a new one"),
        }
    }
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &[],
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("new account at {}: {e}", settings.directory))?;
    cache.save_account(&settings.directory, &credentials)?;
    Ok(account)
}

// ---- the cache directory ------------------------------------------------------

/// `--acme-cache DIR`: `account.json` (the ACME account key: secret),
/// `cert.pem` (the chain), `key.pem` (its key: secret) and `names` (what
/// the certificate is for; another set of names orders a new one). The
/// directory and the secrets are 0700/0600.
struct Cache {
    dir: PathBuf,
    names: String,
}

/// A certificate from the cache.
struct Cached {
    key: Arc<rustls::sign::CertifiedKey>,
    /// Seconds since the epoch.
    not_after: u64,
}

impl Cached {
    fn remaining(&self) -> Duration {
        Duration::from_secs(self.not_after.saturating_sub(unix_now()))
    }
}

#[derive(Serialize, Deserialize)]
struct SavedAccount {
    directory: String,
    credentials: AccountCredentials,
}

impl Cache {
    /// Creates the directory (0700) if needed; the error names it.
    fn open(dir: &Path, domains: &[String]) -> Result<Cache, String> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("--acme-cache {}: {e}", dir.display()))?;
        let probe = dir.join(".write-test");
        fs::write(&probe, b"")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|e| format!("--acme-cache {}: not writable: {e}", dir.display()))?;
        let mut names: Vec<String> = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        names.sort();
        Ok(Cache {
            dir: dir.to_path_buf(),
            names: names.join("\n") + "\n",
        })
    }

    fn account(&self, directory: &str) -> Option<AccountCredentials> {
        let bytes = fs::read(self.dir.join("account.json")).ok()?;
        let saved: SavedAccount = serde_json::from_slice(&bytes).ok()?;
        (saved.directory == directory).then_some(saved.credentials)
    }

    fn save_account(
        &self,
        directory: &str,
        credentials: &AccountCredentials,
    ) -> Result<(), String> {
        // `AccountCredentials` serializes but does not clone; round-trip it.
        let credentials: AccountCredentials =
            serde_json::from_value(serde_json::to_value(credentials).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        let saved = SavedAccount {
            directory: directory.into(),
            credentials,
        };
        let json = serde_json::to_vec_pretty(&saved).map_err(|e| e.to_string())?;
        self.write("account.json", &json)
    }

    /// The cached certificate, if it is for these names and loads.
    fn certificate(&self) -> Option<Cached> {
        if fs::read_to_string(self.dir.join("names")).ok()? != self.names {
            return None;
        }
        let chain_pem = fs::read(self.dir.join("cert.pem")).ok()?;
        let key_pem = fs::read(self.dir.join("key.pem")).ok()?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<_, _>>()
            .ok()?;
        let not_after = not_after(chain.first()?)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).ok()?;
        let key = certified_key(chain, key).ok()?;
        Some(Cached { key, not_after })
    }

    fn save_certificate(&self, chain_pem: &str, key_pem: &str) -> Result<(), String> {
        self.write("key.pem", key_pem.as_bytes())?;
        self.write("cert.pem", chain_pem.as_bytes())?;
        self.write("names", self.names.as_bytes())
    }

    /// Writes a file whole (a temporary file renamed over it), mode 0600.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, &path));
        written.map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---- notAfter, read from the DER ------------------------------------------------

/// A certificate's `notAfter`, in seconds since the epoch: the one field
/// renewal needs, read by walking the DER (RFC 5280 §4.1) rather than
/// bringing in an X.509 parser. `None` for anything malformed.
pub fn not_after(cert: &[u8]) -> Option<u64> {
    let (_, certificate, _) = der(cert)?;
    let (_, tbs, _) = der(certificate)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    // serialNumber, signature, issuer
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (tag, validity, _) = der(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, validity) = der(validity)?; // notBefore
    let (tag, time, _) = der(validity)?;
    parse_time(tag, time)
}

/// One DER element: (tag, contents, what follows). Definite lengths only.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`) as seconds since the epoch.
fn parse_time(tag: u8, t: &[u8]) -> Option<u64> {
    let digits = |s: &[u8]| -> Option<u64> {
        s.iter().try_fold(0u64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
        })
    };
    let (year, rest) = match (tag, t.len()) {
        (0x17, 13) => {
            let yy = digits(&t[..2])?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &t[2..])
        }
        (0x18, 15) => (digits(&t[..4])?, &t[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (h, m, s) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day)? * 86_400 + h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm); `None` before 1970.
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = i64::try_from(y).ok()? - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::try_from(m).ok()?;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::try_from(d).ok()? - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dates land on the epoch seconds `date -d` gives.
    #[test]
    fn reads_both_time_forms() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"260115103000Z"), Some(1_768_473_000));
        assert_eq!(parse_time(0x18, b"20260115103000Z"), Some(1_768_473_000));
        assert_eq!(parse_time(0x18, b"20240229235959Z"), Some(1_709_251_199));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x17, b"260115103000+"), None);
        assert_eq!(parse_time(0x17, b"261315103000Z"), None, "month 13");
        assert_eq!(parse_time(0x18, b"2026011510300Z"), None, "short");
        assert_eq!(parse_time(0x17, b"2601151030x0Z"), None);
    }

    /// A certificate's notAfter is found behind the optional version;
    /// truncated or garbled DER is `None`, never a panic.
    #[test]
    fn finds_not_after_in_a_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["chat.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().to_vec();
        assert_eq!(not_after(&der), Some(1_941_321_600));
        for cut in 0..der.len() {
            let _ = not_after(&der[..cut]);
        }
        let mut garbled = der.clone();
        for i in 0..garbled.len().min(64) {
            garbled[i] ^= 0x5a;
            let _ = not_after(&garbled);
        }
        assert_eq!(not_after(b""), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    /// The challenge table is bounded; withdrawing frees a slot.
    #[test]
    fn challenges_are_bounded() {
        let c = Challenges::default();
        for i in 0..MAX_ACME_CHALLENGES {
            assert!(c.publish(format!("t{i}"), "k".into()));
        }
        assert!(!c.publish("one-more".into(), "k".into()));
        assert!(c.publish("t0".into(), "k2".into()), "replacing is fine");
        c.withdraw("t1");
        assert!(c.publish("one-more".into(), "k".into()));
        assert_eq!(c.key_authorization("t0").as_deref(), Some("k2"));
    }
}
