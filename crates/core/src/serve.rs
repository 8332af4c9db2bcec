//! The one inference sequence of every front end (TF Serving REST and gRPC, KServe V2 HTTP and
//! gRPC, `/v1/embeddings`, `:classify`/`:regress`): resolve the version a request names, decode
//! its inputs, run the model under the request's deadline, encode the answer, and account for
//! each stage in the request's [`RequestRecord`] until it is finished with the outcome.
//!
//! A front end supplies only what is its own: the [`Target`], a `decode` step (wire format →
//! [`Decoded`] inputs, deadline and whatever `encode` needs of the request) and an `encode` step
//! ([`Inference`] → its answer). Both are closures taken by generic parameter, so a request
//! pays for no boxed future, no dynamic call and no copy of a tensor here.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use quiver_engine_api::NamedTensor;
use quiver_telemetry::{RequestRecord, Stage};

use crate::payload_log::Pair;
use crate::traffic::StickyKeys;
use crate::{Error, Inference, LoadedVersion, ModelManager, VersionSelector};

/// Where a request's sticky key may be found, for a model whose traffic policy has one.
#[derive(Clone, Copy, Default)]
pub struct Keys<'a>(Option<&'a dyn StickyKeys>);

impl<'a> Keys<'a> {
    /// Keys found in `source`.
    pub fn from(source: &'a dyn StickyKeys) -> Self {
        Self(Some(source))
    }

    /// The value of `key`, if the request carries it.
    pub fn value(&self, key: &str) -> Option<String> {
        self.0.and_then(|source| source.value(key))
    }
}

impl std::fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Keys(..)"
        } else {
            "Keys(none)"
        })
    }
}

/// Keys say nothing of which version a target names.
impl PartialEq for Keys<'_> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Keys<'_> {}

/// The model version a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    /// The model's name.
    pub model: &'a str,
    /// Which of its versions.
    pub version: VersionSelector,
    /// The request's deadline when the front end knows it before decoding: it bounds the wait
    /// for a version that loads on demand.
    pub deadline: Option<Instant>,
    /// Where its sticky key may be found (a traffic policy with a sticky key asks).
    pub keys: Keys<'a>,
}

impl<'a> Target<'a> {
    /// `version` of `model`.
    pub fn new(model: &'a str, version: VersionSelector) -> Self {
        Self {
            model,
            version,
            deadline: None,
            keys: Keys::default(),
        }
    }

    /// The same target, for a request whose sticky key may be found in `keys`.
    #[must_use]
    pub fn with_keys(self, keys: &'a dyn StickyKeys) -> Self {
        Self {
            keys: Keys::from(keys),
            ..self
        }
    }

    /// The same target, for a request that stops being worth answering at `deadline`.
    #[must_use]
    pub fn until(self, deadline: Option<Instant>) -> Self {
        Self { deadline, ..self }
    }

    /// The latest version of `model`.
    pub fn latest(model: &'a str) -> Self {
        Self::new(model, VersionSelector::Latest)
    }

    /// `model` at a version written as KServe V2 writes it: absent or empty for the latest,
    /// else a positive integer.
    pub fn parse(model: &'a str, version: Option<&str>) -> Result<Self, Error> {
        let version = match version {
            None => VersionSelector::Latest,
            Some(text) => VersionSelector::parse(text)?,
        };
        Ok(Self::new(model, version))
    }
}

/// What a front end's `decode` step made of a request.
#[derive(Debug)]
pub struct Decoded<P> {
    /// The model's inputs, by name, in any order.
    pub inputs: Vec<NamedTensor>,
    /// When the request stops being worth answering (`None`: the model's default timeout).
    pub deadline: Option<Instant>,
    /// What the `encode` step needs of the request (outputs asked for, request id, format…).
    pub plan: P,
}

/// A front end's answer and its size on the wire, for the response-size metric.
#[derive(Debug)]
pub struct Encoded<T> {
    /// The answer.
    pub answer: T,
    /// Its size in bytes (body or message).
    pub bytes: usize,
}

impl<T> Encoded<T> {
    /// `answer`, `bytes` long on the wire.
    pub fn new(answer: T, bytes: usize) -> Self {
        Self { answer, bytes }
    }
}

/// The stages an `encode` step may close itself.
#[derive(Debug)]
pub struct Stages<'a> {
    record: &'a mut RequestRecord,
}

