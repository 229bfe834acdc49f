//! OpenTelemetry profiles (OTLP, `opentelemetry.proto.profiles.v1development`,
//! opentelemetry-proto v1.10.0): one window's folded stacks as one
//! `ExportProfilesServiceRequest`, the body every OTLP transport carries
//! (OTLP/HTTP `POST /v1development/profiles`, a Kafka message the Collector's
//! Kafka receiver reads as `otlp_proto`, a file).
//!
//! A window `web-1, {service=shop}` with the stacks
//! `python3;main_[p];read_[k] 3` and `python3;main_[p] 2` (container `c1`) becomes:
//! - one `ResourceProfiles` per (container, pid) of its stacks, with the resource
//!   attributes `host.name`, `service.name` (the `service` label), `container.id`,
//!   `process.pid` when known, the Kubernetes labels under their semantic
//!   convention names (`pod` → `k8s.pod.name`, `pod_uid` → `k8s.pod.uid`,
//!   `namespace` → `k8s.namespace.name`) and every other label under its own name;
//! - in each, one `ScopeProfiles` (scope `profpipe`) with one `Profile`:
//!   `sample_type = samples/count`, `period_type = cpu/nanoseconds`, `period` =
//!   1e9 / sample rate (0 if unknown, as in pprof), `time_unix_nano` = window
//!   start, `duration_nano` = window length;
//! - one `Sample` per stack: `values = [count]`, its stack, and the attribute
//!   `thread.name` = the stack's first frame (the comm the profiler reported);
//! - in the request's shared dictionary, once each: every string, one `Function`
//!   and one `Location` (one `Line`) per distinct frame text, the location
//!   carrying `profile.frame.type` ([`frame_type`]), every stack (locations leaf
//!   first) and every attribute.
//!
//! Frame texts are kept whole (`main_[p]`, comm first), as in every other
//! encoding of profpipe, so a stack reads back exactly as the folded file has it.
//! A part of a window split to fit a limit is a complete request of its own
//! (its own dictionary) whose profiles carry the attributes
//! `profpipe.profile_id`, `profpipe.part` and `profpipe.parts`.

use std::collections::BTreeMap;

use super::pprof::period_ns;
use super::profile_json::PartInfo;
use crate::event::{LabelSet, Stack, Window};

mod dictionary;
pub mod frame_type;
pub mod proto;

pub use dictionary::attribute_value;
use dictionary::Dictionary;
use proto::{
    AnyValue, ExportProfilesServiceRequest, ExportProfilesServiceResponse, InstrumentationScope,
    KeyValue, Profile, Resource, ResourceProfiles, Sample, ScopeProfiles, ValueType,
};

/// The opentelemetry-proto release whose field numbers [`proto`] uses.
pub const PROTO_VERSION: &str = "1.10.0";

/// `Content-Type` of the request's bytes (OTLP/HTTP's binary protobuf).
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// The scope every profile names as its maker.
const SCOPE_NAME: &str = "profpipe";

/// What one request is made of.
pub struct OtlpInput<'a> {
    pub window: Window,
    pub stacks: &'a [Stack],
    pub labels: &'a LabelSet,
    pub host: &'a str,
    /// The profilers' frequency; 0 if unknown.
    pub sample_rate_hz: u32,
    /// Which part of a split window this is; said in the profiles' attributes
    /// when there are several.
    pub part: Option<&'a PartInfo<'a>>,
}

/// The window as the bytes of one `ExportProfilesServiceRequest` (not
/// compressed: OTLP/HTTP gzips the body as a transport, Kafka its batches).
pub fn encode_request(input: &OtlpInput<'_>) -> Vec<u8> {
    prost::Message::encode_to_vec(&request(input))
}

/// Reads what [`encode_request`] writes, for tests and tools.
pub fn decode_request(bytes: &[u8]) -> Result<ExportProfilesServiceRequest, prost::DecodeError> {
    prost::Message::decode(bytes)
}

/// Reads a receiver's answer (an empty body is a full success).
pub fn decode_response(bytes: &[u8]) -> Result<ExportProfilesServiceResponse, prost::DecodeError> {
    prost::Message::decode(bytes)
}

/// The labels with a semantic-convention name of their own.
fn attribute_key(label: &str) -> &str {
    match label {
        "service" => "service.name",
        "container" => "container.id",
        "pod" => "k8s.pod.name",
        "pod_uid" => "k8s.pod.uid",
        "namespace" => "k8s.namespace.name",
        other => other,
    }
}

