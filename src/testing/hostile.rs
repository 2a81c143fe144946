//! Generated hostile input for the parsers' property tests (test builds
//! only): a fixed-seed proptest configuration, arbitrary JSON, hostile JSON
//! leaves (wrong types, huge and negative numbers, deep nesting) and
//! single-field mutations of a valid document. It only builds inputs; each
//! parser's own test module states the properties.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::Value;

/// A deterministic configuration: `cases` cases from a fixed seed, nothing
/// persisted, so every run (and CI) tries the same inputs.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x7265_676b_6565_7065),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// Arrays nested `depth` deep around `null`, as text.
pub fn nested_arrays(depth: usize) -> String {
    format!("{}null{}", "[".repeat(depth), "]".repeat(depth))
}

/// Objects nested `depth` deep (`{"a":{"a":...}}`) as a value.
fn nested_objects(depth: usize) -> Value {
    let mut value = Value::Null;
    for _ in 0..depth {
        value = serde_json::json!({ "a": value });
    }
    value
}

/// A JSON leaf chosen to break a reader: every type, the edges of the
/// integer and float ranges, negative numbers, empty and long strings,
/// strings that look like digests or dates, and deep nesting.
pub fn hostile_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(0)),
        Just(serde_json::json!(i64::MIN)),
        Just(serde_json::json!(i64::MAX)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(1.5)),
        Just(serde_json::json!(-1e308)),
        Just(serde_json::json!(1e308)),
        any::<i64>().prop_map(|number| serde_json::json!(number)),
        Just(Value::String(String::new())),
        Just(Value::String("sha256:".into())),
        Just(Value::String(":".into())),
        Just(Value::String("9999-12-31T23:59:59Z".into())),
        Just(Value::String("x".repeat(10_000))),
        ".{0,12}".prop_map(Value::String),
        Just(Value::Array(Vec::new())),
        Just(Value::Object(serde_json::Map::new())),
        Just(nested_objects(100)),
    ]
}

/// Any JSON value, a few levels deep, with hostile leaves.
pub fn json_value() -> impl Strategy<Value = Value> {
    hostile_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z]{0,8}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A key of an object.
    Key(String),
    /// An index of an array.
    Index(usize),
}

/// What a mutation does at its path.
#[derive(Debug, Clone)]
pub enum Change {
    /// Puts this value there.
    Replace(Value),
    /// Removes the key (or array element).
    Remove,
}

/// A document with one field changed, and where.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// The changed document.
    pub value: Value,
    /// The path of the changed field.
    pub path: Vec<Step>,
}

impl Mutation {
    /// The object keys along the path (the names an error may give).
    pub fn keys(&self) -> Vec<&str> {
        self.path
            .iter()
            .filter_map(|step| match step {
                Step::Key(key) => Some(key.as_str()),
                Step::Index(_) => None,
            })
            .collect()
    }

    /// Whether `message` names one of the keys on the path (a plural key
    /// may be named in the singular, `layers` as `layer 0`).
    pub fn named_in(&self, message: &str) -> bool {
        self.keys()
            .iter()
            .any(|key| message.contains(key) || message.contains(key.trim_end_matches('s')))
    }
}

/// Every path in `value` (the root excluded), parents before children.
pub fn paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    prefix.push(Step::Key(key.clone()));
                    out.push(prefix.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    prefix.push(Step::Index(index));
                    out.push(prefix.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// `value` with `change` applied at `path` (which must exist).
pub fn apply(value: &Value, path: &[Step], change: &Change) -> Value {
    let mut value = value.clone();
    let Some((last, parents)) = path.split_last() else {
        return value;
    };
    let mut node = &mut value;
    for step in parents {
        node = match (step, node) {
            (Step::Key(key), Value::Object(object)) => object.get_mut(key).expect("path exists"),
            (Step::Index(index), Value::Array(items)) => &mut items[*index],
            _ => unreachable!("path exists"),
        };
    }
    match (last, node, change) {
        (Step::Key(key), Value::Object(object), Change::Replace(new)) => {
            object.insert(key.clone(), new.clone());
        }
        (Step::Key(key), Value::Object(object), Change::Remove) => {
            object.remove(key);
        }
        (Step::Index(index), Value::Array(items), Change::Replace(new)) => {
            items[*index] = new.clone();
        }
        (Step::Index(index), Value::Array(items), Change::Remove) => {
            items.remove(*index);
        }
        _ => unreachable!("path exists"),
    }
    value
}

/// Single-field mutations of `valid`: one field replaced by a hostile leaf
/// or removed.
pub fn mutation(valid: Value) -> impl Strategy<Value = Mutation> {
    let all_paths = paths(&valid);
    assert!(!all_paths.is_empty(), "a document with fields to mutate");
    let change = prop_oneof![
        4 => hostile_leaf().prop_map(Change::Replace),
        1 => Just(Change::Remove),
    ];
    (prop::sample::select(all_paths), change).prop_map(move |(path, change)| Mutation {
        value: apply(&valid, &path, &change),
        path,
    })
}
