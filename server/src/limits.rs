//! Request rate limits (`[limits]`): token buckets per client IP and per tenant on `/notify`, per
//! tenant on `/v1`, per admin token on `/admin/api`, and the sample of unverified notifications
//! that is still recorded.
//!
//! Buckets live in this process: two instances each allow the configured rate. Idle keys are
//! dropped every [`SWEEP_EVERY`] checks, so a flood of distinct IPs cannot grow memory without
//! bound.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsSection;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 4096;

/// One keyed token bucket, or none when its rate is 0.
struct Bucket<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Bucket<K> {
    fn new(quota: Option<Quota>) -> Self {
        Bucket {
            limiter: quota.map(RateLimiter::keyed),
            checks: AtomicU64::new(0),
        }
    }

    /// Take one token for `key`; `true` when it was there (or there is no limit).
    fn take(&self, key: &K) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(key).is_ok()
    }
}

/// A quota of `per_second` with a burst of `burst_seconds` of it; `None` for 0.
fn per_second(per_second: u32, burst_seconds: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(burst_seconds.max(1))).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// Every limit of the server.
pub struct Limits {
    trusted_proxies: Vec<ipnet::IpNet>,
    notify_ip: Bucket<IpAddr>,
    notify_tenant: Bucket<String>,
    api_tenant: Bucket<String>,
    admin_token: Bucket<String>,
    unverified: Bucket<(String, String)>,
}

impl Limits {
    /// The limits of `[limits]`; an entry of `trusted_proxies` that is no address or range is an
    /// error that names it.
    pub fn new(c: &LimitsSection) -> Result<Self, String> {
        let burst = c.burst_seconds;
        let trusted_proxies = c
            .trusted_proxies
            .iter()
            .map(|entry| {
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!(
                            "[limits] trusted_proxies: {entry:?} is not an IP address or a CIDR range such as 10.0.0.0/8"
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Limits {
            trusted_proxies,
            notify_ip: Bucket::new(per_second(c.notify_per_ip_per_second, burst)),
            notify_tenant: Bucket::new(per_second(c.notify_per_tenant_per_second, burst)),
            api_tenant: Bucket::new(per_second(c.api_per_tenant_per_second, burst)),
            admin_token: Bucket::new(per_second(c.admin_per_token_per_second, burst)),
            unverified: Bucket::new(
                NonZeroU32::new(c.unverified_attempts_recorded_per_minute).map(Quota::per_minute),
            ),
        })
    }

    /// The client a request is counted under: the TCP peer, or, when the peer is a trusted
    /// proxy, the nearest `X-Forwarded-For` hop that is not one (`forwarded`: the header's
    /// values, in order).
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded: impl Iterator<Item = &'a str>,
    ) -> Option<IpAddr> {
        let peer = peer?;
        let trusted = |ip: &IpAddr| self.trusted_proxies.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return Some(peer);
        }
        let hops: Vec<&str> = forwarded
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if trusted(&ip) => continue,
                Ok(ip) => return Some(ip),
                // A hop that is no address: stop at the last one known.
                Err(_) => return Some(peer),
            }
        }
        Some(peer)
    }

    /// Whether a notification from `ip` to `tenant` may be handled now. Both buckets are charged.
    pub fn notify(&self, ip: Option<IpAddr>, tenant: &str) -> bool {
        let ip_ok = ip.is_none_or(|ip| self.notify_ip.take(&ip));
        ip_ok && self.notify_tenant.take(&tenant.to_owned())
    }

    /// Whether a merchant API request of `tenant` may be handled now.
    pub fn api(&self, tenant: &str) -> bool {
        self.api_tenant.take(&tenant.to_owned())
    }

    /// Whether an admin API request with this token (its `actor`) may be handled now.
    pub fn admin(&self, actor: &str) -> bool {
        self.admin_token.take(&actor.to_owned())
    }

    /// Whether a notification refused before its signature verified is still recorded as an
    /// attempt row. A limit of 0 records none.
    pub fn record_unverified(&self, tenant: &str, kind: &str) -> bool {
        self.unverified.limiter.is_some()
            && self.unverified.take(&(tenant.to_owned(), kind.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32) -> Limits {
        Limits::new(&LimitsSection {
            trusted_proxies: vec!["10.0.0.0/8".into(), "192.168.1.1".into()],
            notify_per_ip_per_second: rate,
            notify_per_tenant_per_second: rate * 2,
            api_per_tenant_per_second: rate,
            admin_per_token_per_second: rate,
            burst_seconds: 1,
            unverified_attempts_recorded_per_minute: 3,
        })
        .expect("valid")
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let l = limits(5);
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        // An untrusted peer: its header is ignored, whatever it claims.
        assert_eq!(
            l.client_ip(ip("203.0.113.9"), ["198.51.100.1"].into_iter()),
            ip("203.0.113.9")
        );
        // A trusted proxy: the nearest untrusted hop, skipping trusted ones.
        assert_eq!(
            l.client_ip(
                ip("10.1.2.3"),
                ["198.51.100.1, 203.0.113.7", "192.168.1.1"].into_iter()
            ),
            ip("203.0.113.7")
        );
        // Nothing usable: the peer.
        assert_eq!(
            l.client_ip(ip("10.1.2.3"), ["garbage"].into_iter()),
            ip("10.1.2.3")
        );
        assert_eq!(
            l.client_ip(ip("10.1.2.3"), std::iter::empty()),
            ip("10.1.2.3")
        );
        let bad = Limits::new(&LimitsSection {
            trusted_proxies: vec!["10.0.0.0/33".into()],
            ..LimitsSection::default()
        });
        assert!(bad.err().is_some_and(|e| e.contains("10.0.0.0/33")));
    }

    #[test]
    fn a_bucket_empties_per_key_and_a_zero_rate_is_no_limit() {
        let l = limits(5);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let allowed = (0..20).filter(|_| l.notify(Some(ip), "t")).count();
        assert_eq!(allowed, 5, "the burst of one IP");
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!((0..20).filter(|_| l.notify(Some(other), "t")).count(), 5);
        // The tenant's bucket (10) is now empty too, whatever the IP.
        let third: IpAddr = [10, 0, 0, 3].into();
        assert!(!l.notify(Some(third), "t"));
        assert!(l.notify(Some(third), "u"));

        assert_eq!((0..20).filter(|_| l.api("t")).count(), 5);
        let off = limits(0);
        assert!((0..10_000).all(|_| off.api("t") && off.notify(Some(ip), "t")));
    }

    #[test]
    fn unverified_attempts_are_sampled_per_tenant_and_provider() {
        let l = limits(5);
        assert_eq!(
            (0..100).filter(|_| l.record_unverified("t", "k")).count(),
            3
        );
        assert!(l.record_unverified("t", "other"));
        let none = Limits::new(&LimitsSection {
            unverified_attempts_recorded_per_minute: 0,
            ..LimitsSection::default()
        })
        .expect("valid");
        assert!(!none.record_unverified("t", "k"));
    }
}
