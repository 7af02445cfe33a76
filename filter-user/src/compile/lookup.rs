//! Address fields' prefixes -> the structures the XDP program searches (see
//! `filter_common::dir`): the cost of a lookup is bounded in memory accesses, not in
//! table size, because a flood of random sources misses every cache.
//!
//! The input is longest-prefix-match entries (`addr::AddrField::classify`): an address's
//! class is that of the longest entry containing it. Each structure keeps exactly that
//! meaning:
//! - IPv4 prefixes up to /24 are expanded into a DIR-16-8 array, shorter prefixes written
//!   first so that longer ones overwrite them;
//! - longer IPv4 prefixes go into the prefix hash, and their /24 gets a [`Long24`]: its
//!   own class and a bitmap of the addresses they cover, so that only those pay for the
//!   hash lookups;
//! - IPv6 lengths holding many prefixes go into the hash, the rest into a trie whose
//!   answer carries its length, so a hashed length is only tried when it is longer.

use std::collections::HashMap;
use std::net::IpAddr;

use filter_common::{
    FAMILY_V4, FAMILY_V6, Long24, MAX_ADDR_CLASS, PrefixKey, V4_HASHED_MIN_LEN, V6_HASHED_LENGTHS, dir,
};

/// An IPv6 length gets a hash lookup of its own only with at least this many prefixes:
/// below that, its prefixes stay in the trie, which is then small enough to stay cached.
pub const V6_HASH_MIN_PREFIXES: usize = 64;

/// A longest-prefix-match entry: address (left-aligned in 128 bits), length, class.
pub type LpmEntry = (u128, u8, u32);

/// Load-time configuration of one address field's lookup: which IPv6 prefix lengths
/// are hashed, so that the program looks up no other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrConfig {
    /// IPv6 lengths in the hash, one per byte from the lowest, longest first; a 0 byte
    /// ends the list.
    pub v6_lengths: u64,
}

/// One address field's lookup structures, as loaded into the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddrLookup {
    /// IPv4 up to /24: [`dir::TOP_ENTRIES`] first-level entries, then 256-entry groups.
    /// Empty when the field is unused.
    pub dir4: Vec<u32>,
    /// The /24s that hold longer prefixes (indexed from their group entries).
    pub long24: Vec<Long24>,
    /// Exact prefixes (IPv4 longer than /24, IPv6 at hashed lengths) -> class.
    pub prefixes: HashMap<PrefixKey, u32>,
    /// The other IPv6 prefixes, always with `::/0`: (address, length, class).
    pub trie6: Vec<([u8; 16], u8, u32)>,
    /// Which hashed lengths exist (a load-time constant of the program).
    pub config: AddrConfig,
    /// Longest-prefix-match entries the structures hold, per family (for summaries).
    pub v4_entries: usize,
    /// See `v4_entries`.
    pub v6_entries: usize,
}

impl AddrLookup {
    /// Builds the structures from both families' entries; each family must contain
    /// its /0 entry (the class of addresses no listed prefix contains).
    pub fn build(v4: Vec<LpmEntry>, v6: Vec<LpmEntry>) -> Self {
        let mut lookup = AddrLookup { v4_entries: v4.len(), v6_entries: v6.len(), ..Default::default() };
        lookup.build_v4(v4);
        lookup.build_v6(v6);
        lookup
    }

