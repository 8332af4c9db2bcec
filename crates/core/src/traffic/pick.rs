//! Choosing a variant of a split, as a pure function of the variants' weights, which of them
//! are available, and a draw: a hash of the request's sticky key, or a random number.

/// One variant as the request finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// The version it names now; `None` when that version cannot take requests.
    pub(crate) version: Option<u64>,
    /// Its share, in percent (the weights add up to 100).
    pub(crate) weight: u32,
}

/// Why a request went where it went (the `reason` label of the assignments metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Drawn by weight.
    Split,
    /// By the hash of its sticky key.
    Sticky,
    /// The variant drawn could not take it; drawn again among those that can.
    Fallback,
}

impl Reason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Split => "split",
            Reason::Sticky => "sticky",
            Reason::Fallback => "fallback",
        }
    }
}

/// The number a request is placed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Draw {
    /// The hash of the request's sticky key with the policy's identity.
    Sticky(u64),
    /// A random number (no sticky key).
    Random(u64),
}

/// The version `draw` lands on, or `None` when no variant with weight can take requests.
///
/// The draw falls in `[0, 100)` and picks the variant whose cumulative weight covers it, so a
/// key keeps its variant however often it comes back. When that variant is unavailable, its
/// share goes to the available ones in proportion to their weights (a second draw, from the
/// same number remixed): keys of the available variants stay where they were.
pub(crate) fn pick(candidates: &[Candidate], draw: Draw) -> Option<(u64, Reason)> {
    let (number, reason) = match draw {
        Draw::Sticky(n) => (n, Reason::Sticky),
        Draw::Random(n) => (n, Reason::Split),
    };
    let bucket = number % 100;
    let mut covered = 0u64;
    for candidate in candidates {
        covered += u64::from(candidate.weight);
        if bucket < covered {
            if let Some(version) = candidate.version {
                return Some((version, reason));
            }
            break;
        }
    }
    let available = || candidates.iter().filter(|c| c.version.is_some());
    let total: u64 = available().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    let bucket = mix(number) % total;
    let mut covered = 0u64;
    for candidate in available() {
        covered += u64::from(candidate.weight);
        if bucket < covered {
            return candidate.version.map(|v| (v, Reason::Fallback));
        }
    }
    None
}

/// SplitMix64's finaliser: spreads the bits of a hash, so that `% n` of nearby keys' hashes
/// does not cluster.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A hash of `parts` that is the same in every process and every build (FNV-1a, then mixed):
/// replicas must agree on where a sticky key goes without talking to each other, which
/// std's hashers do not promise across builds.
pub(crate) fn stable_hash(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher as _;
    let mut hasher = fnv::FnvHasher::default();
    for part in parts {
        hasher.write(part);
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        hasher.write_u8(0xff);
    }
    mix(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[(u64, u32)]) -> Vec<Candidate> {
        weights
            .iter()
            .map(|&(version, weight)| Candidate {
                version: Some(version),
                weight,
            })
            .collect()
    }

    #[test]
    fn draws_follow_the_weights() {
        let candidates = split(&[(1, 90), (2, 10)]);
        let mut counts = [0u32; 3];
        for n in 0..100 {
            let (version, reason) = pick(&candidates, Draw::Random(n)).unwrap();
            assert_eq!(reason, Reason::Split);
            counts[version as usize] += 1;
        }
        assert_eq!(counts, [0, 90, 10]);
    }

    #[test]
    fn a_key_keeps_its_variant_and_keys_spread_by_weight() {
        let candidates = split(&[(1, 70), (2, 30)]);
        let mut on_two = 0;
        for user in 0..10_000u32 {
            let key = format!("user-{user}");
            let hash = stable_hash(&[b"model", key.as_bytes()]);
            let first = pick(&candidates, Draw::Sticky(hash)).unwrap();
            assert_eq!(first, pick(&candidates, Draw::Sticky(hash)).unwrap());
            assert_eq!(first.1, Reason::Sticky);
            on_two += u32::from(first.0 == 2);
        }
        // 30% of 10,000: the binomial's standard deviation is ~46; 5 of them either way.
        assert!((2770..=3230).contains(&on_two), "{on_two}");
    }

    #[test]
    fn an_unavailable_variants_share_goes_to_the_others_and_other_keys_stay() {
        let all = split(&[(1, 50), (2, 30), (3, 20)]);
        let mut without_two = all.clone();
        without_two[1].version = None;
        for n in 0..1000u64 {
            let hash = mix(n);
            let before = pick(&all, Draw::Sticky(hash)).unwrap();
            let after = pick(&without_two, Draw::Sticky(hash)).unwrap();
            if before.0 == 2 {
                assert_ne!(after.0, 2);
                assert_eq!(after.1, Reason::Fallback);
            } else {
                assert_eq!(after, before);
            }
        }
        let none: Vec<Candidate> = all
            .iter()
            .map(|c| Candidate {
                version: None,
                ..*c
            })
            .collect();
        assert_eq!(pick(&none, Draw::Random(5)), None);
    }

    #[test]
    fn the_hash_is_fixed_across_builds() {
        // Replicas of different builds must agree: this value may never change.
        assert_eq!(
            stable_hash(&[b"m", b"user-1"]),
            stable_hash(&[b"m", b"user-1"])
        );
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        // FNV-1a of b"m\xffuser-1\xff", mixed; computed independently (Python).
        assert_eq!(stable_hash(&[b"m", b"user-1"]), 1_496_618_113_440_905_977);
    }
}
