//! The request's [`ProfilesDictionary`] being built: every string, function,
//! location, stack and attribute once, each table starting with its zero value
//! (index 0 = "not set"), as the proto requires. Keys borrow from the input where
//! they can, so a string is copied only into the table itself.

use rustc_hash::FxHashMap;

use super::frame_type::{self, FrameType};
use super::proto::{
    any_value, AnyValue, Function, KeyValueAndUnit, Line, Link, Location, Mapping,
    ProfilesDictionary, Stack,
};

/// An attribute's value, hashable for interning.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    Str(i32),
    Int(i64),
}

#[derive(Default)]
pub struct Dictionary<'a> {
    strings: FxHashMap<&'a str, i32>,
    string_table: Vec<String>,
    /// Frame text -> its location (one function and one location per frame).
    frames: FxHashMap<&'a str, i32>,
    function_table: Vec<Function>,
    location_table: Vec<Location>,
    stacks: FxHashMap<Vec<i32>, i32>,
    stack_table: Vec<Stack>,
    attributes: FxHashMap<(i32, Value), i32>,
    attribute_table: Vec<KeyValueAndUnit>,
}

impl<'a> Dictionary<'a> {
    pub fn new(capacity: usize) -> Self {
        let mut d = Dictionary {
            strings: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            string_table: Vec::with_capacity(capacity),
            frames: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            function_table: Vec::with_capacity(capacity),
            location_table: Vec::with_capacity(capacity),
            ..Dictionary::default()
        };
        d.strings.insert("", 0);
        d.string_table.push(String::new());
        d.function_table.push(Function::default());
        d.location_table.push(Location::default());
        d.stack_table.push(Stack::default());
        d.attribute_table.push(KeyValueAndUnit::default());
        d
    }

    /// A string borrowed from the input.
    pub fn string(&mut self, s: &'a str) -> i32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = index(self.string_table.len());
        self.string_table.push(s.to_owned());
        self.strings.insert(s, i);
        i
    }

    /// A string-valued attribute.
    pub fn attribute_str(&mut self, key: &'a str, value: &'a str) -> i32 {
        let k = self.string(key);
        let v = self.string(value);
        self.attribute(k, Value::Str(v))
    }

    /// An integer-valued attribute.
    pub fn attribute_int(&mut self, key: &'a str, value: i64) -> i32 {
        let k = self.string(key);
        self.attribute(k, Value::Int(value))
    }

    fn attribute(&mut self, key: i32, value: Value) -> i32 {
        let table = &mut self.attribute_table;
        let strings = &self.string_table;
        *self
            .attributes
            .entry((key, value.clone()))
            .or_insert_with(|| {
                let any = match value {
                    // The value inline: `string_value_strindex` (new in v1.10.0)
                    // is not read by every consumer yet.
                    Value::Str(i) => AnyValue::string(strings[i as usize].clone()),
                    Value::Int(n) => AnyValue::int(n),
                };
                table.push(KeyValueAndUnit {
                    key_strindex: key,
                    value: Some(any),
                    unit_strindex: 0,
                });
                index(table.len() - 1)
            })
    }

    /// The location of one frame: a function named by the frame's text, one line,
    /// and the frame's runtime in `profile.frame.type`.
    pub fn location(&mut self, frame: &'a str) -> i32 {
        if let Some(&i) = self.frames.get(frame) {
            return i;
        }
        let name = self.string(frame);
        let function_index = index(self.function_table.len());
        self.function_table.push(Function {
            name_strindex: name,
            system_name_strindex: name,
            ..Function::default()
        });
        let kind = self.attribute_str(frame_type::KEY, FrameType::of(frame).name());
        let i = index(self.location_table.len());
        self.location_table.push(Location {
            lines: vec![Line {
                function_index,
                ..Line::default()
            }],
            attribute_indices: vec![kind],
            ..Location::default()
        });
        self.frames.insert(frame, i);
        i
    }

    /// The stack of a folded stack (root first): its locations leaf first, as
    /// OTLP lists them.
    pub fn stack(&mut self, frames: &'a str) -> i32 {
        let mut locations: Vec<i32> = frames.split(';').map(|f| self.location(f)).collect();
        locations.reverse();
        if let Some(&i) = self.stacks.get(&locations) {
            return i;
        }
        let i = index(self.stack_table.len());
        self.stack_table.push(Stack {
            location_indices: locations.clone(),
        });
        self.stacks.insert(locations, i);
        i
    }

    pub fn finish(self) -> ProfilesDictionary {
        ProfilesDictionary {
            mapping_table: vec![Mapping::default()],
            location_table: self.location_table,
            function_table: self.function_table,
            // The proto asks for 16 and 8 zero bytes here, for decoders that check
            // the lengths of trace and span ids.
            link_table: vec![Link {
                trace_id: vec![0; 16],
                span_id: vec![0; 8],
            }],
            string_table: self.string_table,
            attribute_table: self.attribute_table,
            stack_table: self.stack_table,
        }
    }
}

/// A table index; tables past `i32::MAX` entries cannot be written (a request
/// that large is far past every receiver's limit, and parts are cut long before).
fn index(len: usize) -> i32 {
    i32::try_from(len).expect("an OTLP dictionary table past i32::MAX entries")
}

/// The string value of an attribute, for readers (tests, tools).
pub fn attribute_value(d: &ProfilesDictionary, i: i32) -> Option<(&str, &any_value::Value)> {
    let a = d.attribute_table.get(usize::try_from(i).ok()?)?;
    let key = d.string_table.get(usize::try_from(a.key_strindex).ok()?)?;
    Some((key.as_str(), a.value.as_ref()?.value.as_ref()?))
}
