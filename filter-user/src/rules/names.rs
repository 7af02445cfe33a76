//! Built-in names: services (ports), IP protocols, ICMP and ICMPv6 types; and the
//! number syntax shared by every numeric field.

/// IP protocol number of ICMP.
pub(super) const ICMP: u8 = 1;
/// IP protocol number of TCP.
pub(super) const TCP: u8 = 6;
/// IP protocol number of UDP.
pub(super) const UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub(super) const ICMP6: u8 = 58;
/// IP protocol number of SCTP.
pub(super) const SCTP: u8 = 132;

/// Service names accepted for ports. Deliberately small and fixed: reading
/// /etc/services would make a ruleset mean different things on different hosts.
const SERVICES: &[(&str, u16)] = &[
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("http", 80),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("syslog", 514),
    ("submission", 587),
    // Further names of /etc/services that pf.conf files use.
    ("ftp-data", 20),
    ("www", 80),
    ("tftp", 69),
    ("finger", 79),
    ("kerberos", 88),
    ("auth", 113),
    ("nntp", 119),
    ("netbios-ns", 137),
    ("netbios-dgm", 138),
    ("netbios-ssn", 139),
    ("microsoft-ds", 445),
    ("isakmp", 500),
    ("ipsec-nat-t", 4500),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("rsync", 873),
    ("ldaps", 636),
    ("sip", 5060),
    ("rdp", 3389),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("http-alt", 8080),
];

const PROTOCOLS: &[(&str, u8)] =
    &[("tcp", TCP), ("udp", UDP), ("icmp", ICMP), ("icmp6", ICMP6), ("ipv6-icmp", ICMP6), ("sctp", SCTP)];

/// ICMP (v4) type names, as pf spells them plus the long forms.
const ICMP_TYPES: &[(&str, u8)] = &[
    ("echorep", 0),
    ("echo-reply", 0),
    ("unreach", 3),
    ("squench", 4),
    ("redir", 5),
    ("echoreq", 8),
    ("echo-request", 8),
    ("routeradv", 9),
    ("routersol", 10),
    ("timex", 11),
    ("paramprob", 12),
    ("timereq", 13),
    ("timerep", 14),
    ("althost", 6),
    ("inforeq", 15),
    ("inforep", 16),
    ("maskreq", 17),
    ("maskrep", 18),
    ("trace", 30),
];

/// ICMPv6 type names.
const ICMP6_TYPES: &[(&str, u8)] = &[
    ("unreach", 1),
    ("toobig", 2),
    ("timex", 3),
    ("paramprob", 4),
    ("echoreq", 128),
    ("echo-request", 128),
    ("echorep", 129),
    ("echo-reply", 129),
    ("routersol", 133),
    ("routeradv", 134),
    ("neighbrsol", 135),
    ("neighbradv", 136),
    ("redir", 137),
    // Multicast listener discovery, under both of pfctl's names.
    ("listqry", 130),
    ("groupqry", 130),
    ("listenrep", 131),
    ("grouprep", 131),
    ("listendone", 132),
    ("groupterm", 132),
    ("routrrenum", 138),
];

fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    table.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The port of a service name (`ssh` → 22).
pub(super) fn service_port(name: &str) -> Option<u16> {
    lookup(SERVICES, name)
}

/// The IP protocol number of a protocol name (`tcp` → 6).
pub(super) fn protocol(name: &str) -> Option<u8> {
    lookup(PROTOCOLS, name)
}

/// The type number of an ICMP (`v6 == false`) or ICMPv6 type name.
pub(super) fn icmp_type(name: &str, v6: bool) -> Option<u8> {
    lookup(if v6 { ICMP6_TYPES } else { ICMP_TYPES }, name)
}

/// A decimal number made of ASCII digits only (no sign, no spaces). Values too large
/// for u64 come back as `u64::MAX` so that the caller reports them as out of range
/// rather than as "not a number".
pub(super) fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

/// All service names, for "did you mean" hints.
pub(super) fn service_names() -> impl Iterator<Item = &'static str> {
    SERVICES.iter().map(|(n, _)| *n)
}

/// All protocol names, for "did you mean" hints.
pub(super) fn protocol_names() -> impl Iterator<Item = &'static str> {
    PROTOCOLS.iter().map(|(n, _)| *n)
}

/// All ICMP (`v6 == false`) or ICMPv6 type names, for "did you mean" hints.
pub(super) fn icmp_type_names(v6: bool) -> impl Iterator<Item = &'static str> {
    (if v6 { ICMP6_TYPES } else { ICMP_TYPES }).iter().map(|(n, _)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(service_port("https"), Some(443));
        assert_eq!(service_port("bootpc"), Some(68));
        assert_eq!(service_port("nope"), None);
        assert_eq!(protocol("ipv6-icmp"), Some(58));
        assert_eq!(icmp_type("echo-request", false), Some(8));
        assert_eq!(icmp_type("echo-request", true), Some(128));
        assert_eq!(icmp_type("toobig", false), None);
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("99999999999999999999999"), Some(u64::MAX));
        assert_eq!(number("-1"), None);
        assert_eq!(number("+1"), None);
        assert_eq!(number(""), None);
    }
}
