//! Who a request comes from, as rate limiting sees it.
//!
//! The address is the socket's peer, unless that peer is one of the operator's trusted proxies
//! (a TLS terminator, a load balancer): then it is the right-most address of `X-Forwarded-For`
//! that is not a trusted proxy. Entries further left were written by the client itself and
//! prove nothing. IPv6 clients are grouped by their /64, the block one subscriber gets, so that
//! a client cannot escape its limit by counting through its own addresses.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv6Net};

/// The client's address: `socket` itself, or behind trusted proxies the nearest untrusted
/// address in the `X-Forwarded-For` headers (`forwarded_for`, in the order they came).
pub fn client_address(socket: IpAddr, forwarded_for: &[&str], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let hops = forwarded_for
        .iter()
        .flat_map(|header| header.split(','))
        .map(str::trim)
        .rev();
    let mut client = unmapped(socket);
    for hop in hops {
        if !is_trusted(&client) {
            break;
        }
        match hop.parse::<IpAddr>() {
            Ok(ip) => client = unmapped(ip),
            // Garbage behind a trusted proxy: the proxy is all that is known.
            Err(_) => break,
        }
    }
    client
}

/// The key rate limits count under: an IPv4 address, or an IPv6 /64.
pub fn rate_limit_key(client: IpAddr) -> String {
    match unmapped(client) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => Ipv6Net::new(v6, 64)
            .expect("64 is a valid prefix length")
            .trunc()
            .to_string(),
    }
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`) is the IPv4 address.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_forwarded_address_is_the_client() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // No proxy trusted: the socket, whatever the header claims.
        assert_eq!(
            client_address(ip("10.1.1.1"), &["203.0.113.9"], &[]),
            ip("10.1.1.1")
        );
        // One trusted hop.
        assert_eq!(
            client_address(ip("10.1.1.1"), &["203.0.113.9"], &proxies),
            ip("203.0.113.9")
        );
        // A client's own spoofed entries stay to the left of what the proxies saw.
        assert_eq!(
            client_address(
                ip("10.1.1.1"),
                &["1.2.3.4, 203.0.113.9", "10.2.2.2"],
                &proxies
            ),
            ip("203.0.113.9")
        );
        // A direct client cannot pretend to be behind the proxy.
        assert_eq!(
            client_address(ip("198.51.100.7"), &["203.0.113.9"], &proxies),
            ip("198.51.100.7")
        );
        // Garbage or nothing behind the proxy: the proxy itself.
        assert_eq!(
            client_address(ip("10.1.1.1"), &["not an address"], &proxies),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_address(ip("10.1.1.1"), &[], &proxies),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_address(ip("::ffff:10.1.1.1"), &["203.0.113.9"], &proxies),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(rate_limit_key(ip("192.0.2.1")), "192.0.2.1");
        assert_eq!(rate_limit_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(
            rate_limit_key(ip("2001:db8:1:2:aaaa::1")),
            rate_limit_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_eq!(rate_limit_key(ip("2001:db8:1:2::5")), "2001:db8:1:2::/64");
        assert_ne!(
            rate_limit_key(ip("2001:db8:1:2::5")),
            rate_limit_key(ip("2001:db8:1:3::5"))
        );
    }
}
