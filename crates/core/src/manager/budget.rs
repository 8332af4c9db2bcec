//! The memory budget (`--max-loaded-models`, `--memory-budget-bytes`): which loaded versions
//! make room for one more, decided as a pure function over what is loaded, and what a version
//! costs, measured as it loads.

/// Bounds on what stays loaded. A load that would go over them first unloads the least recently
/// used versions (idle ones before busy ones; pinned ones never); an unloaded version loads
/// again on its next request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Most model versions loaded at once.
    pub max_loaded_versions: Option<usize>,
    /// Most bytes of memory, by the versions' estimates, loaded at once.
    pub memory_bytes: Option<u64>,
}

impl Budget {
    /// Whether any bound is set (without one, nothing is measured or evicted).
    pub fn is_set(&self) -> bool {
        self.max_loaded_versions.is_some() || self.memory_bytes.is_some()
    }

    fn fits(&self, versions: usize, bytes: u64) -> bool {
        self.max_loaded_versions.is_none_or(|max| versions <= max)
            && self.memory_bytes.is_none_or(|max| bytes <= max)
    }
}

/// A loaded version, as the budget sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resident {
    pub(crate) model: String,
    pub(crate) version: u64,
    /// Its estimated memory.
    pub(crate) bytes: u64,
    /// When a request last asked for it (in ticks of the manager's clock).
    pub(crate) last_used: u64,
    /// Whether requests hold it now: such a version is only taken when idle ones are not enough,
    /// and its requests finish before it goes.
    pub(crate) busy: bool,
    /// `[lifecycle] pinned`: never taken.
    pub(crate) pinned: bool,
}

/// Why a version cannot be made room for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NoRoom {
    pub(crate) why: String,
}

/// The versions to unload, in order, so that one more version of `incoming` bytes fits beside
/// the rest of `residents`; an error when even unloading every version that may go is not
/// enough.
pub(crate) fn victims(
    budget: &Budget,
    residents: &[Resident],
    incoming: u64,
) -> Result<Vec<(String, u64)>, NoRoom> {
    let mut versions = residents.len() + 1;
    let mut bytes = residents
        .iter()
        .map(|r| r.bytes)
        .fold(incoming, u64::saturating_add);
    let mut candidates: Vec<&Resident> = residents.iter().filter(|r| !r.pinned).collect();
    candidates.sort_by_key(|r| (r.busy, r.last_used));
    let mut chosen = Vec::new();
    let mut candidates = candidates.into_iter();
    while !budget.fits(versions, bytes) {
        let Some(victim) = candidates.next() else {
            return Err(NoRoom {
                why: no_room(budget, residents, incoming),
            });
        };
        versions -= 1;
        bytes = bytes.saturating_sub(victim.bytes);
        chosen.push((victim.model.clone(), victim.version));
    }
    Ok(chosen)
}

fn no_room(budget: &Budget, residents: &[Resident], incoming: u64) -> String {
    let pinned: Vec<String> = residents
        .iter()
        .filter(|r| r.pinned)
        .map(|r| format!("{} version {}", r.model, r.version))
        .collect();
    let mut bounds = Vec::new();
    if let Some(max) = budget.max_loaded_versions {
        bounds.push(format!("--max-loaded-models {max}"));
    }
    if let Some(max) = budget.memory_bytes {
        bounds.push(format!(
            "--memory-budget-bytes {max} (this version needs about {incoming})"
        ));
    }
    let held = if pinned.is_empty() {
        "nothing else can be unloaded".to_owned()
    } else {
        format!("the rest is held by pinned versions: {}", pinned.join(", "))
    };
    format!(
        "the memory budget has no room for this version ({}): {held}",
        bounds.join(", ")
    )
}

