//! Abuse protection: the client IP (behind trusted proxies), the protocol's `rateLimits` rules with a
//! built-in stricter limit on auth endpoints, the superuser IP allow-list, progressive lockout per
//! (identity, client network) after failed secrets, and the admission of heavy reads.
//!
//! **Invariant:** every rate counter here goes through [`Rates`] (Redis when configured and up,
//! else this node's [`LocalRates`]); the lockout ([`Lockout`]) is still per node.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use basalt_core::Error;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::Value as Json;

use crate::error::ServiceError;

/// Built-in limit on auth endpoints per client IP, on top of any configured rule: a burst of
/// `AUTH_BURST`, refilled at `AUTH_PER_SEC` per second.
pub const AUTH_BURST: u32 = 60;
pub const AUTH_PER_SEC: u32 = 10;
/// Consecutive failures allowed before an identity is locked; each further failure doubles the lock.
pub const LOCKOUT_AFTER: u32 = 5;
pub const LOCKOUT_MAX: Duration = Duration::from_secs(15 * 60);

/// One `rateLimits.rules[]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub label: String,
    pub max_requests: u32,
    pub duration_secs: u64,
    /// "" (everyone), "@guest" or "@auth".
    pub audience: String,
}

pub use basalt_core::net::Net;

/// The parts of settings the request path needs, parsed once per settings change.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rate_limits_enabled: bool,
    pub rules: Vec<Rule>,
    pub superuser_ips: Vec<Net>,
    /// Clients never rate limited (`rateLimits.excludedIPs`).
    pub excluded_ips: Vec<Net>,
    pub proxy_headers: Vec<String>,
    pub use_leftmost_ip: bool,
}

impl Policy {
    pub fn from_settings(s: &Json) -> Policy {
        let rl = &s["rateLimits"];
        let rules = rl["rules"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| {
                        Some(Rule {
                            label: r["label"].as_str()?.to_string(),
                            max_requests: u32::try_from(r["maxRequests"].as_u64()?).ok()?,
                            duration_secs: r["duration"].as_u64()?,
                            audience: r["audience"].as_str().unwrap_or("").to_string(),
                        })
                    })
                    .filter(|r| r.max_requests > 0 && r.duration_secs > 0)
                    .collect()
            })
            .unwrap_or_default();
        let strings = |v: &Json| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Policy {
            rate_limits_enabled: rl["enabled"].as_bool().unwrap_or(false),
            rules,
            superuser_ips: strings(&s["superuserIPs"])
                .iter()
                .filter_map(|x| Net::parse(x))
                .collect(),
            excluded_ips: strings(&rl["excludedIPs"])
                .iter()
                .filter_map(|x| Net::parse(x))
                .collect(),
            proxy_headers: strings(&s["trustedProxy"]["headers"]),
            use_leftmost_ip: s["trustedProxy"]["useLeftmostIP"]
                .as_bool()
                .unwrap_or(false),
        }
    }

    pub fn superuser_ip_allowed(&self, ip: IpAddr) -> bool {
        self.superuser_ips.is_empty() || self.superuser_ips.iter().any(|n| n.contains(ip))
    }
}

/// Validates `rateLimits.rules` and `superuserIPs` of a settings patch (field errors by dotted path).
pub fn validate_settings(patch: &Json, errs: &mut basalt_core::FieldErrors) {
    use basalt_core::FieldError;
    if let Some(rules) = patch["rateLimits"]["rules"].as_array() {
        for (i, r) in rules.iter().enumerate() {
            let label = r["label"].as_str().unwrap_or("");
            if label.is_empty() || !valid_label(label) {
                errs.insert(
                    format!("rateLimits.rules.{i}.label"),
                    FieldError::new(
                        basalt_core::codes::MATCH_INVALID,
                        "Must be in a valid format.",
                    ),
                );
            }
            for k in ["maxRequests", "duration"] {
                if r[k].as_u64().is_none_or(|n| n == 0) {
                    errs.insert(format!("rateLimits.rules.{i}.{k}"), FieldError::required());
                }
            }
            let aud = r["audience"].as_str().unwrap_or("");
            if !["", "@guest", "@auth"].contains(&aud) {
                errs.insert(
                    format!("rateLimits.rules.{i}.audience"),
                    FieldError::new(basalt_core::codes::IN_INVALID, "Must be a valid value."),
                );
            }
        }
    }
    if let Some(ips) = patch["superuserIPs"].as_array() {
        for (i, ip) in ips.iter().enumerate() {
            if ip.as_str().and_then(Net::parse).is_none() {
                errs.insert(
                    format!("superuserIPs.{i}"),
                    FieldError::new(
                        basalt_core::codes::INVALID_IP,
                        "Must be a valid IP address or CIDR.",
                    ),
                );
            }
        }
    }
}

