//! The `Host` check of a token-less intake on a loopback address, against
//! DNS rebinding: a page in a local browser, served from a name the
//! attacker later points at 127.0.0.1, could otherwise post events. Such a
//! page's requests carry the attacker's name in `Host`; only names of this
//! machine's loopback interface are accepted. Pure; no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The `Host` values a loopback intake without a token accepts:
/// `127.0.0.1`, `localhost`, `[::1]` and the address it listens on, each
/// with or without a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LoopbackHosts {
    /// The (loopback) address the intake listens on.
    pub listen: IpAddr,
}

impl LoopbackHosts {
    /// Whether a request with this `Host` header (None: without one) is
    /// accepted. A request without `Host` is not: every browser sends one.
    pub fn allow(&self, host: Option<&str>) -> bool {
        let Some((name, port)) = host.and_then(split_host) else {
            return false;
        };
        if port.is_some_and(|port| port.is_empty() || port.parse::<u16>().is_err()) {
            return false;
        }
        if let Some(inside) = name
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            return inside
                .parse::<Ipv6Addr>()
                .is_ok_and(|ip| ip == Ipv6Addr::LOCALHOST || IpAddr::V6(ip) == self.listen);
        }
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        name.parse::<Ipv4Addr>()
            .is_ok_and(|ip| ip == Ipv4Addr::LOCALHOST || IpAddr::V4(ip) == self.listen)
    }
}

/// `name[:port]` or `[v6]:port` apart; None when a bare IPv6 address (more
/// than one `:` outside brackets) or other garbage makes it ambiguous.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        return match rest {
            "" => Some((name, None)),
            _ => Some((name, Some(rest.strip_prefix(':')?))),
        };
    }
    match host.split_once(':') {
        Some((name, port)) if !port.contains(':') => Some((name, Some(port))),
        Some(_) => None,
        None => Some((host, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str) -> LoopbackHosts {
        LoopbackHosts {
            listen: listen.parse().expect("an address"),
        }
    }

    #[test]
    fn loopback_names_with_or_without_a_port_are_accepted() {
        let check = hosts("127.0.0.1");
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LocalHost:5000",
            "[::1]",
            "[::1]:8080",
            "[0:0:0:0:0:0:0:1]:1",
        ] {
            assert!(check.allow(Some(host)), "{host:?}");
        }
        assert!(hosts("127.0.0.2").allow(Some("127.0.0.2:9000")));
    }

    #[test]
    fn other_names_and_garbage_are_refused() {
        let check = hosts("127.0.0.1");
        for host in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "localhost.",
            "127.0.0.1.nip.io",
            "127.0.0.2",
            "10.0.0.1:80",
            "::1",
            "[::1",
            "[::1]x",
            "[::2]:80",
            "127.0.0.1:",
            "127.0.0.1:http",
            "127.0.0.1:99999",
            "localhost:80:80",
            "",
        ] {
            assert!(!check.allow(Some(host)), "{host:?}");
        }
        assert!(!check.allow(None));
    }
}
