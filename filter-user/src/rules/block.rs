//! How a `block` rule refuses a packet, as pf writes it right after `block`:
//!
//! ```text
//! block drop ...                      no answer
//! block return ...                    TCP: an RST; others: ICMP/ICMPv6 port unreachable
//! block return-rst ...                TCP: an RST; others: dropped
//! block return-icmp ...               ICMP/ICMPv6 port unreachable, to TCP too
//! block return-icmp6 ...              the same (pf's spelling for IPv6)
//! block return-icmp(CODE) ...         ICMP with that unreachable code (IPv6: port unreachable)
//! block return-icmp6(CODE) ...        ICMPv6 with that code (IPv4: port unreachable)
//! block return-icmp(CODE, CODE6) ...  both
//! set block-policy drop|return        what a plain `block` does (default: drop)
//! ```
//!
//! Codes are numbers 0-255 or pf's names of destination-unreachable codes (`port-unr`,
//! `host-unr`, `filter-prohib`, ...; for ICMPv6 `admin-unr`, `addr-unr`, `port-unr`, ...).

use filter_common::wire::{ICMP_UNREACH_PORT, ICMP6_DST_UNREACH_NOPORT};

use super::ast::{BlockMode, BlockPolicy};
use super::cursor::Cursor;
use super::error::{RulesError, clip};
use super::lexer::Kind;

/// ICMP destination-unreachable codes by pf's names.
const ICMP_CODES: &[(&str, u8)] = &[
    ("net-unr", 0),
    ("host-unr", 1),
    ("proto-unr", 2),
    ("port-unr", 3),
    ("needfrag", 4),
    ("srcfail", 5),
    ("net-unk", 6),
    ("host-unk", 7),
    ("isolate", 8),
    ("net-prohib", 9),
    ("host-prohib", 10),
    ("net-tos", 11),
    ("host-tos", 12),
    ("filter-prohib", 13),
    ("host-preced", 14),
    ("cutoff-preced", 15),
];

/// ICMPv6 destination-unreachable codes by pf's names.
const ICMP6_CODES: &[(&str, u8)] =
    &[("noroute-unr", 0), ("admin-unr", 1), ("beyond-unr", 2), ("addr-unr", 3), ("port-unr", 4)];

/// The refusal after `block`, if the next word is one; the cursor is just past `block`.
pub(super) fn parse_mode(c: &mut Cursor<'_>) -> Result<Option<BlockMode>, RulesError> {
    let tok = c.peek();
    let Some(word) = c.word(tok) else { return Ok(None) };
    let mode = match word {
        "drop" => BlockMode::Drop,
        "return" => BlockMode::Return,
        "return-rst" => BlockMode::ReturnRst,
        "return-icmp" | "return-icmp6" => {
            BlockMode::ReturnIcmp { icmp: ICMP_UNREACH_PORT, icmp6: ICMP6_DST_UNREACH_NOPORT }
        }
        w if w.starts_with("return-icmp(") || w.starts_with("return-icmp6(") => {
            c.next();
            return codes(c, w, tok.pos).map(Some);
        }
        w if w.starts_with("return-rst(") => {
            return Err(c.err(tok.pos, "`return-rst (ttl N)` is not supported yet; write `return-rst`"));
        }
        _ => return Ok(None),
    };
    c.next();
    Ok(Some(mode))
}

/// `return-icmp(CODE)`, `return-icmp6(CODE)` or `return-icmp(CODE, CODE6)`: `word` is
/// the first word (up to a comma, if any), at `pos`.
fn codes(c: &mut Cursor<'_>, word: &str, pos: super::ast::Pos) -> Result<BlockMode, RulesError> {
    let v6_first = word.starts_with("return-icmp6(");
    let inner = &word[word.find('(').map_or(0, |i| i + 1)..];
    let expected = "a code like `port-unr` or a number 0-255, then `)`";
    let mut mode = BlockMode::ReturnIcmp { icmp: ICMP_UNREACH_PORT, icmp6: ICMP6_DST_UNREACH_NOPORT };
    let BlockMode::ReturnIcmp { icmp, icmp6 } = &mut mode else { unreachable!() };
    if let Some(first) = inner.strip_suffix(')') {
        let code = code(c, first, v6_first, pos)?;
        if v6_first {
            *icmp6 = code
        } else {
            *icmp = code
        }
        return Ok(mode);
    }
    // `return-icmp(CODE, CODE6)`: the comma splits it into three tokens.
    if v6_first || inner.is_empty() || c.peek().kind != Kind::Comma {
        return Err(c.err(pos, format!("bad `{}`: expected {expected}", clip(word))));
    }
    *icmp = code(c, inner, false, pos)?;
    c.next();
    let tok = c.next();
    let Some(second) = c.word(tok).and_then(|w| w.strip_suffix(')')) else {
        return Err(c.unexpected(tok, "an ICMPv6 code like `port-unr` or a number 0-255, then `)`"));
    };
    *icmp6 = code(c, second, true, tok.pos)?;
    Ok(mode)
}

