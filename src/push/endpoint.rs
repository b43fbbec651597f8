//! Which push endpoints the server will send to. An endpoint URL comes
//! from a browser, so from anyone with an account: without these checks a
//! user could make the server POST to its own database port or to a
//! cloud's metadata address (server-side request forgery).
//!
//! Two gates. [`check`] refuses, before anything is stored, what can never
//! be a push service: another scheme than `https` (`http` too with
//! `--push-allow-insecure`), user info, a URL past [`MAX_PUSH_ENDPOINT`],
//! an address literal or a `localhost` name that is not public. A host
//! name may resolve anywhere, and differently later, so the sending
//! thread's resolver lets a connection go only to the addresses
//! [`address_allowed`] passes (`sender.rs`), and redirects are never
//! followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ureq::http::Uri;

use crate::config::MAX_PUSH_ENDPOINT;

/// An endpoint the server may send to, and why one is refused.
pub fn check(endpoint: &str, allow_insecure: bool) -> Result<Uri, &'static str> {
    if endpoint.len() > MAX_PUSH_ENDPOINT {
        return Err("endpoint is too long");
    }
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| "endpoint must be an absolute URL")?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_insecure => {}
        _ => return Err("endpoint must be an https:// URL"),
    }
    let authority = uri.authority().ok_or("endpoint must name a host")?;
    if authority.as_str().contains('@') {
        return Err("endpoint must not carry user information");
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("endpoint must name a host");
    }
    let allowed = match host.parse::<IpAddr>() {
        Ok(ip) => address_allowed(ip, allow_insecure),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            allow_insecure || !(name == "localhost" || name.ends_with(".localhost"))
        }
    };
    if !allowed {
        return Err("endpoint must be on a public address");
    }
    Ok(uri)
}

/// Whether a push may be sent to `ip`: a public address, or also loopback
/// with `--push-allow-insecure` (a local push service in tests).
pub fn address_allowed(ip: IpAddr, allow_insecure: bool) -> bool {
    is_public(ip) || (allow_insecure && ip.to_canonical().is_loopback())
}

/// An address on the public internet: none of the ranges IANA sets aside
/// for private networks, loopback, link-local, shared (carrier) address
/// space, documentation, benchmarking, multicast or future use. An IPv6
/// address that carries an IPv4 one (mapped, NAT64) is judged by it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        // NAT64: the IPv4 address in the last 32 bits.
        let [.., hi, lo] = s;
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0..6] == [0; 6]) // IPv4-compatible and other reserved low addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Push services' own URLs pass; other schemes, user info, overlong
    /// URLs and what is not a URL are refused.
    #[test]
    fn accepts_push_services_and_refuses_the_rest() {
        for ok in [
            "https://fcm.googleapis.com/fcm/send/abc:def",
            "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
            "https://web.push.apple.com/QGuQyavXutnMH:8443/x",
            "https://8.8.8.8/x",
            "https://[2606:4700::1111]/x",
        ] {
            assert!(check(ok, false).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://push.example.com/x", "https://"),
            ("ftp://push.example.com/x", "https://"),
            ("/relative", "https://"),
            ("https://user:pw@push.example.com/x", "user information"),
            ("not a url at all", "URL"),
        ] {
            let e = check(bad, false).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("https://push.example.com/{}", "a".repeat(MAX_PUSH_ENDPOINT));
        assert_eq!(check(&long, false).unwrap_err(), "endpoint is too long");
    }

    /// Private, loopback, link-local and metadata addresses are refused as
    /// literals and by name; `--push-allow-insecure` opens `http` and
    /// loopback only, never the private ranges.
    #[test]
    fn refuses_private_addresses_unless_insecure_allows_loopback() {
        for bad in [
            "https://127.0.0.1/x",
            "https://localhost:8443/x",
            "https://api.LOCALHOST./x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://[64:ff9b::a00:1]/x",
        ] {
            assert_eq!(
                check(bad, false).unwrap_err(),
                "endpoint must be on a public address",
                "{bad}"
            );
        }
        assert!(check("http://127.0.0.1:9/push", true).is_ok());
        assert!(check("http://localhost:9/push", true).is_ok());
        assert!(check("http://[::1]:9/push", true).is_ok());
        assert!(
            check("https://10.1.2.3/x", true).is_err(),
            "private stays closed"
        );
        assert!(address_allowed("127.0.0.1".parse().unwrap(), true));
        assert!(!address_allowed("127.0.0.1".parse().unwrap(), false));
        assert!(!address_allowed("192.168.0.1".parse().unwrap(), true));
        assert!(address_allowed("1.1.1.1".parse().unwrap(), false));
    }
}