/// `/path`, `METHOD /path`, or a tag (`collection:action`, `*:action`, `name`), as the protocol
/// accepts them (tags are not checked against known actions).
fn valid_label(l: &str) -> bool {
    let path_ok = |p: &str| p.starts_with('/') && !p.contains(char::is_whitespace);
    if let Some((m, p)) = l.split_once(' ') {
        return ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"].contains(&m)
            && path_ok(p);
    }
    if l.starts_with('/') {
        return path_ok(l);
    }
    !l.is_empty()
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_*:@-.".contains(c))
}

/// What a request does, as rate limits and the built-in auth limit see it: the protocol's action
/// tags (`users:list`, `*:authWithPassword`, `*:auth`). Every transport's call into the service names
/// its action, so the same rule applies however the request arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    List,
    View,
    Create,
    Update,
    Delete,
    ListAuthMethods,
    AuthRefresh,
    SignIn(SignInMethod),
    RequestOtp,
    RequestPasswordReset,
    ConfirmPasswordReset,
    RequestVerification,
    ConfirmVerification,
    RequestEmailChange,
    ConfirmEmailChange,
}

/// How a sign-in proves the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    OAuth2,
    Otp,
    Totp,
}

impl SignInMethod {
    /// The method's name in MFA bookkeeping and logs.
    pub fn name(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::OAuth2 => "oauth2",
            SignInMethod::Otp => "otp",
            SignInMethod::Totp => "totp",
        }
    }
}

impl Action {
    /// The protocol's tag (the part after `collection:` in a rule label).
    pub fn label(self) -> &'static str {
        match self {
            Action::List => "list",
            Action::View => "view",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::ListAuthMethods => "listAuthMethods",
            Action::AuthRefresh => "authRefresh",
            Action::SignIn(SignInMethod::Password) => "authWithPassword",
            Action::SignIn(SignInMethod::OAuth2) => "authWithOAuth2",
            Action::SignIn(SignInMethod::Otp) => "authWithOTP",
            Action::SignIn(SignInMethod::Totp) => "authWithTOTP",
            Action::RequestOtp => "requestOTP",
            Action::RequestPasswordReset => "requestPasswordReset",
            Action::ConfirmPasswordReset => "confirmPasswordReset",
            Action::RequestVerification => "requestVerification",
            Action::ConfirmVerification => "confirmVerification",
            Action::RequestEmailChange => "requestEmailChange",
            Action::ConfirmEmailChange => "confirmEmailChange",
        }
    }

    /// Actions the built-in auth limit covers: every sign-in and every request or confirmation that
    /// mails or checks a secret.
    pub fn is_auth(self) -> bool {
        let l = self.label();
        l.starts_with("authWith") || l.starts_with("request") || l.starts_with("confirm")
    }

    /// What the `*:auth` / `coll:auth` labels cover, as in the protocol: the sign-ins only.
    pub fn is_signin(self) -> bool {
        matches!(self, Action::SignIn(_))
    }
}

/// The most specific configured rule for the request: `coll:action`, `coll:auth`, `*:action`,
/// `*:auth`, then the longest matching path label (method-specific first).
pub fn pick_rule<'a>(
    rules: &'a [Rule],
    method: &str,
    path: &str,
    tag: Option<(&str, Action)>,
    coll_id: Option<&str>,
    authed: bool,
) -> Option<&'a Rule> {
    let aud_ok = |r: &&Rule| match r.audience.as_str() {
        "@guest" => !authed,
        "@auth" => authed,
        _ => true,
    };
    if let Some((c, action)) = tag {
        let mut names: Vec<String> = Vec::new();
        let auth = action.is_signin();
        let a = action.label();
        for coll in [Some(c), coll_id, Some("*")].into_iter().flatten() {
            names.push(format!("{coll}:{a}"));
            if auth {
                names.push(format!("{coll}:auth"));
            }
        }
        for n in &names {
            if let Some(r) = rules.iter().filter(aud_ok).find(|r| &r.label == n) {
                return Some(r);
            }
        }
    }
    let mut best: Option<(&Rule, usize)> = None;
    for r in rules.iter().filter(aud_ok) {
        let (m, p) = match r.label.split_once(' ') {
            Some((m, p)) => (Some(m), p),
            None => (None, r.label.as_str()),
        };
        if !p.starts_with('/') || !path.starts_with(p) {
            continue;
        }
        if m.is_some_and(|m| !m.eq_ignore_ascii_case(method)) {
            continue;
        }
        let score = p.len() * 2 + usize::from(m.is_some());
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((r, score));
        }
    }
    best.map(|(r, _)| r)
}

