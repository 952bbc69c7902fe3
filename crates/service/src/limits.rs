//! Abuse protection: the client IP (behind trusted proxies), the protocol's `rateLimits` rules with a
//! built-in stricter limit on auth endpoints, the superuser IP allow-list, and progressive lockout per
//! identity after failed secrets.
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

/// An IPv4/IPv6 network (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Net { addr, prefix })
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

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

/// Progressive lockout per identity: after [`LOCKOUT_AFTER`] consecutive failures every attempt is
/// refused until the lock ends; the lock after the n-th failure lasts 2^(n-4) s (2 s, 4 s, 8 s, …),
/// at most [`LOCKOUT_MAX`]. A success clears the identity.
#[derive(Default)]
pub struct Lockout {
    state: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Lockout {
    /// `Err(wait)` while the identity is locked. Past a lock, one attempt at a time goes through:
    /// it holds a one-second provisional lock until its outcome (`fail` or `success`) is recorded.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match g.get_mut(key) {
            Some((_, until)) if *until > now => Err(*until - now),
            Some((n, until)) if *n >= LOCKOUT_AFTER => {
                *until = now + Duration::from_secs(1);
                Ok(())
            }
            _ => Ok(()),
        }
    }
    pub fn fail(&self, key: &str) {
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if g.len() > 100_000 {
            g.retain(|_, (_, until)| now.duration_since(*until) < Duration::from_secs(3600));
        }
        let e = g.entry(key.to_string()).or_insert((0, now));
        e.0 += 1;
        if e.0 >= LOCKOUT_AFTER {
            let exp = (e.0 - LOCKOUT_AFTER + 1).min(20);
            let lock = Duration::from_secs(1u64 << exp).min(LOCKOUT_MAX);
            e.1 = now + lock;
        }
    }
    pub fn success(&self, key: &str) {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
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
            l.fail("k");
            assert!(l.check("k").is_ok());
        }
        l.fail("k");
        let w1 = l.check("k").unwrap_err();
        assert!(w1 > Duration::from_millis(1500) && w1 <= Duration::from_secs(2));
        l.fail("k");
        let w2 = l.check("k").unwrap_err();
        assert!(w2 > Duration::from_secs(3));
        assert!(l.check("other").is_ok());
        l.success("k");
        assert!(l.check("k").is_ok());
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
