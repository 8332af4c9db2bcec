//! `[traffic]`: how a model's requests that name no version are shared among its versions (a
//! weighted split, optionally sticky per key) and which version also runs them in the shadow.
//! The same shape is the admin API's JSON body, so one type serves both.

use serde::{Deserialize, Serialize};

/// A model's traffic policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// The variants and their integer weights, adding up to 100. Empty: the latest version
    /// answers, as without a policy (a policy that only shadows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<Variant>,
    /// The request header, gRPC metadata key or V2 request parameter whose value picks the
    /// variant (the same value always the same variant); requests without it are drawn by
    /// weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky_key: Option<String>,
    /// A version that also runs a share of the requests, off the answering path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
}

/// One variant of a split: a version, or the version a label names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// The version, when the variant names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The label, when the variant names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Its share of the requests, in percent.
    pub weight: u32,
}

/// What a variant (or the shadow) names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VariantTarget {
    /// A version number.
    Version(u64),
    /// A label of the model.
    Label(String),
}

impl std::fmt::Display for VariantTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VariantTarget::Version(v) => write!(f, "version {v}"),
            VariantTarget::Label(l) => write!(f, "label '{l}'"),
        }
    }
}

/// `[traffic.shadow]`: the version that also runs `percent` of the routed requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The shadow version, when named by number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The shadow version, when named by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The share of routed requests it also runs, 0 to 100; default 100.
    #[serde(default = "all_requests")]
    pub percent: u32,
    /// Float outputs agree when `|a - b| <= tolerance * max(1, |a|)`; default 1e-4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
}

fn all_requests() -> u32 {
    100
}

/// The tolerance of float comparisons when the policy sets none.
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

impl Variant {
    /// What it names (checked by [`TrafficPolicy::check`]: exactly one of the two).
    pub fn target(&self) -> Option<VariantTarget> {
        target(self.version, self.label.as_deref())
    }
}

impl Shadow {
    /// What it names.
    pub fn target(&self) -> Option<VariantTarget> {
        target(self.version, self.label.as_deref())
    }

    /// The tolerance of float comparisons.
    pub fn tolerance(&self) -> f64 {
        self.tolerance.unwrap_or(DEFAULT_TOLERANCE)
    }
}

fn target(version: Option<u64>, label: Option<&str>) -> Option<VariantTarget> {
    match (version, label) {
        (Some(v), None) => Some(VariantTarget::Version(v)),
        (None, Some(l)) => Some(VariantTarget::Label(l.to_owned())),
        _ => None,
    }
}

impl TrafficPolicy {
    /// Checks what can be checked without the model's versions: each variant names one version
    /// or label, once; weights add up to 100; the shadow's share is a percentage. The error
    /// says what is wrong, for the caller to prefix with the model's name.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = Vec::new();
        for variant in &self.split {
            let target = variant.target().ok_or_else(|| {
                "each split entry names either a \"version\" or a \"label\", not both or neither"
                    .to_owned()
            })?;
            check_target(&target)?;
            if seen.contains(&target) {
                return Err(format!("{target} is listed twice in the split"));
            }
            seen.push(target);
        }
        if !self.split.is_empty() {
            let total: u64 = self.split.iter().map(|v| u64::from(v.weight)).sum();
            if total != 100 {
                return Err(format!(
                    "the split's weights add up to {total}; they must add up to 100"
                ));
            }
        }
        if let Some(key) = &self.sticky_key {
            let valid = !key.is_empty()
                && key.len() <= 128
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !valid {
                return Err(format!(
                    "sticky_key '{key}' is not a header name (letters, digits, '-', '_', '.')"
                ));
            }
        }
        if let Some(shadow) = &self.shadow {
            let target = shadow.target().ok_or_else(|| {
                "the shadow names either a \"version\" or a \"label\", not both or neither"
                    .to_owned()
            })?;
            check_target(&target)?;
            if shadow.percent > 100 {
                return Err(format!(
                    "shadow.percent is {}; it is a share from 0 to 100",
                    shadow.percent
                ));
            }
            if let Some(t) = shadow.tolerance
                && !(t.is_finite() && t >= 0.0)
            {
                return Err(format!("shadow.tolerance is {t}; it is a number from 0 up"));
            }
        }
        if self.split.is_empty() && self.shadow.is_none() {
            return Err("the policy has neither a split nor a shadow".into());
        }
        Ok(())
    }

    /// Every version or label the policy names (split, then shadow).
    pub fn targets(&self) -> Vec<VariantTarget> {
        self.split
            .iter()
            .filter_map(Variant::target)
            .chain(self.shadow.iter().filter_map(Shadow::target))
            .collect()
    }
}

fn check_target(target: &VariantTarget) -> Result<(), String> {
    match target {
        VariantTarget::Version(0) => Err("versions are positive integers, got 0".into()),
        VariantTarget::Version(_) => Ok(()),
        VariantTarget::Label(label) => crate::check_label(label),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> TrafficPolicy {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_issues_example_is_a_valid_policy() {
        let p = policy(
            r#"{"split": [{"version": 2, "weight": 90}, {"label": "canary", "weight": 10}],
                "sticky_key": "x-user-id", "shadow": {"version": 3, "percent": 100}}"#,
        );
        p.check().unwrap();
        assert_eq!(
            p.targets(),
            vec![
                VariantTarget::Version(2),
                VariantTarget::Label("canary".into()),
                VariantTarget::Version(3)
            ]
        );
        assert_eq!(p.shadow.as_ref().unwrap().tolerance(), DEFAULT_TOLERANCE);
    }

    #[test]
    fn bad_policies_say_what_is_wrong() {
        for (json, says) in [
            (
                r#"{"split": [{"version": 1, "weight": 50}]}"#,
                "add up to 50",
            ),
            (
                r#"{"split": [{"version": 1, "weight": 50}, {"version": 1, "weight": 50}]}"#,
                "listed twice",
            ),
            (
                r#"{"split": [{"version": 1, "label": "a", "weight": 100}]}"#,
                "either",
            ),
            (r#"{"split": [{"weight": 100}]}"#, "either"),
            (r#"{"split": [{"version": 0, "weight": 100}]}"#, "got 0"),
            (r#"{"shadow": {"version": 2, "percent": 101}}"#, "0 to 100"),
            (
                r#"{"split": [{"version": 1, "weight": 100}], "sticky_key": "a b"}"#,
                "not a header name",
            ),
            (r#"{}"#, "neither a split nor a shadow"),
        ] {
            let error = policy(json).check().unwrap_err();
            assert!(error.contains(says), "{json}: {error}");
        }
        assert!(
            serde_json::from_str::<TrafficPolicy>(r#"{"split": [{"version": 1, "weight": 10.5}]}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<TrafficPolicy>(r#"{"split": [{"version": 1, "weight": -1}]}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<TrafficPolicy>(r#"{"splits": []}"#).is_err());
    }
}
