//! Where a traffic policy's sticky key is found in a gRPC call: a metadata key of that name
//! (lower case, as gRPC sends them), or (KServe V2) a request parameter of that name.

use std::collections::HashMap;

use quiver_core::traffic::StickyKeys;
use tonic::metadata::MetadataMap;

use crate::inference::InferParameter;
use crate::inference::infer_parameter::ParameterChoice;

/// The call's metadata.
pub struct MetadataKeys<'a>(pub &'a MetadataMap);

impl StickyKeys for MetadataKeys<'_> {
    fn value(&self, key: &str) -> Option<String> {
        metadata(self.0, key)
    }
}

/// A V2 inference request: the call's metadata, then the request's `parameters`.
pub struct V2Keys<'a> {
    /// The call's metadata.
    pub metadata: &'a MetadataMap,
    /// The request's parameters.
    pub parameters: &'a HashMap<String, InferParameter>,
}

impl StickyKeys for V2Keys<'_> {
    fn value(&self, key: &str) -> Option<String> {
        metadata(self.metadata, key).or_else(|| {
            match self.parameters.get(key)?.parameter_choice.as_ref()? {
                ParameterChoice::StringParam(s) => Some(s.clone()),
                ParameterChoice::Int64Param(n) => Some(n.to_string()),
                ParameterChoice::Uint64Param(n) => Some(n.to_string()),
                ParameterChoice::BoolParam(b) => Some(b.to_string()),
                ParameterChoice::DoubleParam(_) => None,
            }
        })
    }
}

fn metadata(map: &MetadataMap, key: &str) -> Option<String> {
    // Metadata keys are lower case on the wire; a policy may name the key as a header.
    let key = key.to_ascii_lowercase();
    map.get(key.as_str())?.to_str().ok().map(str::to_owned)
}
