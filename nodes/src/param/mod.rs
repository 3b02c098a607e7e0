//! The declared parameter schema of a node kind, and typed access to a node's params.
//!
//! Params are stored by name as JSON values ([`Params`] is a sorted map, so files and
//! cache keys are deterministic, and migrations work on JSON). A kind declares its params
//! once with [`params!`](crate::params): a struct whose fields carry their [`ParamSpec`]s.
//! The editor draws widgets from the specs, `quantgraph check` validates against them, and
//! evaluation receives the struct ([`KindParams::from_params`]: defaults filled, values
//! checked, unknown names and unknown record fields refused).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
pub mod typed;
pub use typed::{KindParams, NoParams, ParamValue};

/// A node's parameters, by name. Sorted, so files and hashes are deterministic.
pub type Params = BTreeMap<String, Json>;

/// What kind of value a parameter holds, with its constraints and default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ParamKind {
    Float {
        default: f64,
        min: f64,
        max: f64,
        step: f64,
        log_scale: bool,
    },
    Int {
        default: i64,
        min: i64,
        max: i64,
    },
    Bool {
        default: bool,
    },
    Choice {
        default: String,
        options: Vec<String>,
    },
    Text {
        default: String,
        multiline: bool,
    },
    /// A file or folder path; relative paths are relative to the graph file.
    Path {
        default: String,
        extensions: Vec<String>,
        directory: bool,
    },
    /// One or several tensor names, chosen from the model on input `from_input`.
    TensorName {
        from_input: String,
        multiple: bool,
    },
    /// A list of records, each with the given fields.
    List {
        fields: Vec<ParamSpec>,
    },
    /// A short list of finite numbers in [min, max] (e.g. a per-channel mean), with one of
    /// the allowed lengths (any length when `lengths` is empty). Stored as a JSON array; the
    /// editor and `--set` take it as comma-separated text.
    Floats {
        default: Vec<f64>,
        min: f64,
        max: f64,
        lengths: Vec<usize>,
    },
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    pub label: String,
    pub doc: String,
    pub kind: ParamKind,
}

impl ParamSpec {
    fn new(name: &str, label: &str, kind: ParamKind) -> Self {
        Self { name: name.into(), label: label.into(), doc: String::new(), kind }
    }
    pub fn float(name: &str, label: &str, default: f64, min: f64, max: f64) -> Self {
        Self::new(name, label, ParamKind::Float { default, min, max, step: 0.0, log_scale: false })
    }
    pub fn int(name: &str, label: &str, default: i64, min: i64, max: i64) -> Self {
        Self::new(name, label, ParamKind::Int { default, min, max })
    }
    pub fn bool(name: &str, label: &str, default: bool) -> Self {
        Self::new(name, label, ParamKind::Bool { default })
    }
    pub fn choice(name: &str, label: &str, default: &str, options: &[&str]) -> Self {
        Self::new(
            name,
            label,
            ParamKind::Choice { default: default.into(), options: options.iter().map(|s| (*s).into()).collect() },
        )
    }
    pub fn text(name: &str, label: &str, default: &str) -> Self {
        Self::new(name, label, ParamKind::Text { default: default.into(), multiline: false })
    }
    pub fn path(name: &str, label: &str, default: &str, extensions: &[&str], directory: bool) -> Self {
        Self::new(
            name,
            label,
            ParamKind::Path {
                default: default.into(),
                extensions: extensions.iter().map(|s| (*s).into()).collect(),
                directory,
            },
        )
    }
    pub fn tensor_name(name: &str, label: &str, from_input: &str, multiple: bool) -> Self {
        Self::new(name, label, ParamKind::TensorName { from_input: from_input.into(), multiple })
    }
    pub fn list(name: &str, label: &str, fields: Vec<ParamSpec>) -> Self {
        Self::new(name, label, ParamKind::List { fields })
    }
    /// A list of numbers in [min, max] whose length is one of `lengths` (any when empty).
    pub fn floats(name: &str, label: &str, default: &[f64], min: f64, max: f64, lengths: &[usize]) -> Self {
        Self::new(name, label, ParamKind::Floats { default: default.to_vec(), min, max, lengths: lengths.to_vec() })
    }
    pub fn with_doc(mut self, doc: &str) -> Self {
        self.doc = doc.into();
        self
    }
    /// Set the step of a float (for sliders) and whether its slider is logarithmic.
    pub fn with_step(mut self, new_step: f64, log: bool) -> Self {
        if let ParamKind::Float { step, log_scale, .. } = &mut self.kind {
            *step = new_step;
            *log_scale = log;
        }
        self
    }

