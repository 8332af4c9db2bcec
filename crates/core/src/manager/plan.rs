//! Reconciling a model with its source, decided as a pure function: what the manager holds now
//! and what the source wants go in, the steps to take come out. The manager then carries them
//! out (`super::ModelManager::sync`); everything here is tested without loading a model.

use std::collections::BTreeMap;

use super::VersionState;

/// What the manager holds of one version now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Current {
    /// Its state.
    pub(crate) state: VersionState,
    /// Of the files it was last loaded (or tried) from.
    pub(crate) fingerprint: u64,
    /// Whether it takes requests.
    pub(crate) serving: bool,
}

/// What the model's source wants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    /// Every version on disk, with the fingerprint of the files it would be loaded from.
    pub(crate) on_disk: &'a [(u64, u64)],
    /// The versions the version policy picks.
    pub(crate) wanted: &'a [u64],
    /// Load the wanted versions again even when unchanged or failed before (a load request).
    pub(crate) force: bool,
    /// Unload what is replaced before loading anything (`rollover = "unload_first"`).
    pub(crate) unload_first: bool,
    /// A version unloaded while idle that a request wants loaded again; idle versions stay
    /// unloaded otherwise (unless `force`).
    pub(crate) wake: Option<u64>,
}

/// One step of bringing a model in line with its source, in the order they are to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Retire the version and wait until it is gone, before any load.
    Unload(u64),
    /// Load (or reload) the version from files with this fingerprint.
    Load { version: u64, fingerprint: u64 },
    /// After the loads, retire the version; with `once_replaced`, only if a wanted version then
    /// serves, so a broken new version never leaves the model with nothing.
    Retire { version: u64, once_replaced: bool },
}

