use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::proto::any_value::Value;
use super::proto::{ExportProfilesServiceRequest, KeyValue, ProfilesDictionary};
use super::*;

fn stack(frames: &str, count: u64, container: Option<&str>, pid: u32) -> Stack {
    let mut s = Stack::new(frames, count);
    s.container = container.map(Arc::from);
    s.pid = pid;
    s
}

fn input<'a>(
    stacks: &'a [Stack],
    labels: &'a LabelSet,
    part: Option<&'a PartInfo<'a>>,
) -> OtlpInput<'a> {
    OtlpInput {
        window: Window::new(60_000, 120_000),
        stacks,
        labels,
        host: "web-1",
        sample_rate_hz: 11,
        part,
    }
}

fn round_trip(i: &OtlpInput<'_>) -> ExportProfilesServiceRequest {
    decode_request(&encode_request(i)).unwrap()
}

fn s(d: &ProfilesDictionary, i: i32) -> &str {
    &d.string_table[i as usize]
}

/// Every sample as `root;...;leaf` and its value, over all resources.
fn stacks_of(r: &ExportProfilesServiceRequest) -> BTreeMap<String, i64> {
    let d = r.dictionary.as_ref().unwrap();
    let mut out = BTreeMap::new();
    for rp in &r.resource_profiles {
        for p in &rp.scope_profiles[0].profiles {
            for sample in &p.samples {
                let st = &d.stack_table[sample.stack_index as usize];
                let frames: Vec<&str> = st
                    .location_indices
                    .iter()
                    .rev()
                    .map(|&l| {
                        let loc = &d.location_table[l as usize];
                        let f = &d.function_table[loc.lines[0].function_index as usize];
                        s(d, f.name_strindex)
                    })
                    .collect();
                *out.entry(frames.join(";")).or_default() += sample.values[0];
            }
        }
    }
    out
}

fn attrs(kv: &[KeyValue]) -> Vec<(String, String)> {
    kv.iter()
        .map(|a| {
            let v = match a.value.as_ref().unwrap().value.as_ref().unwrap() {
                Value::StringValue(s) => s.clone(),
                Value::IntValue(n) => n.to_string(),
            };
            (a.key.clone(), v)
        })
        .collect()
}