    /// The default value as JSON.
    pub fn default_value(&self) -> Json {
        match &self.kind {
            ParamKind::Float { default, .. } => Json::from(*default),
            ParamKind::Int { default, .. } => Json::from(*default),
            ParamKind::Bool { default } => Json::from(*default),
            ParamKind::Choice { default, .. } | ParamKind::Text { default, .. } | ParamKind::Path { default, .. } => {
                Json::from(default.clone())
            }
            ParamKind::TensorName { multiple: true, .. } | ParamKind::List { .. } => Json::Array(Vec::new()),
            ParamKind::TensorName { multiple: false, .. } => Json::from(""),
            ParamKind::Floats { default, .. } => Json::Array(default.iter().map(|x| Json::from(*x)).collect()),
        }
    }

    /// Check a value against this spec. The message says what was expected and found.
    pub fn validate(&self, value: &Json) -> Result<(), String> {
        let found = || describe(value);
        match &self.kind {
            ParamKind::Float { min, max, .. } => {
                let Some(x) = value.as_f64() else {
                    return Err(format!("expected a number, found {}", found()));
                };
                if !x.is_finite() || x < *min || x > *max {
                    return Err(format!("expected a number in [{min}, {max}], found {x}"));
                }
            }
            ParamKind::Int { min, max, .. } => {
                let Some(x) = value.as_i64() else {
                    return Err(format!("expected an integer, found {}", found()));
                };
                if x < *min || x > *max {
                    return Err(format!("expected an integer in [{min}, {max}], found {x}"));
                }
            }
            ParamKind::Bool { .. } => {
                if !value.is_boolean() {
                    return Err(format!("expected true or false, found {}", found()));
                }
            }
            ParamKind::Choice { options, .. } => {
                let Some(s) = value.as_str() else {
                    return Err(format!("expected one of {}, found {}", options.join(", "), found()));
                };
                if !options.iter().any(|o| o == s) {
                    return Err(format!("expected one of {}, found '{s}'", options.join(", ")));
                }
            }
            ParamKind::Text { .. } | ParamKind::Path { .. } | ParamKind::TensorName { multiple: false, .. } => {
                if !value.is_string() {
                    return Err(format!("expected text, found {}", found()));
                }
            }
            ParamKind::TensorName { multiple: true, .. } => {
                let ok = value.as_array().is_some_and(|a| a.iter().all(Json::is_string));
                if !ok {
                    return Err(format!("expected a list of tensor names, found {}", found()));
                }
            }
            ParamKind::List { fields } => {
                let Some(items) = value.as_array() else {
                    return Err(format!("expected a list, found {}", found()));
                };
                for (i, item) in items.iter().enumerate() {
                    let Some(obj) = item.as_object() else {
                        return Err(format!("item {}: expected a record, found {}", i + 1, describe(item)));
                    };
                    let label = match obj.values().find_map(Json::as_str) {
                        Some(name) => format!("item {} ('{name}')", i + 1),
                        None => format!("item {}", i + 1),
                    };
                    // A misspelled field ('sacle') would otherwise be ignored silently.
                    for key in obj.keys() {
                        if !fields.iter().any(|f| &f.name == key) {
                            let known: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                            return Err(format!(
                                "{label}: unknown field '{key}' (expected one of {})",
                                known.join(", ")
                            ));
                        }
                    }
                    for f in fields {
                        if let Some(v) = obj.get(&f.name) {
                            f.validate(v).map_err(|e| format!("{label}, field '{}': {e}", f.name))?;
                        }
                    }
                }
            }
            ParamKind::Floats { min, max, lengths, .. } => {
                let numbers = value.as_array().and_then(|a| a.iter().map(Json::as_f64).collect::<Option<Vec<f64>>>());
                let Some(numbers) = numbers else {
                    return Err(format!("expected a list of numbers, found {}", found()));
                };
                if !lengths.is_empty() && !lengths.contains(&numbers.len()) {
                    let found = match numbers.len() {
                        0 => "none".to_owned(),
                        1 => "1 number".to_owned(),
                        n => format!("{n} numbers"),
                    };
                    return Err(format!("expected {}, found {found}", count_words(lengths)));
                }
                if let Some(x) = numbers.iter().find(|x| !x.is_finite() || **x < *min || **x > *max) {
                    return Err(format!("expected numbers in [{min}, {max}], found {x}"));
                }
            }
        }
        Ok(())
    }
}