/// One destination-unreachable code: a number or pf's name.
fn code(c: &Cursor<'_>, text: &str, v6: bool, pos: super::ast::Pos) -> Result<u8, RulesError> {
    let (table, family) = if v6 { (ICMP6_CODES, "ICMPv6") } else { (ICMP_CODES, "ICMP") };
    if let Ok(n) = text.parse::<u64>() {
        return u8::try_from(n).map_err(|_| c.err(pos, format!("{family} code {n} out of range 0-255")));
    }
    table.iter().find(|(name, _)| *name == text).map(|(_, code)| *code).ok_or_else(|| {
        let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
        c.err(
            pos,
            format!(
                "unknown {family} unreachable code `{}`; the codes are {} or a number 0-255",
                clip(text),
                names.join(", ")
            ),
        )
    })
}

/// `drop` or `return` after `set block-policy`.
pub(super) fn parse_policy(c: &mut Cursor<'_>) -> Result<BlockPolicy, RulesError> {
    let tok = c.next();
    let policy = match c.word(tok) {
        Some("drop") => BlockPolicy::Drop,
        Some("return") => BlockPolicy::Return,
        _ => return Err(c.unexpected_kw(tok, "`drop` or `return` after `set block-policy`", &["drop", "return"])),
    };
    c.expect_end("end of line after `set block-policy drop|return`")?;
    Ok(policy)
}

impl BlockMode {
    /// The refusal a rule gets under `policy`: its own, or for a plain `block` the
    /// block policy's (never [`BlockMode::Policy`]).
    pub fn under(self, policy: BlockPolicy) -> BlockMode {
        match (self, policy) {
            (BlockMode::Policy, BlockPolicy::Drop) => BlockMode::Drop,
            (BlockMode::Policy, BlockPolicy::Return) => BlockMode::Return,
            (mode, _) => mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::{BlockMode, BlockPolicy, parse_str};

    fn modes(src: &str) -> Vec<BlockMode> {
        let rs = parse_str(src, "t.conf", std::path::Path::new(".")).unwrap();
        rs.rules.iter().map(|r| r.block_mode.under(rs.options.block_policy)).collect()
    }

    fn err(src: &str) -> String {
        parse_str(src, "t.conf", std::path::Path::new(".")).unwrap_err().to_string()
    }

    const PORT_UNR: BlockMode = BlockMode::ReturnIcmp { icmp: 3, icmp6: 4 };

    #[test]
    fn block_modes_as_pf_writes_them() {
        let src = "block in\n\
                   block drop in\n\
                   block return in proto tcp\n\
                   block return-rst in proto tcp\n\
                   block return-icmp in\n\
                   block return-icmp6 in\n\
                   block return-icmp(host-unr) in\n\
                   block return-icmp6(admin-unr) in\n\
                   block return-icmp(13, 1) in\n\
                   block return-icmp(filter-prohib,port-unr) in\n";
        assert_eq!(
            modes(src),
            [
                BlockMode::Drop,
                BlockMode::Drop,
                BlockMode::Return,
                BlockMode::ReturnRst,
                PORT_UNR,
                PORT_UNR,
                BlockMode::ReturnIcmp { icmp: 1, icmp6: 4 },
                BlockMode::ReturnIcmp { icmp: 3, icmp6: 1 },
                BlockMode::ReturnIcmp { icmp: 13, icmp6: 1 },
                BlockMode::ReturnIcmp { icmp: 13, icmp6: 4 },
            ]
        );
    }

    #[test]
    fn block_policy_decides_plain_block_only() {
        let rs =
            parse_str("set block-policy return\nblock in\nblock drop in\npass in\n", "t.conf", ".".as_ref()).unwrap();
        assert_eq!(rs.options.block_policy, BlockPolicy::Return);
        assert_eq!(
            rs.rules.iter().map(|r| r.block_mode).collect::<Vec<_>>(),
            [BlockMode::Policy, BlockMode::Drop, BlockMode::Policy]
        );
        assert_eq!(rs.rules[0].block_mode.under(rs.options.block_policy), BlockMode::Return);
    }

    #[test]
    fn bad_block_modes_say_where_and_what() {
        assert_eq!(
            err("block return-icmp(nope) in\n"),
            "t.conf:1:7: unknown ICMP unreachable code `nope`; the codes are net-unr, host-unr, proto-unr, \
             port-unr, needfrag, srcfail, net-unk, host-unk, isolate, net-prohib, host-prohib, net-tos, \
             host-tos, filter-prohib, host-preced, cutoff-preced or a number 0-255"
        );
        assert_eq!(err("block return-icmp(300) in\n"), "t.conf:1:7: ICMP code 300 out of range 0-255");
        assert_eq!(
            err("block return-icmp(1, x) in\n"),
            "t.conf:1:22: unknown ICMPv6 unreachable code `x`; the codes are noroute-unr, admin-unr, \
             beyond-unr, addr-unr, port-unr or a number 0-255"
        );
        assert_eq!(
            err("block return-rst(ttl 5) in\n"),
            "t.conf:1:7: `return-rst (ttl N)` is not supported yet; write `return-rst`"
        );
        assert_eq!(
            err("set block-policy reject\n"),
            "t.conf:1:18: expected `drop` or `return` after `set block-policy`, found `reject`"
        );
    }
}
