//! Addresses and prefixes, shared by rules, inline tables and table files.
//!
//! This is the hot path of million-line table files, so it slices the text instead of
//! allocating and builds messages only on failure.

use std::net::IpAddr;

use ipnet::IpNet;

use super::error::{brief, clip};

/// Whether a word is meant as an address: it starts with a digit or contains a colon.
/// Used to tell "bad address" apart from "a keyword where an address was expected", so
/// that `from frmo` and `from 10.0.0.0/33` get the message that fits.
pub(super) fn looks_like_address(word: &str) -> bool {
    word.as_bytes().first().is_some_and(u8::is_ascii_digit) || word.contains(':')
}

/// Parses `ADDR` or `ADDR/LEN`. An address alone is a full-length prefix. A prefix with
/// host bits set is refused: `10.1.2.3/8` is nearly always a typo, and silently
/// widening or narrowing it would change what the rule matches.
pub(super) fn parse_net(s: &str) -> Result<IpNet, String> {
    parse_net_quoting(s, clip)
}

/// [`parse_net`] for the lines of table files, which may be any file: messages quote
/// only a brief excerpt.
pub(super) fn parse_net_brief(s: &str) -> Result<IpNet, String> {
    parse_net_quoting(s, brief)
}

fn parse_net_quoting(s: &str, clip: fn(&str) -> std::borrow::Cow<'_, str>) -> Result<IpNet, String> {
    let quoted = || clip(s);
    let (addr_text, len_text) = match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        format!("bad address or prefix `{}`: `{}` is not an IPv4 or IPv6 address", quoted(), clip(addr_text))
    })?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len_text {
        None => max,
        Some(t) => match super::names::number(t) {
            Some(n) if n <= u64::from(max) => n as u8,
            Some(_) => {
                return Err(format!("bad address or prefix `{}`: prefix length {t} is more than {max}", quoted()));
            }
            None => {
                return Err(format!(
                    "bad address or prefix `{}`: prefix length `{}` is not a number",
                    quoted(),
                    clip(t)
                ));
            }
        },
    };
    let net = IpNet::new(addr, len).map_err(|e| format!("bad address or prefix `{}`: {e}", quoted()))?;
    let network = net.trunc();
    if network != net {
        return Err(format!("{} has host bits set; did you mean {network}?", clip(s)));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_prefixes() {
        assert_eq!(parse_net("192.0.2.10"), Ok("192.0.2.10/32".parse().unwrap()));
        assert_eq!(parse_net("10.0.0.0/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert_eq!(parse_net("2001:db8::/64"), Ok("2001:db8::/64".parse().unwrap()));
        assert_eq!(parse_net("::1"), Ok("::1/128".parse().unwrap()));
        assert_eq!(parse_net("0.0.0.0/0"), Ok("0.0.0.0/0".parse().unwrap()));
    }

    #[test]
    fn bad_addresses() {
        assert_eq!(
            parse_net("10.0.0.0/33"),
            Err("bad address or prefix `10.0.0.0/33`: prefix length 33 is more than 32".into())
        );
        assert_eq!(
            parse_net("2001:db8::/129"),
            Err("bad address or prefix `2001:db8::/129`: prefix length 129 is more than 128".into())
        );
        assert_eq!(
            parse_net("10.0.0.0/x"),
            Err("bad address or prefix `10.0.0.0/x`: prefix length `x` is not a number".into())
        );
        assert_eq!(
            parse_net("10.0.0.256"),
            Err("bad address or prefix `10.0.0.256`: `10.0.0.256` is not an IPv4 or IPv6 address".into())
        );
        assert_eq!(parse_net("10.1.2.3/8"), Err("10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?".into()));
        assert_eq!(
            parse_net("2001:db8::1/64"),
            Err("2001:db8::1/64 has host bits set; did you mean 2001:db8::/64?".into())
        );
    }

    #[test]
    fn long_junk_is_clipped_in_messages() {
        let junk = format!("1{}", "x".repeat(1000));
        assert_eq!(
            parse_net(&junk).unwrap_err(),
            format!("bad address or prefix `1{x}…`: `1{x}…` is not an IPv4 or IPv6 address", x = "x".repeat(43))
        );
    }

    #[test]
    fn table_file_lines_are_quoted_briefly() {
        assert_eq!(
            parse_net_brief("1:secret-secret-secret").unwrap_err(),
            "bad address or prefix `1:secret-secret-…`: `1:secret-secret-…` is not an IPv4 or IPv6 address"
        );
    }

    #[test]
    fn address_like_words() {
        assert!(looks_like_address("10.0.0.0/33"));
        assert!(looks_like_address("fe80::1"));
        assert!(!looks_like_address("frmo"));
        assert!(!looks_like_address("any"));
    }
}