/// "none, 1 or 3 numbers" for the allowed lengths of a [`ParamKind::Floats`].
fn count_words(lengths: &[usize]) -> String {
    let words: Vec<String> = lengths.iter().map(|n| if *n == 0 { "none".to_owned() } else { n.to_string() }).collect();
    let list = match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => words.join(""),
    };
    let plural = lengths.last().is_some_and(|n| *n != 1);
    format!("{list} number{}", if plural { "s" } else { "" })
}

/// Comma-separated numbers as typed in the editor or given to `--set` ("0.5", "0.49, 0.48,
/// 0.45"; empty text is none): what a [`ParamKind::Floats`] param takes as text. Brackets
/// around the list are accepted. Infinite or NaN values are refused here, with the text.
pub fn parse_floats(text: &str) -> Result<Vec<f64>, String> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']').trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let numbers: Option<Vec<f64>> = t.split(',').map(|p| p.trim().parse::<f64>().ok()).collect();
    match numbers {
        Some(v) if v.iter().all(|x| x.is_finite()) => Ok(v),
        Some(_) => Err(format!("expected finite numbers, found '{text}'")),
        None => Err(format!("expected numbers separated by commas, found '{text}'")),
    }
}

/// Numbers as [`parse_floats`] reads them back ("0.5, 0.25, 0").
pub fn format_floats(values: &[f64]) -> String {
    values.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

fn describe(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("{b}"),
        Json::Number(n) => format!("{n}"),
        Json::String(s) => format!("text '{s}'"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a record".into(),
    }
}

/// The default params of a schema.
pub fn defaults(specs: &[ParamSpec]) -> Params {
    specs.iter().map(|s| (s.name.clone(), s.default_value())).collect()
}

/// Validate params against a schema: every problem, as `(param, message)`.
pub fn validate(specs: &[ParamSpec], params: &Params) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for (name, value) in params {
        match specs.iter().find(|s| &s.name == name) {
            Some(spec) => {
                if let Err(e) = spec.validate(value) {
                    problems.push((name.clone(), e));
                }
            }
            None => problems.push((name.clone(), "this kind has no parameter of that name".into())),
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn validation_says_what_was_expected_and_found() {
        let spec = ParamSpec::float("scale", "Scale", 1.0, 0.0, 10.0);
        assert_eq!(spec.validate(&Json::from(3.0)), Ok(()));
        assert_eq!(spec.validate(&Json::from(11.0)).unwrap_err(), "expected a number in [0, 10], found 11");
        assert_eq!(spec.validate(&Json::from("x")).unwrap_err(), "expected a number, found text 'x'");
        let l = ParamSpec::list("edits", "Edits", vec![ParamSpec::text("tensor", "Tensor", ""), spec.clone()]);
        let misspelled = serde_json::json!([{"tensor": "t", "sacle": 0.5}]);
        assert_eq!(
            l.validate(&misspelled).unwrap_err(),
            "item 1 ('t'): unknown field 'sacle' (expected one of tensor, scale)"
        );
        assert_eq!(l.validate(&serde_json::json!([{"tensor": "t", "scale": 0.5}])), Ok(()));
        let f = ParamSpec::floats("mean", "Mean", &[], -10.0, 10.0, &[0, 1, 3]);
        assert_eq!(f.default_value(), serde_json::json!([]));
        assert_eq!(f.validate(&serde_json::json!([0.5, 0.25, 0])), Ok(()));
        assert_eq!(
            f.validate(&serde_json::json!([1, 2])).unwrap_err(),
            "expected none, 1 or 3 numbers, found 2 numbers"
        );
        assert_eq!(f.validate(&serde_json::json!([1, 20, 3])).unwrap_err(), "expected numbers in [-10, 10], found 20");
        assert_eq!(f.validate(&Json::from("0.5")).unwrap_err(), "expected a list of numbers, found text '0.5'");
        assert_eq!(parse_floats(" 0.5, 0.25,0 "), Ok(vec![0.5, 0.25, 0.0]));
        assert_eq!(parse_floats("[1, 2]"), Ok(vec![1.0, 2.0]));
        assert_eq!(parse_floats(""), Ok(vec![]));
        assert_eq!(parse_floats("NaN").unwrap_err(), "expected finite numbers, found 'NaN'");
        assert_eq!(parse_floats("1,,2").unwrap_err(), "expected numbers separated by commas, found '1,,2'");
        assert_eq!(parse_floats(&format_floats(&[0.4914, 0.1, 3.0])), Ok(vec![0.4914, 0.1, 3.0]));
        let c = ParamSpec::choice("split", "Split", "test", &["test", "train"]);
        assert_eq!(c.validate(&Json::from("val")).unwrap_err(), "expected one of test, train, found 'val'");
    }
}