impl Stages<'_> {
    /// Ends the post-processing stage now: what the `encode` step did so far (selecting outputs,
    /// turning scores into classes) was post-processing, what it does next is encoding. A step
    /// that never calls it counts all its time as encoding.
    pub fn postprocessed(&mut self) {
        self.record.stage_done(Stage::Postprocess);
    }
}

/// Serves one inference request and finishes its `record` with the outcome: `target` (or the
/// error a front end met before it knew one) is resolved, `decode` turns the request into the
/// inputs of the version found, the model runs on them under the decoded deadline, and `encode`
/// turns its outputs into the answer.
pub async fn infer<P, T>(
    models: &Arc<ModelManager>,
    target: Result<Target<'_>, Error>,
    mut record: RequestRecord,
    decode: impl FnOnce(&LoadedVersion) -> Result<Decoded<P>, Error>,
    encode: impl FnOnce(&LoadedVersion, Inference, P, &mut Stages<'_>) -> Result<Encoded<T>, Error>,
) -> Result<T, Error> {
    match run(models, target, &mut record, decode, encode).await {
        Ok(encoded) => {
            record.finish(Ok(encoded.bytes));
            Ok(encoded.answer)
        }
        Err(error) => {
            record.finish(Err(error.kind.as_str()));
            Err(error)
        }
    }
}

async fn run<P, T>(
    models: &Arc<ModelManager>,
    target: Result<Target<'_>, Error>,
    record: &mut RequestRecord,
    decode: impl FnOnce(&LoadedVersion) -> Result<Decoded<P>, Error>,
    encode: impl FnOnce(&LoadedVersion, Inference, P, &mut Stages<'_>) -> Result<Encoded<T>, Error>,
) -> Result<Encoded<T>, Error> {
    let target = target?;
    let admitted = models.admit_request()?;
    let (loaded, shadow) = models.acquire_routed(&target).await?;
    record.served_by(loaded.metrics());
    let Decoded {
        inputs,
        deadline,
        plan,
    } = decode(&loaded)?;
    record.stage_done(Stage::Preprocess);
    // A sampled request keeps a copy of its inputs for the payload log; the rest pay one draw.
    let logged = loaded
        .payload_log_draw()
        .map(|log| (log, inputs.clone(), SystemTime::now(), Instant::now()));
    // The shadow runs the same inputs once the primary has answered.
    let shadow = shadow.map(|run| (run, inputs.clone()));
    let inference = loaded
        .infer_timed(inputs, deadline, admitted.company())
        .await?;
    if let Some((run, inputs)) = shadow {
        run.spawn(inputs, inference.outputs.clone());
    }
    if let Some((log, inputs, received, started)) = logged {
        log.offer(Pair {
            request_id: quiver_telemetry::request_id::current(),
            received,
            queued: inference.queued,
            compute: inference.compute,
            duration: started.elapsed(),
            inputs,
            outputs: inference.outputs.clone(),
        });
    }
    record.measured(
        inference.preprocess,
        inference.queued,
        inference.compute,
        inference.postprocess,
    );
    let encoded = encode(&loaded, inference, plan, &mut Stages { record })?;
    record.stage_done(Stage::Encode);
    Ok(encoded)
}

/// Refuses a request that names one of its outputs more than once (each output is answered
/// once, and Triton refuses such requests too), naming the output. Without allocating: requests
/// name a handful of outputs.
pub fn check_outputs_unique<'a, I>(names: I) -> Result<(), Error>
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let mut rest = names.into_iter();
    while let Some(name) = rest.next() {
        if rest.clone().any(|later| later == name) {
            return Err(Error::invalid(format!(
                "output '{name}' is requested more than once; name each output once"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_output_is_named() {
        assert!(check_outputs_unique(["a", "b", "c"]).is_ok());
        assert!(check_outputs_unique([]).is_ok());
        let e = check_outputs_unique(["a", "b", "a"]).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidInput);
        assert!(e.message.contains("'a'"), "{}", e.message);
        let e = check_outputs_unique(["a", "b", "b"]).unwrap_err();
        assert!(e.message.contains("'b'"), "{}", e.message);
    }

    #[test]
    fn targets_parse_v2_versions() {
        assert_eq!(Target::parse("m", None).unwrap(), Target::latest("m"));
        assert_eq!(Target::parse("m", Some("")).unwrap(), Target::latest("m"));
        assert_eq!(
            Target::parse("m", Some("3")).unwrap(),
            Target::new("m", VersionSelector::Specific(3))
        );
        for bad in ["0", "x", "-1"] {
            let e = Target::parse("m", Some(bad)).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::InvalidInput, "{bad}");
        }
    }
}