    fn build_v4(&mut self, mut entries: Vec<LpmEntry>) {
        // Shorter first, so that a longer prefix overwrites the ones containing it.
        entries.sort_unstable_by_key(|&(a, len, _)| (len, a));
        let mut dir4 = vec![0u32; dir::TOP_ENTRIES as usize];
        let mut group_of: HashMap<u32, u32> = HashMap::new();
        for (a, len, class) in entries {
            assert!(class <= MAX_ADDR_CLASS, "address class {class} out of range");
            let ip = (a >> 96) as u32;
            let len32 = u32::from(len);
            let top = (ip >> 16) as usize;
            if len32 <= 16 {
                let span = 1usize << (16 - len32);
                dir4[top..top + span].fill(class);
                continue;
            }
            // Every entry of a /16 is final by now (all of /0../16 came first).
            let group = *group_of.entry(ip >> 16).or_insert_with(|| {
                let g = ((dir4.len() - dir::TOP_ENTRIES as usize) / dir::GROUP_ENTRIES as usize) as u32;
                let inherited = dir4[top];
                dir4.extend(std::iter::repeat_n(inherited, dir::GROUP_ENTRIES as usize));
                dir4[top] = dir::GROUP | g;
                g
            });
            let base = (dir::TOP_ENTRIES + group * dir::GROUP_ENTRIES) as usize;
            let third = ((ip >> 8) & 0xff) as usize;
            if len32 <= 24 {
                let span = 1usize << (24 - len32);
                dir4[base + third..base + third + span].fill(class);
                continue;
            }
            // Every /24 entry is final by now (all of /0../24 came first).
            let entry = &mut dir4[base + third];
            if *entry & dir::LONGER == 0 {
                let index = self.long24.len() as u32;
                assert!(index <= MAX_ADDR_CLASS, "too many /24s with longer prefixes");
                self.long24.push(Long24 { class: *entry, lengths: 0, covered_class: class, _pad: 0, covered: [0; 4] });
                *entry = dir::LONGER | index;
            }
            let long = &mut self.long24[(*entry & !dir::LONGER) as usize];
            long.lengths |= 1 << (len32 - V4_HASHED_MIN_LEN);
            if long.covered_class != class {
                long.covered_class = Long24::MIXED;
            }
            let first = ip & 0xff;
            for host in first..first + (1 << (32 - len32)) {
                long.covered[(host / 64) as usize] |= 1 << (host % 64);
            }
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&ip.to_be_bytes());
            self.prefixes.insert(PrefixKey { addr, len, family: FAMILY_V4 as u8, _pad: [0; 2] }, class);
        }
        // An odd count would leave the last pair half outside the array.
        if !dir4.len().is_multiple_of(dir::PER_ELEMENT as usize) {
            dir4.push(0);
        }
        self.dir4 = dir4;
    }

    fn build_v6(&mut self, entries: Vec<LpmEntry>) {
        let mut per_len = [0usize; 129];
        for &(_, len, _) in &entries {
            per_len[len as usize] += 1;
        }
        // The most populated lengths (never /0: the trie always answers with its root).
        let mut hashed: Vec<u8> = (1..=128u8).filter(|&l| per_len[l as usize] >= V6_HASH_MIN_PREFIXES).collect();
        hashed.sort_by_key(|&l| std::cmp::Reverse(per_len[l as usize]));
        hashed.truncate(V6_HASHED_LENGTHS);
        hashed.sort_unstable_by(|a, b| b.cmp(a));
        for (i, &len) in hashed.iter().enumerate() {
            self.config.v6_lengths |= u64::from(len) << (8 * i);
        }
        let mut is_hashed = [false; 129];
        for &len in &hashed {
            is_hashed[len as usize] = true;
        }
        for (a, len, class) in entries {
            assert!(class <= MAX_ADDR_CLASS, "address class {class} out of range");
            let addr = a.to_be_bytes();
            if is_hashed[len as usize] {
                self.prefixes.insert(PrefixKey { addr, len, family: FAMILY_V6 as u8, _pad: [0; 2] }, class);
            } else {
                self.trie6.push((addr, len, class));
            }
        }
    }

    /// IPv6 prefixes in the hash (and so in the Bloom filter in front of it).
    pub fn v6_hashed_prefixes(&self) -> usize {
        self.prefixes.keys().filter(|k| u32::from(k.family) == FAMILY_V6).count()
    }

    /// Hashed IPv6 lengths, longest first.
    pub fn v6_hashed_lengths(&self) -> impl Iterator<Item = u8> {
        self.config.v6_lengths.to_le_bytes().into_iter().take_while(|&l| l != 0)
    }

    /// The class of `ip`, found exactly as the XDP program finds it (for tests and
    /// the reference checks). `None` when the field is unused.
    pub fn class_of(&self, ip: IpAddr) -> Option<u32> {
        if self.dir4.is_empty() {
            return None;
        }
        match ip {
            IpAddr::V4(v4) => Some(self.class_v4(v4.to_bits())),
            IpAddr::V6(v6) => Some(self.class_v6(v6.to_bits())),
        }
    }

    fn class_v4(&self, ip: u32) -> u32 {
        let top = self.dir4[(ip >> 16) as usize];
        let entry = if top & dir::GROUP == 0 {
            top
        } else {
            let group = top & !dir::GROUP;
            self.dir4[(dir::TOP_ENTRIES + group * dir::GROUP_ENTRIES + ((ip >> 8) & 0xff)) as usize]
        };
        if entry & dir::LONGER == 0 {
            return entry;
        }
        let long = &self.long24[(entry & !dir::LONGER) as usize];
        let host = ip & 0xff;
        if long.covered[(host / 64) as usize] & (1 << (host % 64)) == 0 {
            return long.class;
        }
        if long.covered_class != Long24::MIXED {
            return long.covered_class;
        }
        for len in (V4_HASHED_MIN_LEN..=32).rev() {
            if long.lengths & (1 << (len - V4_HASHED_MIN_LEN)) == 0 {
                continue;
            }
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&(ip & (u32::MAX << (32 - len))).to_be_bytes());
            if let Some(class) = self.prefix(PrefixKey { addr, len: len as u8, family: FAMILY_V4 as u8, _pad: [0; 2] })
            {
                return class;
            }
        }
        long.class
    }

    fn class_v6(&self, bits: u128) -> u32 {
        let (found_len, found_class) = self
            .trie6
            .iter()
            .filter(|&&(a, len, _)| len == 0 || (u128::from_be_bytes(a) ^ bits) >> (128 - u32::from(len)) == 0)
            .map(|&(_, len, class)| (len, class))
            .max_by_key(|&(len, _)| len)
            .expect("the trie holds ::/0");
        for len in self.v6_hashed_lengths().filter(|&l| l > found_len) {
            let addr = (bits & (u128::MAX << (128 - u32::from(len)))).to_be_bytes();
            if let Some(class) = self.prefix(PrefixKey { addr, len, family: FAMILY_V6 as u8, _pad: [0; 2] }) {
                return class;
            }
        }
        found_class
    }

    fn prefix(&self, key: PrefixKey) -> Option<u32> {
        self.prefixes.get(&key).copied()
    }

    /// Estimated kernel memory of the structures, in bytes.
    pub fn memory(&self) -> u64 {
        if self.dir4.is_empty() {
            return 0;
        }
        // A hash element: the kernel's header (~48 bytes) + key and value rounded to 8;
        // buckets: a power of two of 16-byte heads. A trie node: header, key, value,
        // and up to one intermediate node per entry.
        let hash = self.prefixes.len() as u64 * (48 + 24 + 8) + (self.prefixes.len() as u64).next_power_of_two() * 16;
        let trie = self.trie6.len() as u64 * 2 * 64;
        // The kernel sizes a Bloom filter at n * 5 hashes / ln 2 bits, a power of two.
        let bloom =
            ((self.v6_hashed_prefixes().max(1) as f64 * 5.0 / std::f64::consts::LN_2) as u64).next_power_of_two() / 8;
        let long24 = (self.long24.len() * std::mem::size_of::<Long24>()) as u64;
        self.dir4.len() as u64 * 4 + long24 + hash + trie + bloom
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(a: u128, len: u8) -> u128 {
        if len == 0 { 0 } else { a & (u128::MAX << (128 - u32::from(len))) }
    }

    /// The meaning the structures must keep: the longest entry containing the address.
    fn naive(entries: &[LpmEntry], a: u128) -> u32 {
        entries
            .iter()
            .filter(|&&(p, len, _)| mask(a, len) == p)
            .max_by_key(|&&(_, len, _)| len)
            .map(|&(_, _, c)| c)
            .expect("the /0 entry contains every address")
    }

    /// Entries around a few base addresses: every length from 0 to `bits` (nested),
    /// siblings, and `bulk` extra prefixes at some lengths so that those get hashed.
    fn entries(rng: &mut fastrand::Rng, bits: u8, bulk: &[(u8, usize)]) -> (Vec<LpmEntry>, Vec<u128>) {
        let bases: Vec<u128> = (0..4).map(|_| rng.u128(..)).collect();
        let mut seen = HashMap::new();
        let mut push = |a: u128, len: u8, class: u32| {
            seen.entry((mask(a, len), len)).or_insert(class);
        };
        push(0, 0, 0);
        for &b in &bases {
            for len in 1..=bits {
                push(b, len, (rng.u64(..) % 7) as u32);
                push(b ^ (1 << (128 - u32::from(len))), len, (rng.u64(..) % 7) as u32);
            }
        }
        for &(len, n) in bulk {
            for i in 0..n {
                // Random bits from 16 above the prefix's last bit down: distinct prefixes
                // of this length, close to a base (so they nest with its chain).
                let near = bases[i % bases.len()] ^ (rng.u128(..) >> u32::from(len.saturating_sub(16)));
                push(near, len, (rng.u64(..) % 7) as u32);
            }
        }
        let mut probes = Vec::new();
        for (&(p, len), _) in seen.iter() {
            let host = if len == 128 { 0 } else { u128::MAX >> len };
            probes.extend([p, p | host, p.wrapping_sub(1), (p | host).wrapping_add(1), p | (rng.u128(..) & host)]);
        }
        let entries = seen.into_iter().map(|((a, len), c)| (a, len, c)).collect();
        (entries, probes)
    }

    /// An IPv4 address from the top 32 bits.
    fn v4(a: u128) -> IpAddr {
        IpAddr::V4(((a >> 96) as u32).into())
    }

    #[test]
    fn every_length_and_both_families_keep_longest_prefix_match() {
        let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
        for round in 0..20 {
            // Bulk lengths: hosts and /24s (IPv4), and more IPv6 lengths than get hashed.
            let (e4, p4) = entries(&mut rng, 32, &[(32, 300), (24, 100), (28, 70)]);
            let bulk6: Vec<(u8, usize)> =
                [128, 127, 64, 56, 48, 40, 33, 32, 20, 3].iter().map(|&l| (l, V6_HASH_MIN_PREFIXES + round)).collect();
            let (e6, p6) = entries(&mut rng, 128, &bulk6);
            let lookup = AddrLookup::build(e4.clone(), e6.clone());
            assert_eq!(lookup.v6_hashed_lengths().count(), V6_HASHED_LENGTHS, "the most populated lengths are hashed");
            assert!(lookup.long24.iter().any(|l| l.lengths & (1 << (32 - V4_HASHED_MIN_LEN)) != 0));
            for a in p4 {
                let a = mask(a, 32);
                assert_eq!(lookup.class_of(v4(a)), Some(naive(&e4, a)), "IPv4 {} (round {round})", v4(a));
            }
            for a in p6 {
                let ip = IpAddr::V6(a.into());
                assert_eq!(lookup.class_of(ip), Some(naive(&e6, a)), "IPv6 {ip} (round {round})");
            }
        }
    }

    #[test]
    fn direct_array_groups_only_where_longer_prefixes_are() {
        let v4 = |s: &str| {
            let n: ipnet::Ipv4Net = s.parse().unwrap();
            (u128::from(n.network().to_bits()) << 96, n.prefix_len(), 0)
        };
        let entries =
            vec![(0, 0, 0), (v4("10.0.0.0/8").0, 8, 1), (v4("10.1.2.0/24").0, 24, 2), (v4("10.1.2.3/32").0, 32, 3)];
        let l = AddrLookup::build(entries, vec![(0, 0, 0)]);
        assert_eq!(l.dir4.len(), (dir::TOP_ENTRIES + dir::GROUP_ENTRIES) as usize, "one group, for 10.1/16");
        assert_eq!(l.prefixes.len(), 1);
        assert_eq!(
            l.long24,
            [Long24 {
                class: 2,
                lengths: 1 << (32 - V4_HASHED_MIN_LEN),
                covered_class: 3,
                _pad: 0,
                covered: [1 << 3, 0, 0, 0]
            }]
        );
        let class = |s: &str| l.class_of(s.parse().unwrap()).unwrap();
        assert_eq!(class("10.1.2.3"), 3);
        assert_eq!(class("10.1.2.4"), 2, "inside the flagged /24 but not the host");
        assert_eq!(class("10.1.3.1"), 1, "the group inherits the /8");
        assert_eq!(class("10.2.0.1"), 1);
        assert_eq!(class("11.0.0.1"), 0);
        assert_eq!(class("::1"), 0);
    }
}