/// The steps that bring `current` in line with `wanted`.
pub(crate) fn plan(current: &BTreeMap<u64, Current>, wanted: &Wanted<'_>) -> Vec<Action> {
    let loads: Vec<Action> = wanted
        .on_disk
        .iter()
        .filter(|(version, _)| wanted.wanted.contains(version))
        .filter(|(version, print)| match current.get(version) {
            None => true,
            Some(now) => match now.state {
                VersionState::Available | VersionState::Failed => {
                    now.fingerprint != *print || wanted.force
                }
                VersionState::Loading => false,
                VersionState::Idle => wanted.force || wanted.wake == Some(*version),
                VersionState::Start | VersionState::Unloading | VersionState::End => true,
            },
        })
        .map(|&(version, fingerprint)| Action::Load {
            version,
            fingerprint,
        })
        .collect();
    let unwanted = current
        .iter()
        .filter(|(version, now)| now.serving && !wanted.wanted.contains(version))
        .map(|(&version, _)| version);
    let mut actions = Vec::new();
    if wanted.unload_first && !loads.is_empty() {
        // Memory-bound hosts: nothing new is loaded while an old version holds memory.
        let replaced = loads.iter().filter_map(|load| match load {
            Action::Load { version, .. } => {
                Some(*version).filter(|v| current.get(v).is_some_and(|c| c.serving))
            }
            Action::Unload(_) | Action::Retire { .. } => None,
        });
        actions.extend(unwanted.chain(replaced).map(Action::Unload));
        actions.extend(loads);
        return actions;
    }
    actions.extend(loads);
    actions.extend(unwanted.map(|version| Action::Retire {
        version,
        // A version whose directory is gone goes regardless.
        once_replaced: wanted.on_disk.iter().any(|(v, _)| *v == version),
    }));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(fingerprint: u64) -> Current {
        Current {
            state: VersionState::Available,
            fingerprint,
            serving: true,
        }
    }

    fn state(state: VersionState, fingerprint: u64) -> Current {
        Current {
            state,
            fingerprint,
            serving: false,
        }
    }

    fn wanted<'a>(on_disk: &'a [(u64, u64)], wanted: &'a [u64]) -> Wanted<'a> {
        Wanted {
            on_disk,
            wanted,
            force: false,
            unload_first: false,
            wake: None,
        }
    }

    fn load(version: u64, fingerprint: u64) -> Action {
        Action::Load {
            version,
            fingerprint,
        }
    }

    #[test]
    fn a_new_version_loads_and_replaces_the_old_once_it_serves() {
        let current = BTreeMap::from([(1, serving(10))]);
        let actions = plan(&current, &wanted(&[(1, 10), (2, 20)], &[2]));
        assert_eq!(
            actions,
            [
                load(2, 20),
                Action::Retire {
                    version: 1,
                    once_replaced: true
                }
            ]
        );
    }

    #[test]
    fn nothing_changes_when_nothing_changed() {
        let current = BTreeMap::from([(1, serving(10)), (2, serving(20))]);
        assert_eq!(plan(&current, &wanted(&[(1, 10), (2, 20)], &[1, 2])), []);
    }

    #[test]
    fn a_changed_file_or_config_reloads_the_version() {
        let current = BTreeMap::from([(1, serving(10))]);
        assert_eq!(plan(&current, &wanted(&[(1, 11)], &[1])), [load(1, 11)]);
    }

    #[test]
    fn a_failed_version_is_tried_again_only_when_changed_or_forced() {
        let current = BTreeMap::from([(1, state(VersionState::Failed, 10))]);
        assert_eq!(plan(&current, &wanted(&[(1, 10)], &[1])), []);
        assert_eq!(plan(&current, &wanted(&[(1, 12)], &[1])), [load(1, 12)]);
        let forced = Wanted {
            force: true,
            ..wanted(&[(1, 10)], &[1])
        };
        assert_eq!(plan(&current, &forced), [load(1, 10)]);
    }

    #[test]
    fn a_forced_load_reloads_a_serving_version() {
        let current = BTreeMap::from([(1, serving(10))]);
        let forced = Wanted {
            force: true,
            ..wanted(&[(1, 10)], &[1])
        };
        assert_eq!(plan(&current, &forced), [load(1, 10)]);
    }

    #[test]
    fn a_version_being_loaded_is_left_alone() {
        let current = BTreeMap::from([(1, state(VersionState::Loading, 10))]);
        let forced = Wanted {
            force: true,
            ..wanted(&[(1, 99)], &[1])
        };
        assert_eq!(plan(&current, &forced), []);
    }

    #[test]
    fn a_retired_version_wanted_again_loads_again() {
        for gone in [
            VersionState::End,
            VersionState::Unloading,
            VersionState::Start,
        ] {
            let current = BTreeMap::from([(1, state(gone, 10))]);
            assert_eq!(plan(&current, &wanted(&[(1, 10)], &[1])), [load(1, 10)]);
        }
    }

    #[test]
    fn a_version_gone_from_disk_retires_regardless() {
        let current = BTreeMap::from([(1, serving(10)), (2, serving(20))]);
        let actions = plan(&current, &wanted(&[(2, 20)], &[2]));
        assert_eq!(
            actions,
            [Action::Retire {
                version: 1,
                once_replaced: false
            }]
        );
    }

    #[test]
    fn versions_the_policy_drops_retire_once_replaced() {
        let current = BTreeMap::from([(1, serving(10)), (2, serving(20))]);
        let actions = plan(&current, &wanted(&[(1, 10), (2, 20)], &[2]));
        assert_eq!(
            actions,
            [Action::Retire {
                version: 1,
                once_replaced: true
            }]
        );
    }

    #[test]
    fn unload_first_unloads_the_old_and_the_replaced_before_loading() {
        let current = BTreeMap::from([(1, serving(10)), (2, serving(20))]);
        let plan_of = |on_disk: &[(u64, u64)], want: &[u64]| {
            plan(
                &current,
                &Wanted {
                    unload_first: true,
                    ..wanted(on_disk, want)
                },
            )
        };
        // Version 3 replaces 1 and 2.
        assert_eq!(
            plan_of(&[(1, 10), (2, 20), (3, 30)], &[3]),
            [Action::Unload(1), Action::Unload(2), load(3, 30)]
        );
        // A reload of 2 unloads it first; 1 stays (still wanted).
        assert_eq!(
            plan_of(&[(1, 10), (2, 21)], &[1, 2]),
            [Action::Unload(2), load(2, 21)]
        );
        // With nothing to load, unload-first retires as usual.
        assert_eq!(
            plan_of(&[(1, 10), (2, 20)], &[2]),
            [Action::Retire {
                version: 1,
                once_replaced: true
            }]
        );
    }

    #[test]
    fn versions_not_on_disk_are_never_loaded() {
        let current = BTreeMap::new();
        assert_eq!(plan(&current, &wanted(&[(1, 10)], &[1, 5])), [load(1, 10)]);
    }

    #[test]
    fn idle_versions_load_only_when_woken_or_forced() {
        let current = BTreeMap::from([(1, state(VersionState::Idle, 10))]);
        let on_disk = [(1, 10)];
        assert!(plan(&current, &wanted(&on_disk, &[1])).is_empty());
        let woken = Wanted {
            wake: Some(1),
            ..wanted(&on_disk, &[1])
        };
        assert_eq!(plan(&current, &woken), [load(1, 10)]);
        let forced = Wanted {
            force: true,
            ..wanted(&on_disk, &[1])
        };
        assert_eq!(plan(&current, &forced), [load(1, 10)]);
        // Waking another version leaves this one idle.
        let other = Wanted {
            wake: Some(2),
            ..wanted(&on_disk, &[1])
        };
        assert!(plan(&current, &other).is_empty());
    }
}
