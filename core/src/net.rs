//! Which network targets the gateway may send to on a tenant's behalf. A `webhook_url` that
//! points into the platform's own network (loopback, private ranges, link-local with the cloud
//! metadata address, multicast) would turn the webhook worker into a request forger there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` is not a public unicast address, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => non_public_v4(v4),
            None => non_public_v6(v6),
        },
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("a private range")
    } else if ip.is_link_local() {
        Some("link-local (the cloud metadata address among them)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared address space (carrier-grade NAT)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking range")
    } else if a >= 240 {
        Some("a reserved range")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a unique local range")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.to_ipv4().is_some_and(|v4| non_public_v4(v4).is_some()) {
        // IPv4-compatible (deprecated) forms of a non-public IPv4 address.
        Some("an IPv4-compatible form of a non-public address")
    } else {
        None
    }
}

/// What is wrong with `url` as a target outside the platform, judged without DNS: an IP literal
/// that is not public, or a name that always means this machine. Names are checked again, after
/// resolution, when a request is sent.
pub fn url_target_problem(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        url::Host::Ipv4(v4) => non_public(IpAddr::V4(v4)).map(|why| format!("{v4} is {why}")),
        url::Host::Ipv6(v6) => non_public(IpAddr::V6(v6)).map(|why| format!("{v6} is {why}")),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost"))
                .then(|| format!("{name} is this machine"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_multicast_are_refused() {
        for url in [
            "http://127.0.0.1/hook",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://localhost:8080/",
            "http://api.localhost/",
        ] {
            assert!(url_target_problem(url).is_some(), "{url}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for url in [
            "https://merchant.example.com/hooks",
            "https://93.184.216.34/",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/",
            "http://8.8.8.8:8443/x",
        ] {
            assert_eq!(url_target_problem(url), None, "{url}");
        }
    }
}