type Limiter = DefaultKeyedRateLimiter<String>;

/// This node's token buckets (governor, GCRA).
#[derive(Default)]
pub struct LocalRates {
    limiters: Mutex<HashMap<(String, u32, Duration), Arc<Limiter>>>,
}

impl LocalRates {
    /// Takes one token from bucket `key` of a `max` per `period` quota; `Err(wait)` when empty.
    pub fn hit(&self, bucket: &str, key: &str, max: u32, period: Duration) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(max) else {
            return Ok(());
        };
        let lim = {
            let mut g = self.limiters.lock().unwrap_or_else(|p| p.into_inner());
            if g.len() > 1024 {
                g.clear();
            }
            g.entry((bucket.to_string(), max, period))
                .or_insert_with(|| {
                    let per = (period / max).max(Duration::from_nanos(1));
                    let q = Quota::with_period(per)
                        .unwrap_or_else(|| Quota::per_second(n))
                        .allow_burst(n);
                    Arc::new(RateLimiter::keyed(q))
                })
                .clone()
        };
        if lim.len() > 100_000 {
            lim.retain_recent();
        }
        match lim.check_key(&key.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                Err(not_until.wait_time_from(governor::clock::Clock::now(lim.clock())))
            }
        }
    }
}

/// The rate store the request path uses: Redis when configured and up (one budget shared by every
/// node: GCRA, the same algorithm as the local buckets, run as one script so concurrent nodes cannot
/// both take the last token), else this node's [`LocalRates`]. While Redis is down each node enforces
/// the limits on its own (degraded: N nodes admit up to N× the budget) and health says so.
pub struct Rates {
    pub local: LocalRates,
    pub redis: Option<Arc<basalt_cluster::redis::Redis>>,
}

/// GCRA over one key holding the theoretical arrival time (ms, Redis clock). ARGV: interval ms per
/// token, burst tolerance ms. Returns 0 when allowed, else the wait in ms.
const GCRA: &str = "local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
local interval = tonumber(ARGV[1]) local tolerance = tonumber(ARGV[2]) \
local tat = tonumber(redis.call('GET', KEYS[1]) or now) \
if tat < now then tat = now end \
local allow_at = tat - tolerance \
if now < allow_at then return allow_at - now end \
local new_tat = tat + interval \
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000) \
return 0";

impl Rates {
    pub fn new(redis: Option<Arc<basalt_cluster::redis::Redis>>) -> Rates {
        Rates {
            local: LocalRates::default(),
            redis,
        }
    }

    /// Takes one token from bucket `key` of a `max` per `period` quota; `Err(wait)` when empty.
    pub async fn hit(
        &self,
        bucket: &str,
        key: &str,
        max: u32,
        period: Duration,
    ) -> Result<(), Duration> {
        if max == 0 {
            return Ok(());
        }
        if let Some(r) = self.redis.as_ref().filter(|r| r.is_up()) {
            let interval = (period.as_millis() as u64 / u64::from(max)).max(1);
            let tolerance = interval * u64::from(max - 1);
            let res: Result<i64, String> = r
                .query(
                    basalt_cluster::driver::cmd("EVAL")
                        .arg(GCRA)
                        .arg(1)
                        .arg(format!(
                            "basalt:rl:{bucket}:{max}:{}:{key}",
                            period.as_millis()
                        ))
                        .arg(interval)
                        .arg(tolerance),
                )
                .await;
            match res {
                Ok(0) => return Ok(()),
                Ok(wait) => return Err(Duration::from_millis(wait.max(1) as u64)),
                // Redis failed mid-request: this node's buckets decide (logged by the component).
                Err(_) => {}
            }
        }
        self.local.hit(bucket, key, max, period)
    }
}

