//! Who the client is when the server sits behind a reverse proxy.
//!
//! Every per-address limit keys on the client's address. Directly exposed,
//! that is the TCP peer. Behind nginx or the like, the peer is the proxy for
//! every client, so the client is taken from `X-Forwarded-For` instead — but
//! only on connections from a proxy the operator named (`--trust-proxy`):
//! anyone else can write that header too, and believing it would let one
//! client pose as many (or as someone else) to escape its limits.
//!
//! Of the header's list, the *last* entry is used: it is the one the trusted
//! proxy appended itself (nginx's `$proxy_add_x_forwarded_for`), while the
//! entries before it came from the client and prove nothing.

use std::net::IpAddr;

use super::request::Request;

/// The address the per-address limits count for a request that arrived from
/// TCP peer `peer`: the last `X-Forwarded-For` entry when `peer` is one of
/// `trusted`, else `peer` itself (also when the header is missing or its
/// last entry is not an IP address, so a misconfigured proxy degrades to
/// "every client is the proxy", never to a client-chosen address).
/// IPv4-mapped IPv6 addresses are IPv4, on both sides.
pub fn client_addr(peer: IpAddr, req: &Request<'_>, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    // Repeated headers are one list in order (RFC 9110 §5.3): the last
    // entry is in the last header line.
    let last = req
        .headers
        .iter()
        .rev()
        .find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.rsplit(',').next())
        .map(str::trim);
    last.and_then(parse_forwarded)
        .map_or(peer, |ip| ip.to_canonical())
}

/// One entry: a bare address (what nginx writes), or `[v6]` / `[v6]:port` /
/// `v4:port` (what some other proxies write).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse() {
        return Some(ip);
    }
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let (host, port) = entry.rsplit_once(':')?;
    port.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request;

    fn resolve(peer: &str, headers: &str, trusted: &[&str]) -> String {
        let raw = format!("GET / HTTP/1.1\r\n{headers}\r\n");
        let mut h = [httparse::EMPTY_HEADER; 8];
        let (req, _) = request::parse(raw.as_bytes(), &mut h).unwrap().unwrap();
        let trusted: Vec<IpAddr> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_addr(peer.parse().unwrap(), &req, &trusted).to_string()
    }

    /// From a trusted proxy the last `X-Forwarded-For` entry is the client,
    /// whatever the client put before it, across repeated header lines.
    #[test]
    fn trusted_proxy_names_the_client() {
        let xff = "X-Forwarded-For: 127.0.0.2\r\n";
        assert_eq!(resolve("127.0.0.1", xff, &["127.0.0.1"]), "127.0.0.2");
        let spoofed = "X-Forwarded-For: 10.9.9.9, 203.0.113.7\r\n";
        assert_eq!(resolve("127.0.0.1", spoofed, &["127.0.0.1"]), "203.0.113.7");
        let two = "x-forwarded-for: 10.9.9.9\r\nX-Forwarded-For: 198.51.100.4\r\n";
        assert_eq!(resolve("127.0.0.1", two, &["127.0.0.1"]), "198.51.100.4");
        let v6 = "X-Forwarded-For: 2001:db8::1\r\n";
        assert_eq!(resolve("::1", v6, &["::1"]), "2001:db8::1");
        let ported = "X-Forwarded-For: [2001:db8::2]:4711, 192.0.2.1:80\r\n";
        assert_eq!(resolve("10.0.0.1", ported, &["10.0.0.1"]), "192.0.2.1");
    }

    /// From any other peer the header is ignored; a trusted proxy that sent
    /// no usable entry is the client itself.
    #[test]
    fn untrusted_or_unusable_headers_are_ignored() {
        let xff = "X-Forwarded-For: 127.0.0.9\r\n";
        assert_eq!(resolve("127.0.0.3", xff, &["127.0.0.1"]), "127.0.0.3");
        assert_eq!(resolve("127.0.0.3", xff, &[]), "127.0.0.3");
        assert_eq!(resolve("127.0.0.1", "", &["127.0.0.1"]), "127.0.0.1");
        let junk = "X-Forwarded-For: 127.0.0.9, unknown\r\n";
        assert_eq!(resolve("127.0.0.1", junk, &["127.0.0.1"]), "127.0.0.1");
    }

    /// IPv4-mapped peers match IPv4 trust entries (a dual-stack listener).
    #[test]
    fn mapped_peers_are_ipv4() {
        let xff = "X-Forwarded-For: 127.0.0.2\r\n";
        assert_eq!(
            resolve("::ffff:127.0.0.1", xff, &["127.0.0.1"]),
            "127.0.0.2"
        );
        assert_eq!(resolve("::ffff:127.0.0.5", "", &[]), "127.0.0.5");
    }
}