/// The `ExportProfilesServiceRequest` of a window (before encoding).
pub fn request(input: &OtlpInput<'_>) -> ExportProfilesServiceRequest {
    let stacks = input.stacks;
    let mut dict = Dictionary::new(stacks.len() + 16);
    let sample_type = ValueType {
        type_strindex: dict.string("samples"),
        unit_strindex: dict.string("count"),
    };
    let period_type = ValueType {
        type_strindex: dict.string("cpu"),
        unit_strindex: dict.string("nanoseconds"),
    };
    let mut profile_attributes = Vec::new();
    if let Some(p) = input.part.filter(|p| p.count > 1) {
        profile_attributes.push(dict.attribute_str("profpipe.profile_id", p.profile_id));
        profile_attributes.push(dict.attribute_int("profpipe.part", count_i64(p.index)));
        profile_attributes.push(dict.attribute_int("profpipe.parts", count_i64(p.count)));
    }

    // Stacks by resource, in a stable order: the window's own (no container, no
    // pid) first.
    let mut by_resource: BTreeMap<(Option<&str>, u32), Vec<Sample>> = BTreeMap::new();
    for stack in stacks {
        let mut attribute_indices = Vec::with_capacity(1);
        let first = stack.frames.split(';').next().unwrap_or("");
        // Markers such as `[overflow]` are no thread.
        if !first.is_empty() && !first.starts_with('[') {
            attribute_indices.push(dict.attribute_str("thread.name", first));
        }
        let sample = Sample {
            stack_index: dict.stack(&stack.frames),
            attribute_indices,
            values: vec![i64::try_from(stack.count).unwrap_or(i64::MAX)],
            ..Sample::default()
        };
        by_resource
            .entry((stack.container.as_deref(), stack.pid))
            .or_default()
            .push(sample);
    }
    if by_resource.is_empty() {
        // An empty window is still reported: a profile with no samples says the
        // host was profiled and nothing ran.
        by_resource.insert((None, 0), Vec::new());
    }

    let w = input.window;
    let resource_profiles = by_resource
        .into_iter()
        .enumerate()
        .map(|(i, ((container, pid), samples))| ResourceProfiles {
            resource: Some(resource(input, container, pid)),
            scope_profiles: vec![ScopeProfiles {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                profiles: vec![Profile {
                    sample_type: Some(sample_type),
                    samples,
                    time_unix_nano: w.start_ms.saturating_mul(1_000_000),
                    duration_nano: w
                        .end_ms
                        .saturating_sub(w.start_ms)
                        .saturating_mul(1_000_000),
                    period_type: Some(period_type),
                    period: period_ns(input.sample_rate_hz),
                    profile_id: profile_id(input.part, i),
                    attribute_indices: profile_attributes.clone(),
                    ..Profile::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportProfilesServiceRequest {
        resource_profiles,
        dictionary: Some(dict.finish()),
    }
}

/// The resource of one (container, pid) of the window.
fn resource(input: &OtlpInput<'_>, container: Option<&str>, pid: u32) -> Resource {
    let mut attributes = Vec::with_capacity(input.labels.len() + 3);
    let mut put = |key: &str, value: AnyValue| {
        if !attributes.iter().any(|a: &KeyValue| a.key == key) {
            attributes.push(KeyValue {
                key: key.to_owned(),
                value: Some(value),
            });
        }
    };
    if !input.host.is_empty() {
        put("host.name", AnyValue::string(input.host));
    }
    // The stack's own container and pid come before the window's labels, so a
    // `container` label shared by the window never hides a stack's own.
    if let Some(c) = container {
        put("container.id", AnyValue::string(c));
    }
    if pid != 0 {
        put("process.pid", AnyValue::int(i64::from(pid)));
    }
    for (name, value) in input.labels.iter() {
        put(attribute_key(name), AnyValue::string(value));
    }
    Resource {
        attributes,
        dropped_attributes_count: 0,
    }
}

/// A profile's 16 id bytes: the window's stable profile id (8 bytes: the same
/// on a retry or replay), the part's index and the resource's index (4 bytes
/// each). Without a part (nothing to derive it from) the id is left empty, which
/// the proto allows.
fn profile_id(part: Option<&PartInfo<'_>>, resource: usize) -> Vec<u8> {
    let Some(p) = part else {
        return Vec::new();
    };
    let mut id = Vec::with_capacity(16);
    id.extend_from_slice(
        &u64::from_str_radix(p.profile_id, 16)
            .unwrap_or(0)
            .to_be_bytes(),
    );
    id.extend_from_slice(&u32::try_from(p.index).unwrap_or(u32::MAX).to_be_bytes());
    id.extend_from_slice(&u32::try_from(resource).unwrap_or(u32::MAX).to_be_bytes());
    if id.iter().all(|&b| b == 0) {
        // All zeroes is "invalid"; one bit keeps it a valid, still stable id.
        id[15] = 1;
    }
    id
}

fn count_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