/// Failures of one identity, across all networks, after which networks that never signed in to it
/// are slowed to one attempt per [`IDENTITY_SLOW_EVERY`] between them.
pub const IDENTITY_SLOW_AFTER: u32 = 20;
pub const IDENTITY_SLOW_EVERY: Duration = Duration::from_secs(2);
/// Networks remembered per identity as having signed in to it.
const KNOWN_NETWORKS: usize = 8;
/// Entries past which the lockout maps drop what matters least (bounded memory under a flood).
const MAX_TRACKED: usize = 100_000;

/// Progressive lockout, keyed to (identity, client network) so that whoever guesses locks only
/// themselves:
/// - after [`LOCKOUT_AFTER`] consecutive failures of an identity from one network
///   ([`network_of`]), that network is refused for it until the lock ends; the lock after the n-th
///   failure lasts 2^(n-4) s (2 s, 4 s, 8 s, …), at most [`LOCKOUT_MAX`]; a success clears it;
/// - an identity guessed at from many networks (more than [`IDENTITY_SLOW_AFTER`] failures in all,
///   forgotten [`LOCKOUT_MAX`] after the last) is *slowed*, not locked: networks that never signed
///   in to it share one attempt per [`IDENTITY_SLOW_EVERY`], while networks it signed in from
///   before (the owner's) go through as usual.
///
/// State is per node (like PocketBase's), bounded in size.
#[derive(Default)]
pub struct Lockout {
    state: Mutex<LockoutState>,
    /// Failures that locked a pair (identity, network), since start (a metric).
    pub engaged: std::sync::atomic::AtomicU64,
    /// Attempts refused while locked or slowed, since start (a metric).
    pub refused: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct LockoutState {
    /// (identity, network) → (consecutive failures, locked until).
    pairs: HashMap<(String, String), (u32, Instant)>,
    identities: HashMap<String, IdentityFails>,
}

struct IdentityFails {
    fails: u32,
    last: Instant,
    /// When the next attempt from an unknown network may go through while slowed.
    next_slot: Instant,
    known: Vec<String>,
}

impl LockoutState {
    fn identity(&mut self, identity: &str, now: Instant) -> &mut IdentityFails {
        if self.identities.len() > MAX_TRACKED {
            self.identities
                .retain(|_, i| now.duration_since(i.last) < LOCKOUT_MAX);
            if self.identities.len() > MAX_TRACKED {
                // Guessing at many identities at once: keep those being slowed, and whose owners
                // signed in (their known networks).
                self.identities
                    .retain(|_, i| i.fails >= IDENTITY_SLOW_AFTER || !i.known.is_empty());
            }
        }
        let i = self
            .identities
            .entry(identity.to_string())
            .or_insert_with(|| IdentityFails {
                fails: 0,
                last: now,
                next_slot: now,
                known: Vec::new(),
            });
        if now.duration_since(i.last) >= LOCKOUT_MAX {
            i.fails = 0;
        }
        i
    }
}

impl Lockout {
    fn lock(&self) -> std::sync::MutexGuard<'_, LockoutState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(wait)` while `identity` is locked for `network`, or slowed and not this network's turn.
    /// Past a lock, one attempt at a time goes through: it holds a one-second provisional lock until
    /// its outcome (`fail` or `success`) is recorded.
    pub fn check(&self, identity: &str, network: &str) -> Result<(), Duration> {
        let res = self.check_inner(identity, network);
        if res.is_err() {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        res
    }

    fn check_inner(&self, identity: &str, network: &str) -> Result<(), Duration> {
        let mut g = self.lock();
        let now = Instant::now();
        let key = (identity.to_string(), network.to_string());
        match g.pairs.get_mut(&key) {
            Some((_, until)) if *until > now => return Err(*until - now),
            Some((n, until)) if *n >= LOCKOUT_AFTER => *until = now + Duration::from_secs(1),
            _ => {}
        }
        let Some(i) = g.identities.get_mut(identity) else {
            return Ok(());
        };
        if i.fails < IDENTITY_SLOW_AFTER
            || now.duration_since(i.last) >= LOCKOUT_MAX
            || i.known.iter().any(|k| k == network)
        {
            return Ok(());
        }
        if i.next_slot > now {
            return Err(i.next_slot - now);
        }
        i.next_slot = now + IDENTITY_SLOW_EVERY;
        Ok(())
    }

    pub fn fail(&self, identity: &str, network: &str) {
        let mut g = self.lock();
        let now = Instant::now();
        if g.pairs.len() > MAX_TRACKED {
            g.pairs
                .retain(|_, (_, until)| now.duration_since(*until) < Duration::from_secs(3600));
            if g.pairs.len() > MAX_TRACKED {
                // Many networks guessing at once: keep the pairs locked right now.
                g.pairs.retain(|_, (_, until)| *until > now);
            }
        }
        let e = g
            .pairs
            .entry((identity.to_string(), network.to_string()))
            .or_insert((0, now));
        e.0 += 1;
        if e.0 >= LOCKOUT_AFTER {
            let exp = (e.0 - LOCKOUT_AFTER + 1).min(20);
            let lock = Duration::from_secs(1u64 << exp).min(LOCKOUT_MAX);
            e.1 = now + lock;
            self.engaged
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let i = g.identity(identity, now);
        i.fails += 1;
        i.last = now;
    }

    /// A correct secret from `network`: clears its lock and remembers the network for the identity.
    pub fn success(&self, identity: &str, network: &str) {
        let mut g = self.lock();
        g.pairs.remove(&(identity.to_string(), network.to_string()));
        let i = g.identity(identity, Instant::now());
        if !i.known.iter().any(|k| k == network) {
            if i.known.len() >= KNOWN_NETWORKS {
                i.known.remove(0);
            }
            i.known.push(network.to_string());
        }
    }
}

/// How long a heavy read waits for its turn before it is refused with 429.
pub const HEAVY_READ_WAIT: Duration = Duration::from_secs(5);

/// Admission of heavy reads: lists whose client filter or sort joins relations (the cost the
/// compiler bounds, still up to the read deadline each). Each caller (a user, or a guest's IP) may run
/// half the store's read connections' worth of them at once, and guests together the same, so one
/// caller, or every guest at once, can never hold all read connections: the other half stays free
/// for everyone else. Waits asynchronously (no worker held) up to [`HEAVY_READ_WAIT`], then 429.
/// Reads without joins (by id, plain filters) never wait here.
pub struct HeavyReads {
    per_caller: usize,
    guests: Arc<tokio::sync::Semaphore>,
    callers: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

/// A heavy read's admission, held until the read ends.
pub struct HeavyPass {
    _caller: tokio::sync::OwnedSemaphorePermit,
    _guests: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl HeavyReads {
    /// For a store running `read_concurrency` reads at once.
    pub fn new(read_concurrency: usize) -> HeavyReads {
        let half = (read_concurrency / 2).max(1);
        HeavyReads {
            per_caller: half,
            guests: Arc::new(tokio::sync::Semaphore::new(half)),
            callers: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for the caller's turn (`caller`: a stable key of the user, or of a guest's IP).
    pub async fn enter(&self, caller: &str, guest: bool) -> Result<HeavyPass, ServiceError> {
        let mine = {
            let mut g = self.callers.lock().unwrap_or_else(|p| p.into_inner());
            if g.len() > 10_000 {
                // Callers with no read in flight hold no permit: forget them.
                g.retain(|_, s| Arc::strong_count(s) > 1);
            }
            g.entry(caller.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_caller)))
                .clone()
        };
        let busy = || {
            ServiceError(Error::too_many(
                "Too many expensive requests at once, try again later.",
                Duration::from_secs(1),
            ))
        };
        let deadline = tokio::time::Instant::now() + HEAVY_READ_WAIT;
        let caller = tokio::time::timeout_at(deadline, mine.acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let guests = if guest {
            Some(
                tokio::time::timeout_at(deadline, self.guests.clone().acquire_owned())
                    .await
                    .map_err(|_| busy())?
                    .map_err(|_| busy())?,
            )
        } else {
            None
        };
        Ok(HeavyPass {
            _caller: caller,
            _guests: guests,
        })
    }
}

/// The refusal of a locked identity.
pub fn locked(wait: Duration) -> ServiceError {
    ServiceError(Error::too_many(
        "Too many failed attempts, try again later.",
        wait,
    ))
}

/// The client IP: the socket peer, or the configured proxy header (rightmost entry unless
/// `useLeftmostIP`). `header` looks a request header up by name.
pub fn client_ip<'h>(
    policy: &Policy,
    header: impl Fn(&str) -> Option<&'h str>,
    peer: IpAddr,
) -> IpAddr {
    for h in &policy.proxy_headers {
        if let Some(v) = header(h.as_str()) {
            let mut list = v.split(',').map(str::trim).filter(|s| !s.is_empty());
            let pick = if policy.use_leftmost_ip {
                list.next()
            } else {
                list.next_back()
            };
            if let Some(ip) = pick.and_then(|s| s.parse::<IpAddr>().ok()) {
                return ip;
            }
        }
    }
    peer
}

/// The network a client address stands for in per-client keys: an IPv4 address itself, an IPv6
/// address's /64 (one subscriber's usual allocation, so rotating addresses within it does not help).
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

pub fn too_many(wait: Duration) -> ServiceError {
    ServiceError(Error::too_many("Too Many Requests.", wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_match_addresses_and_prefixes() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Net::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(Net::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Net::parse("1.2.3.4/33").is_none());
        assert!(Net::parse("nope").is_none());
        assert!(Net::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn rules_pick_the_most_specific_label() {
        let r = |l: &str, aud: &str| Rule {
            label: l.into(),
            max_requests: 1,
            duration_secs: 1,
            audience: aud.into(),
        };
        let rules = vec![
            r("/api/", ""),
            r("POST /api/collections/", ""),
            r("*:auth", ""),
            r("users:list", "@guest"),
        ];
        let t = Some(("users", Action::List));
        assert_eq!(
            pick_rule(
                &rules,
                "GET",
                "/api/collections/users/records",
                t,
                None,
                false
            )
            .unwrap()
            .label,
            "users:list"
        );
        assert_eq!(
            pick_rule(
                &rules,
                "GET",
                "/api/collections/users/records",
                t,
                None,
                true
            )
            .unwrap()
            .label,
            "/api/"
        );
        let t = Some(("users", Action::SignIn(SignInMethod::Password)));
        assert_eq!(
            pick_rule(
                &rules,
                "POST",
                "/api/collections/users/auth-with-password",
                t,
                None,
                false
            )
            .unwrap()
            .label,
            "*:auth"
        );
        let t = Some(("posts", Action::Create));
        assert_eq!(
            pick_rule(
                &rules,
                "POST",
                "/api/collections/posts/records",
                t,
                None,
                false
            )
            .unwrap()
            .label,
            "POST /api/collections/"
        );
        assert!(valid_label("users:authWithPassword"));
        assert!(valid_label("GET /api/health"));
        assert!(valid_label("users"));
        assert!(!valid_label("bogus label!"));
        assert!(!valid_label("http://x"));
    }

    #[test]
    fn lockout_grows_and_clears() {
        let l = Lockout::default();
        for _ in 0..4 {
            l.fail("k", "1.1.1.1");
            assert!(l.check("k", "1.1.1.1").is_ok());
        }
        l.fail("k", "1.1.1.1");
        let w1 = l.check("k", "1.1.1.1").unwrap_err();
        assert!(w1 > Duration::from_millis(1500) && w1 <= Duration::from_secs(2));
        l.fail("k", "1.1.1.1");
        let w2 = l.check("k", "1.1.1.1").unwrap_err();
        assert!(w2 > Duration::from_secs(3));
        assert!(l.check("other", "1.1.1.1").is_ok());
        assert!(
            l.check("k", "2.2.2.2").is_ok(),
            "another network is not locked"
        );
        l.success("k", "1.1.1.1");
        assert!(l.check("k", "1.1.1.1").is_ok());
    }

    #[test]
    fn distributed_guessing_is_slowed_but_the_owner_gets_through() {
        let l = Lockout::default();
        l.success("k", "9.9.9.9");
        for n in 0..IDENTITY_SLOW_AFTER {
            let net = format!("10.0.0.{n}");
            assert!(l.check("k", &net).is_ok());
            l.fail("k", &net);
        }
        // Slowed: unknown networks share one attempt per IDENTITY_SLOW_EVERY.
        assert!(l.check("k", "10.0.1.1").is_ok());
        assert!(l.check("k", "10.0.1.2").is_err());
        assert!(l.check("k", "10.0.1.3").is_err());
        // The network the owner signed in from before is not slowed.
        assert!(l.check("k", "9.9.9.9").is_ok());
        assert!(l.check("k", "9.9.9.9").is_ok());
        assert!(l.check("other", "10.0.1.2").is_ok());
    }

    #[test]
    fn local_rates_refuse_past_the_burst() {
        let r = LocalRates::default();
        for _ in 0..3 {
            assert!(r.hit("b", "ip", 3, Duration::from_secs(30)).is_ok());
        }
        let wait = r.hit("b", "ip", 3, Duration::from_secs(30)).unwrap_err();
        assert!(wait > Duration::from_secs(5) && wait <= Duration::from_secs(10));
        assert!(r.hit("b", "other-ip", 3, Duration::from_secs(30)).is_ok());
    }
}
