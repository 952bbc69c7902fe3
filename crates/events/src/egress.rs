//! The outbound HTTP policy (`[egress]`): webhooks and OAuth2/OIDC requests go to public addresses
//! only, unless an allow-list lets a network through.
//!
//! **Invariant:** a request made with [`Egress::client`] connects only to an address [`Egress`]
//! allows: host names are resolved by [`Egress`]'s own resolver, which drops forbidden addresses,
//! so the check is on the very address connected to (a name that re-resolves to `127.0.0.1` after
//! the check, DNS rebinding, finds nothing to connect to); IP-literal URLs, which skip resolution,
//! are checked by [`Egress::check_url`], which every caller runs first. Redirects are not followed.
//! S3 (object_store's own client) is not under this policy: storage commonly lives on a private
//! network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use basalt_core::net::Net;

/// `[egress]`: the networks outbound requests may reach although they are internal.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Networks (`10.0.0.0/8`, `127.0.0.1`, `::1`) allowed despite being loopback, private,
    /// link-local or otherwise internal.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Whether `ip` is an address a public request has no business reaching: loopback, unspecified,
/// private (RFC 1918, unique-local), shared (CGNAT), link-local (which holds the cloud metadata
/// service, 169.254.169.254), multicast, broadcast, documentation and reserved ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
        }
    }
}

struct Policy {
    allow: Vec<Net>,
}

impl Policy {
    fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allow.iter().any(|n| n.contains(ip))
    }
}

/// Resolves host names for the guarded client, keeping only addresses the policy permits.
struct Resolver(Arc<Policy>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if ok.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = if all.is_empty() {
                    format!("{host} does not resolve").into()
                } else {
                    format!(
                        "egress policy: {host} resolves only to internal addresses \
                         (allow them in [egress] allow)"
                    )
                    .into()
                };
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(ok.into_iter());
            Ok(addrs)
        })
    }
}

/// The outbound policy and an HTTP client bound to it.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<Policy>,
    client: reqwest::Client,
}

impl Egress {
    /// A client that follows no redirects, with `user_agent` and an overall `timeout`. Invalid
    /// allow-list entries are an error naming them.
    pub fn new(cfg: &EgressConfig, user_agent: &str, timeout: Duration) -> Result<Egress, String> {
        let mut allow = Vec::new();
        for a in &cfg.allow {
            allow.push(
                Net::parse(a).ok_or_else(|| format!("[egress] allow: {a:?} is not a network"))?,
            );
        }
        Self::bound(Arc::new(Policy { allow }), user_agent, timeout)
    }

    /// The same policy with another user agent and timeout.
    pub fn with(&self, user_agent: &str, timeout: Duration) -> Result<Egress, String> {
        Self::bound(self.policy.clone(), user_agent, timeout)
    }

    fn bound(policy: Arc<Policy>, user_agent: &str, timeout: Duration) -> Result<Egress, String> {
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .dns_resolver(Arc::new(Resolver(policy.clone())))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(Egress { policy, client })
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Refuses a URL that is not http(s) or whose host is an IP literal the policy forbids (names
    /// are checked when resolved). The message is fit for the caller.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let u = reqwest::Url::parse(url).map_err(|_| format!("{url:?} is not a valid URL"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{url:?} must be an http or https URL"));
        }
        let ip = match u.host() {
            Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
            Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err(format!("{url:?} has no host")),
        };
        if self.policy.permits(ip) {
            Ok(())
        } else {
            Err(format!(
                "egress policy: {ip} is an internal address (allow it in [egress] allow)"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "172.32.0.1"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn urls_with_internal_literals_are_refused_unless_allowed() {
        let e = Egress::new(&EgressConfig::default(), "t", Duration::from_secs(1)).unwrap();
        for u in [
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/x",
            "http://127.0.0.1/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert!(e.check_url(u).is_err(), "{u}");
        }
        assert!(e.check_url("https://example.com/hook").is_ok());
        assert!(e.check_url("https://8.8.8.8/").is_ok());
        assert!(e.check_url("file:///etc/passwd").is_err());
        let cfg = EgressConfig {
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
        };
        let e = Egress::new(&cfg, "t", Duration::from_secs(1)).unwrap();
        assert!(e.check_url("http://127.0.0.1:9000/").is_ok());
        assert!(e.check_url("http://[::1]/").is_ok());
        assert!(e.check_url("http://169.254.169.254/").is_err());
        assert!(Egress::new(
            &EgressConfig {
                allow: vec!["nope".into()]
            },
            "t",
            Duration::from_secs(1)
        )
        .is_err());
    }
}