/// The process's resident memory now, in bytes (0 where it cannot be read).
pub(crate) fn resident_bytes() -> u64 {
    // Linux: the second field of /proc/self/statm is resident pages. No crate reads just this
    // without pulling a whole process-inspection library in.
    #[cfg(target_os = "linux")]
    {
        let pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        pages.saturating_mul(page_size())
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn page_size() -> u64 {
    // SAFETY: sysconf takes a constant and reads no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// What a version costs: what the process grew by while it loaded, and never less than its model
/// file (whose weights it holds; other work growing or shrinking the process at the same moment
/// makes the growth alone unreliable).
pub(crate) fn estimate(before: u64, after: u64, file_bytes: u64) -> u64 {
    after.saturating_sub(before).max(file_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(model: &str, bytes: u64, last_used: u64) -> Resident {
        Resident {
            model: model.into(),
            version: 1,
            bytes,
            last_used,
            busy: false,
            pinned: false,
        }
    }

    fn count(max: usize) -> Budget {
        Budget {
            max_loaded_versions: Some(max),
            memory_bytes: None,
        }
    }

    fn names(victims: Vec<(String, u64)>) -> Vec<String> {
        victims.into_iter().map(|(m, _)| m).collect()
    }

    #[test]
    fn nothing_goes_while_there_is_room() {
        let loaded = [resident("a", 10, 1)];
        assert!(victims(&count(2), &loaded, 10).unwrap().is_empty());
        assert!(
            victims(&Budget::default(), &loaded, u64::MAX)
                .unwrap()
                .is_empty()
        );
        let bytes = Budget {
            max_loaded_versions: None,
            memory_bytes: Some(20),
        };
        assert!(victims(&bytes, &loaded, 10).unwrap().is_empty());
    }

    #[test]
    fn the_least_recently_used_goes_first() {
        let loaded = [
            resident("a", 10, 5),
            resident("b", 10, 1),
            resident("c", 10, 3),
        ];
        assert_eq!(names(victims(&count(3), &loaded, 10).unwrap()), ["b"]);
        assert_eq!(names(victims(&count(2), &loaded, 10).unwrap()), ["b", "c"]);
    }

    #[test]
    fn bytes_take_as_many_as_it_needs() {
        let budget = Budget {
            max_loaded_versions: None,
            memory_bytes: Some(100),
        };
        let loaded = [
            resident("a", 40, 1),
            resident("b", 30, 2),
            resident("c", 20, 3),
        ];
        // 90 + 25 = 115 > 100: taking a (the oldest) leaves 75.
        assert_eq!(names(victims(&budget, &loaded, 25).unwrap()), ["a"]);
        // 90 + 80 = 170: a and b go, 100 is left.
        assert_eq!(names(victims(&budget, &loaded, 80).unwrap()), ["a", "b"]);
    }

    #[test]
    fn idle_versions_go_before_busy_ones_and_pinned_ones_never() {
        let mut busy = resident("busy", 10, 1);
        busy.busy = true;
        let mut pinned = resident("pinned", 10, 0);
        pinned.pinned = true;
        let loaded = [busy, pinned, resident("idle", 10, 9)];
        assert_eq!(names(victims(&count(3), &loaded, 10).unwrap()), ["idle"]);
        assert_eq!(
            names(victims(&count(2), &loaded, 10).unwrap()),
            ["idle", "busy"]
        );
        let refused = victims(&count(1), &loaded, 10).unwrap_err();
        assert!(refused.why.contains("pinned version 1"), "{}", refused.why);
        assert!(
            refused.why.contains("--max-loaded-models 1"),
            "{}",
            refused.why
        );
    }

    #[test]
    fn a_version_larger_than_the_budget_is_refused() {
        let budget = Budget {
            max_loaded_versions: None,
            memory_bytes: Some(100),
        };
        let refused = victims(&budget, &[resident("a", 10, 1)], 500).unwrap_err();
        assert!(refused.why.contains("needs about 500"), "{}", refused.why);
    }

    #[test]
    fn the_estimate_is_the_growth_or_at_least_the_file() {
        assert_eq!(estimate(100, 400, 50), 300);
        assert_eq!(estimate(400, 100, 50), 50);
        assert!(resident_bytes() > 0 || !cfg!(target_os = "linux"));
    }
}