fn frame_type_of(d: &ProfilesDictionary, frame: &str) -> String {
    let loc = d
        .location_table
        .iter()
        .find(|l| {
            l.lines.first().is_some_and(|line| {
                s(
                    d,
                    d.function_table[line.function_index as usize].name_strindex,
                ) == frame
            })
        })
        .unwrap();
    let found: Vec<String> = loc
        .attribute_indices
        .iter()
        .filter_map(|&i| match attribute_value(d, i) {
            Some((frame_type::KEY, Value::StringValue(v))) => Some(v.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(found.len(), 1, "{frame}: {found:?}");
    found[0].clone()
}

#[test]
fn round_trip_keeps_stacks_totals_resources_and_frame_types() {
    let stacks = vec![
        stack("bash;main;read_[k]", 3, None, 0),
        stack("bash;main;write", 5, Some("c1"), 0),
        stack("python3;main (x.py:1)_[p];read_[k]", 1, Some("c1"), 42),
        stack("ruby;fib - a.rb:1_[rb]", 2, None, 0),
        stack("java;com/A::run_[j];java/util/Map::get_[i]", 4, None, 0),
        stack("node;JS:*fib /a.js:1:1_[j]", 6, None, 0),
    ];
    let labels = LabelSet::default()
        .with("service", "shop")
        .unwrap()
        .with("env", "prod")
        .unwrap()
        .with("pod", "shop-7d")
        .unwrap();
    let r = round_trip(&input(&stacks, &labels, None));
    let want: BTreeMap<String, i64> = stacks
        .iter()
        .map(|s| (s.frames.to_string(), s.count as i64))
        .collect();
    assert_eq!(stacks_of(&r), want);

    // Resources: the window's own, container c1, container c1 with pid 42.
    assert_eq!(r.resource_profiles.len(), 3);
    let resources: Vec<Vec<(String, String)>> = r
        .resource_profiles
        .iter()
        .map(|rp| attrs(&rp.resource.as_ref().unwrap().attributes))
        .collect();
    let base = |extra: &[(&str, &str)]| {
        let mut v = vec![("host.name".to_string(), "web-1".to_string())];
        v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
        v.extend(
            [
                ("env", "prod"),
                ("k8s.pod.name", "shop-7d"),
                ("service.name", "shop"),
            ]
            .iter()
            .map(|(k, x)| (k.to_string(), x.to_string())),
        );
        v
    };
    assert_eq!(resources[0], base(&[]));
    assert_eq!(resources[1], base(&[("container.id", "c1")]));
    assert_eq!(
        resources[2],
        base(&[("container.id", "c1"), ("process.pid", "42")])
    );
    // process.pid is an integer, as the conventions type it.
    let pid = &r.resource_profiles[2].resource.as_ref().unwrap().attributes[2];
    assert_eq!(pid.value.as_ref().unwrap().value, Some(Value::IntValue(42)));

    let d = r.dictionary.as_ref().unwrap();
    for (frame, want) in [
        ("read_[k]", "kernel"),
        ("main", "native"),
        ("bash", "native"),
        ("main (x.py:1)_[p]", "cpython"),
        ("fib - a.rb:1_[rb]", "ruby"),
        ("com/A::run_[j]", "jvm"),
        ("java/util/Map::get_[i]", "jvm"),
        ("JS:*fib /a.js:1:1_[j]", "v8js"),
    ] {
        assert_eq!(frame_type_of(d, frame), want, "{frame}");
    }

    // Profile metadata.
    for rp in &r.resource_profiles {
        let sp = &rp.scope_profiles[0];
        assert_eq!(sp.scope.as_ref().unwrap().name, "profpipe");
        let p = &sp.profiles[0];
        let st = p.sample_type.unwrap();
        assert_eq!(
            (s(d, st.type_strindex), s(d, st.unit_strindex)),
            ("samples", "count")
        );
        let pt = p.period_type.unwrap();
        assert_eq!(
            (s(d, pt.type_strindex), s(d, pt.unit_strindex)),
            ("cpu", "nanoseconds")
        );
        assert_eq!(p.period, 90_909_091);
        assert_eq!(p.time_unix_nano, 60_000_000_000);
        assert_eq!(p.duration_nano, 60_000_000_000);
        assert!(p.profile_id.is_empty());
        assert!(p.attribute_indices.is_empty());
        // thread.name: each sample's first frame.
        for sample in &p.samples {
            let names: Vec<&str> = sample
                .attribute_indices
                .iter()
                .filter_map(|&i| match attribute_value(d, i) {
                    Some(("thread.name", Value::StringValue(v))) => Some(v.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(names.len(), 1);
            assert!(["bash", "python3", "ruby", "java", "node"].contains(&names[0]));
        }
    }
}

#[test]
fn the_dictionary_holds_everything_once_and_starts_with_zero_values() {
    // `main` and `read_[k]` repeat across stacks, one stack repeats in two
    // resources, "count" is also the unit's name.
    let stacks = vec![
        stack("bash;main;read_[k]", 3, None, 0),
        stack("bash;main;read_[k]", 1, Some("c1"), 0),
        stack("zsh;main;count", 5, None, 0),
        stack("zsh;main", 5, None, 7),
    ];
    let labels = LabelSet::default().with("service", "shop").unwrap();
    let r = round_trip(&input(&stacks, &labels, None));
    let d = r.dictionary.as_ref().unwrap();

    assert_eq!(d.string_table[0], "");
    let strings: HashSet<&String> = d.string_table.iter().collect();
    assert_eq!(strings.len(), d.string_table.len(), "strings repeat");
    assert_eq!(d.string_table.iter().filter(|t| *t == "count").count(), 1);

    // Zero values first.
    assert_eq!(d.mapping_table, vec![proto::Mapping::default()]);
    assert_eq!(d.location_table[0], proto::Location::default());
    assert_eq!(d.function_table[0], proto::Function::default());
    assert_eq!(d.stack_table[0], proto::Stack::default());
    assert_eq!(d.attribute_table[0], proto::KeyValueAndUnit::default());
    assert_eq!(d.link_table.len(), 1);
    assert_eq!(
        (
            d.link_table[0].trace_id.len(),
            d.link_table[0].span_id.len()
        ),
        (16, 8)
    );
    assert!(d.link_table[0].trace_id.iter().all(|&b| b == 0));

    // bash, main, read_[k], zsh, count: five functions and five locations.
    let names: Vec<&str> = d.function_table[1..]
        .iter()
        .map(|f| s(d, f.name_strindex))
        .collect();
    assert_eq!(names.len(), 5);
    assert_eq!(names.iter().collect::<HashSet<_>>().len(), 5);
    assert_eq!(d.location_table.len(), 1 + 5);
    let fns: HashSet<i32> = d.location_table[1..]
        .iter()
        .map(|l| l.lines[0].function_index)
        .collect();
    assert_eq!(fns.len(), 5);

    // Three distinct stacks (the first two are the same), each once, leaf first.
    assert_eq!(d.stack_table.len(), 1 + 3);
    let stack_set: HashSet<&Vec<i32>> = d.stack_table.iter().map(|s| &s.location_indices).collect();
    assert_eq!(stack_set.len(), 4);
    let first = &d.stack_table[1].location_indices;
    let leaf = &d.location_table[first[0] as usize];
    assert_eq!(
        s(
            d,
            d.function_table[leaf.lines[0].function_index as usize].name_strindex
        ),
        "read_[k]"
    );

    // Attributes once: two frame types (kernel, native), two thread names.
    let mut seen = HashSet::new();
    for a in &d.attribute_table[1..] {
        let v = format!("{:?}", a.value);
        assert!(seen.insert((a.key_strindex, v)), "attribute repeats: {a:?}");
    }
    assert_eq!(d.attribute_table.len(), 1 + 4);

    // Resources: (none, 0), (none, 7), (c1, 0); the first and last share a stack.
    assert_eq!(r.resource_profiles.len(), 3);
    let first_stack =
        |i: usize| r.resource_profiles[i].scope_profiles[0].profiles[0].samples[0].stack_index;
    assert_eq!(first_stack(0), first_stack(2));
    let total: i64 = r
        .resource_profiles
        .iter()
        .flat_map(|rp| &rp.scope_profiles[0].profiles[0].samples)
        .map(|s| s.values[0])
        .sum();
    assert_eq!(total, 14);
}

#[test]
fn an_empty_window_is_one_profile_without_samples() {
    let labels = LabelSet::default();
    let mut i = input(&[], &labels, None);
    i.sample_rate_hz = 0;
    let r = round_trip(&i);
    assert_eq!(r.resource_profiles.len(), 1);
    let p = &r.resource_profiles[0].scope_profiles[0].profiles[0];
    assert!(p.samples.is_empty());
    assert_eq!(p.period, 0);
    assert_eq!(p.duration_nano, 60_000_000_000);
    let d = r.dictionary.as_ref().unwrap();
    assert_eq!(d.stack_table.len(), 1);
    assert_eq!(d.location_table.len(), 1);
    assert_eq!(
        attrs(&r.resource_profiles[0].resource.as_ref().unwrap().attributes),
        [("host.name".to_string(), "web-1".to_string())]
    );
}

#[test]
fn a_split_window_names_its_part_and_keeps_ids_stable_and_distinct() {
    let stacks = vec![stack("a;b", 1, None, 0), stack("a;c", 2, Some("k"), 0)];
    let labels = LabelSet::default();
    let part = |index| PartInfo {
        profile_id: "7d3f0c2a9b1e4f60",
        index,
        count: 3,
    };
    let (p0, p1) = (part(0), part(1));
    let r0 = round_trip(&input(&stacks, &labels, Some(&p0)));
    let r1 = round_trip(&input(&stacks, &labels, Some(&p1)));
    let d = r1.dictionary.as_ref().unwrap();
    let prof = &r1.resource_profiles[0].scope_profiles[0].profiles[0];
    let mut found = BTreeMap::new();
    for &i in &prof.attribute_indices {
        let (k, v) = attribute_value(d, i).unwrap();
        found.insert(k.to_string(), v.clone());
    }
    assert_eq!(
        found["profpipe.profile_id"],
        Value::StringValue("7d3f0c2a9b1e4f60".into())
    );
    assert_eq!(found["profpipe.part"], Value::IntValue(1));
    assert_eq!(found["profpipe.parts"], Value::IntValue(3));

    let ids = |r: &ExportProfilesServiceRequest| -> Vec<Vec<u8>> {
        r.resource_profiles
            .iter()
            .map(|rp| rp.scope_profiles[0].profiles[0].profile_id.clone())
            .collect()
    };
    let all: Vec<Vec<u8>> = ids(&r0).into_iter().chain(ids(&r1)).collect();
    assert!(all
        .iter()
        .all(|id| id.len() == 16 && id.iter().any(|&b| b != 0)));
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 4, "ids repeat");
    // The same input gives the same ids (a retried part keeps them).
    assert_eq!(
        ids(&r0),
        ids(&round_trip(&input(&stacks, &labels, Some(&p0))))
    );
    assert_eq!(&all[0][..8], &0x7d3f0c2a9b1e4f60u64.to_be_bytes());
}

#[test]
fn a_response_with_partial_success_decodes() {
    use prost::Message;
    let resp = proto::ExportProfilesServiceResponse {
        partial_success: Some(proto::ExportProfilesPartialSuccess {
            rejected_profiles: 2,
            error_message: "too old".into(),
        }),
    };
    let back = decode_response(&resp.encode_to_vec()).unwrap();
    assert_eq!(back, resp);
    assert_eq!(decode_response(&[]).unwrap().partial_success, None);
    assert!(decode_request(&[0xff, 0xff, 0xff]).is_err());
}
