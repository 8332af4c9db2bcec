//! `:classify` and `:regress`: TF Serving's JSON form of examples, and of their results.
//!
//! ```text
//! {"signature_name": "…", "context": {"f": 1}, "examples": [{"x": [0.1, 0.2]}, {"img": {"b64": "…"}}]}
//! → {"results": [[["label", 0.9], …], …]}    (:classify)
//! → {"results": [0.5, …]}                    (:regress)
//! ```
//!
//! Bodies are parsed with serde_json (its recursion limit refuses absurd nesting): unlike
//! `:predict`, nothing here is large enough for the streaming decoder to pay off.

use base64::Engine as _;
use quiver_core::{Example, Feature};
use serde_json::{Map, Value};

/// A decoded `:classify` / `:regress` request.
#[derive(Debug)]
pub struct ExamplesRequest {
    /// `signature_name`, when given.
    pub signature_name: Option<String>,
    /// Features every example shares.
    pub context: Example,
    /// The examples.
    pub examples: Vec<Example>,
}

/// Decodes a request body.
pub fn decode(body: &[u8]) -> Result<ExamplesRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("malformed JSON request: {e}"))?;
    let Value::Object(mut object) = value else {
        return Err("the request body must be a JSON object".into());
    };
    let signature_name = match object.remove("signature_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err("'signature_name' must be a string".into()),
    };
    let context = match object.remove("context") {
        None | Some(Value::Null) => Example::new(),
        Some(Value::Object(features)) => example(features, "context")?,
        Some(_) => return Err("'context' must be an object of features".into()),
    };
    let examples = match object.remove("examples") {
        Some(Value::Array(list)) => list
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let Value::Object(features) = e else {
                    return Err(format!("example {i} must be an object of features"));
                };
                example(features, &format!("example {i}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("'examples' must be a list of objects".into()),
        None => return Err("missing 'examples'".into()),
    };
    if examples.is_empty() {
        return Err("'examples' is empty; send at least one".into());
    }
    Ok(ExamplesRequest {
        signature_name,
        context,
        examples,
    })
}

fn example(features: Map<String, Value>, what: &str) -> Result<Example, String> {
    features
        .into_iter()
        .map(|(name, value)| {
            let feature = feature(value).map_err(|m| format!("{what}, feature '{name}': {m}"))?;
            Ok((name, feature))
        })
        .collect()
}

/// A feature's value: a number, a string, `{"b64": …}`, or a flat list of one of those.
fn feature(value: Value) -> Result<Feature, String> {
    let values = if let Value::Array(list) = value {
        list
    } else {
        vec![value]
    };
    let mut floats = Vec::new();
    let mut ints = Vec::new();
    let mut bytes = Vec::new();
    let mut fractional = false;
    for v in values {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    ints.push(i);
                    floats.push(i as f64);
                } else {
                    fractional = true;
                    floats.push(n.as_f64().ok_or("a number out of range")?);
                }
            }
            Value::String(s) => bytes.push(s.into_bytes()),
            Value::Object(mut o) if o.len() == 1 => match o.remove("b64") {
                Some(Value::String(s)) => bytes.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(s.as_bytes())
                        .map_err(|e| format!("invalid base64 in \"b64\": {e}"))?,
                ),
                _ => return Err("an object value must be {\"b64\": \"…\"}".into()),
            },
            Value::Array(_) => return Err("nested lists are not feature values".into()),
            Value::Null | Value::Bool(_) | Value::Object(_) => {
                return Err("values are numbers, strings or {\"b64\": \"…\"}".into());
            }
        }
    }
    match (floats.is_empty(), bytes.is_empty()) {
        (false, false) => Err("mixes numbers and strings".into()),
        (true, false) => Ok(Feature::Bytes(bytes)),
        (false, true) if fractional => Ok(Feature::Floats(floats)),
        (false, true) => Ok(Feature::Ints(ints)),
        (true, true) => Err("is empty".into()),
    }
}

/// `{"results": [[["label", score], …], …]}`.
pub fn classification_json(results: &[quiver_core::Classification]) -> Value {
    let rows: Vec<Value> = results
        .iter()
        .map(|row| {
            Value::Array(
                row.iter()
                    .map(|(label, score)| serde_json::json!([label, score]))
                    .collect(),
            )
        })
        .collect();
    serde_json::json!({ "results": rows })
}

/// `{"results": [value, …]}`.
pub fn regression_json(results: &[f32]) -> Value {
    serde_json::json!({ "results": results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_features_of_every_kind() {
        let r = decode(
            br#"{"context": {"c": 1}, "examples": [{"x": [0.5, 2], "s": "hi", "b": {"b64": "AAE="}, "n": 3}]}"#,
        )
        .unwrap();
        assert_eq!(r.context["c"], Feature::Ints(vec![1]));
        let e = &r.examples[0];
        assert_eq!(e["x"], Feature::Floats(vec![0.5, 2.0]));
        assert_eq!(e["s"], Feature::Bytes(vec![b"hi".to_vec()]));
        assert_eq!(e["b"], Feature::Bytes(vec![vec![0, 1]]));
        assert_eq!(e["n"], Feature::Ints(vec![3]));
    }

    #[test]
    fn refuses_what_is_not_a_feature() {
        for (body, says) in [
            (&br#"{"examples": []}"#[..], "empty"),
            (br#"{"examples": [{"x": [[1]]}]}"#, "nested"),
            (br#"{"examples": [{"x": [1, "a"]}]}"#, "mixes"),
            (br#"{"examples": [{"x": {"b64": "!"}}]}"#, "base64"),
            (br#"{"examples": [{"x": null}]}"#, "values are"),
            (br#"{"instances": []}"#, "missing 'examples'"),
            (br#"[1]"#, "JSON object"),
            (br#"{"examples": [1]}"#, "object of features"),
        ] {
            let e = decode(body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = format!(
            "{{\"examples\": {}{}}}",
            "[".repeat(200_000),
            "]".repeat(200_000)
        );
        assert!(decode(body.as_bytes()).is_err());
    }
}
