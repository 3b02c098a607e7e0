//! Typed params declared once: the [`params!`](crate::params) macro writes a kind's params
//! struct and its schema ([`ParamSpec`]s) from one declaration, and reads a node's JSON
//! params into the struct (defaults filled, every value checked against its spec, unknown
//! names refused). Migrations run on the JSON before it is typed.

use serde_json::Value as Json;

use super::{ParamKind, ParamSpec, Params};
use crate::error::NodeError;

/// A value a param can be read into: numbers, booleans, text, lists of names, and lists of
/// records declared with [`params!`](crate::params).
pub trait ParamValue: Sized {
    /// Read a value that already passed its spec's validation.
    fn from_json(value: &Json) -> Result<Self, String>;
    fn to_json(&self) -> Json;
    /// Check that the spec declared for a field of this type can hold it (the kind of
    /// widget, the range of an integer, the fields of a list's rows). Run at registration.
    fn check_spec(spec: &ParamSpec) -> Result<(), String>;
}

/// `Ok` when the spec is of a kind the field's type reads (`fits`), else what was expected.
fn expect_kind(spec: &ParamSpec, fits: bool, ty: &str, expected: &str) -> Result<(), String> {
    if fits {
        Ok(())
    } else {
        wrong_kind(spec, ty, expected)
    }
}

fn wrong_kind(spec: &ParamSpec, ty: &str, expected: &str) -> Result<(), String> {
    Err(format!("a {ty} field is declared with {expected}, but its spec is {}", kind_name(&spec.kind)))
}

fn kind_name(kind: &ParamKind) -> &'static str {
    match kind {
        ParamKind::Float { .. } => "float(…)",
        ParamKind::Int { .. } => "int(…)",
        ParamKind::Bool { .. } => "bool(…)",
        ParamKind::Choice { .. } => "choice(…)",
        ParamKind::Text { .. } => "text(…)",
        ParamKind::Path { .. } => "path(…)",
        ParamKind::TensorName { multiple: false, .. } => "tensor_name(…, false)",
        ParamKind::TensorName { multiple: true, .. } => "tensor_name(…, true)",
        ParamKind::List { .. } => "list(…)",
        ParamKind::Floats { .. } => "floats(…)",
    }
}

impl ParamValue for f64 {
    fn from_json(value: &Json) -> Result<Self, String> {
        value.as_f64().ok_or_else(|| "expected a number".into())
    }
    fn to_json(&self) -> Json {
        Json::from(*self)
    }
    fn check_spec(spec: &ParamSpec) -> Result<(), String> {
        expect_kind(spec, matches!(spec.kind, ParamKind::Float { .. }), "f64", "float(…)")
    }
}

impl ParamValue for i64 {
    fn from_json(value: &Json) -> Result<Self, String> {
        value.as_i64().ok_or_else(|| "expected an integer".into())
    }
    fn to_json(&self) -> Json {
        Json::from(*self)
    }
    fn check_spec(spec: &ParamSpec) -> Result<(), String> {
        expect_kind(spec, matches!(spec.kind, ParamKind::Int { .. }), "i64", "int(…)")
    }
}

macro_rules! unsigned_param {
    ($($ty:ty),*) => {$(
        impl ParamValue for $ty {
            fn from_json(value: &Json) -> Result<Self, String> {
                let v = value.as_i64().ok_or("expected an integer")?;
                <$ty>::try_from(v).map_err(|_| format!("expected a non-negative integer, found {v}"))
            }
            fn to_json(&self) -> Json {
                Json::from(*self)
            }
            fn check_spec(spec: &ParamSpec) -> Result<(), String> {
                let ParamKind::Int { min, max, .. } = spec.kind else {
                    return wrong_kind(spec, stringify!($ty), "int(…)");
                };
                // The range must fit the type, or a value the widget allows fails to read.
                if min < 0 || <$ty>::try_from(max).is_err() {
                    return Err(format!("the range [{min}, {max}] does not fit {}", stringify!($ty)));
                }
                Ok(())
            }
        }
    )*};
}
unsigned_param!(u32, u64, usize);

impl ParamValue for bool {
    fn from_json(value: &Json) -> Result<Self, String> {
        value.as_bool().ok_or_else(|| "expected true or false".into())
    }
    fn to_json(&self) -> Json {
        Json::from(*self)
    }
    fn check_spec(spec: &ParamSpec) -> Result<(), String> {
        expect_kind(spec, matches!(spec.kind, ParamKind::Bool { .. }), "bool", "bool(…)")
    }
}

impl ParamValue for String {
    fn from_json(value: &Json) -> Result<Self, String> {
        value.as_str().map(str::to_owned).ok_or_else(|| "expected text".into())
    }
    fn to_json(&self) -> Json {
        Json::from(self.as_str())
    }
    fn check_spec(spec: &ParamSpec) -> Result<(), String> {
        expect_kind(
            spec,
            matches!(
                spec.kind,
                ParamKind::Choice { .. }
                    | ParamKind::Text { .. }
                    | ParamKind::Path { .. }
                    | ParamKind::TensorName { multiple: false, .. }
            ),
            "String",
            "choice, text, path or tensor_name(…, false)",
        )
    }
}

/// Tensor names (a multiple `tensor_name` param).
impl ParamValue for Vec<String> {
    fn from_json(value: &Json) -> Result<Self, String> {
        let items = value.as_array().ok_or("expected a list of names")?;
        items.iter().map(String::from_json).collect()
    }
    fn to_json(&self) -> Json {
        Json::Array(self.iter().map(String::to_json).collect())
    }
    fn check_spec(spec: &ParamSpec) -> Result<(), String> {
        expect_kind(
            spec,
            matches!(spec.kind, ParamKind::TensorName { multiple: true, .. }),
            "Vec<String>",
            "tensor_name(…, true)",
        )
    }
}

/// The numbers of a `floats` param.
impl ParamValue for Vec<f64> {
    fn from_json(value: &Json) -> Result<Self, String> {
        let items = value.as_array().ok_or("expected a list of numbers")?;
        items.iter().map(f64::from_json).collect()
    }
    fn to_json(&self) -> Json {
        Json::Array(self.iter().map(f64::to_json).collect())
    }
    fn check_spec(spec: &ParamSpec) -> Result<(), String> {
        expect_kind(spec, matches!(spec.kind, ParamKind::Floats { .. }), "Vec<f64>", "floats(…)")
    }
}

/// The records of a `list` param.
impl<T: KindParams> ParamValue for Vec<T> {
    fn from_json(value: &Json) -> Result<Self, String> {
        let items = value.as_array().ok_or("expected a list")?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let obj = item.as_object().ok_or_else(|| format!("item {}: expected a record", i + 1))?;
                let row: Params = obj.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                T::read(&row).map_err(|(field, e)| format!("item {}, field '{field}': {e}", i + 1))
            })
            .collect()
    }
    fn to_json(&self) -> Json {
        Json::Array(self.iter().map(|row| Json::Object(row.to_params().into_iter().collect())).collect())
    }
    fn check_spec(spec: &ParamSpec) -> Result<(), String> {
        let ParamKind::List { fields } = &spec.kind else {
            return wrong_kind(spec, "Vec<Row>", "list(…, Row::specs())");
        };
        // The rows the widget edits must be the rows the field reads.
        if *fields != T::specs() {
            return Err("the list's fields are not its row type's specs (declare it with list(…, Row::specs()))".into());
        }
        check_declaration::<T>().map_err(|e| format!("row: {e}"))
    }
}

/// A params struct declared with [`params!`](crate::params): a kind's params, or the
/// records of a list param.
pub trait KindParams: Sized + Send + Sync + 'static {
    /// The schema, in declaration order.
    fn specs() -> Vec<ParamSpec>;
    /// Read JSON params: defaults for missing names, each value checked against its spec,
    /// unknown names refused. `Err((param, message))`.
    fn read(params: &Params) -> Result<Self, (String, String)>;
    /// The params as JSON, every field written.
    fn to_params(&self) -> Params;
    /// Check each field's spec against its type ([`ParamValue::check_spec`]).
    fn check_fields() -> Result<(), String>;

    /// [`read`](Self::read), as the error a node reports.
    fn from_params(params: &Params) -> Result<Self, NodeError> {
        Self::read(params).map_err(|(param, message)| NodeError::param(param, message))
    }
}

/// Kinds without params.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NoParams;

impl KindParams for NoParams {
    fn specs() -> Vec<ParamSpec> {
        Vec::new()
    }
    fn read(params: &Params) -> Result<Self, (String, String)> {
        check_names(&[], params)?;
        Ok(Self)
    }
    fn to_params(&self) -> Params {
        Params::new()
    }
    fn check_fields() -> Result<(), String> {
        Ok(())
    }
}

/// Refuse names the schema does not declare.
pub fn check_names(specs: &[ParamSpec], params: &Params) -> Result<(), (String, String)> {
    for name in params.keys() {
        if !specs.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            let expected = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            return Err((
                name.clone(),
                format!("this kind has no parameter of that name (expected one of {expected})"),
            ));
        }
    }
    Ok(())
}

/// Read one declared field: its value or the spec's default, validated, then typed.
pub fn read_field<T: ParamValue>(specs: &[ParamSpec], params: &Params, name: &str) -> Result<T, (String, String)> {
    let spec = specs.iter().find(|s| s.name == name).ok_or_else(|| (name.to_owned(), "not declared".to_owned()))?;
    let value = params.get(name).cloned().unwrap_or_else(|| spec.default_value());
    spec.validate(&value).map_err(|e| (name.to_owned(), e))?;
    T::from_json(&value).map_err(|e| (name.to_owned(), e))
}

/// Check a declaration: each field's spec fits its type (integer ranges, list rows,
/// recursively), every default reads into its field and the defaults round-trip.
/// The registry runs it for every kind it registers (`NodeKind::check_params`).
pub fn check_declaration<P: KindParams>() -> Result<(), String> {
    P::check_fields()?;
    let specs = P::specs();
    let defaults = super::defaults(&specs);
    let p = P::read(&defaults).map_err(|(n, e)| format!("param '{n}': {e}"))?;
    let back = p.to_params();
    if back != defaults {
        return Err(format!("defaults do not round-trip: {defaults:?} became {back:?}"));
    }
    for spec in &specs {
        if let ParamKind::List { fields } = &spec.kind {
            if fields.iter().any(|f| matches!(f.kind, ParamKind::List { .. })) {
                return Err(format!("param '{}': lists of lists are not supported", spec.name));
            }
        }
    }
    Ok(())
}

/// Declare a kind's params once: the struct, its schema and its reader.
///
/// ```
/// use quantgraph_nodes::params;
/// use quantgraph_nodes::param::KindParams;
///
/// params! {
///     /// A row of the list below.
///     pub struct Edit {
///         pub tensor: String = text("Tensor", ""),
///         pub scale: f64 = float("Scale", 1.0, 0.0, 1e9).with_step(1e-5, true),
///     }
/// }
/// params! {
///     pub struct MyParams {
///         pub count: usize = int("Images", 100, 1, 10_000).with_doc("How many."),
///         pub split: String = choice("Split", "test", &["test", "train"]),
///         pub edits: Vec<Edit> = list("Edits", Edit::specs()),
///     }
/// }
/// let p = MyParams::from_params(&Default::default()).unwrap();
/// assert_eq!((p.count, p.split.as_str(), p.edits.len()), (100, "test", 0));
/// ```
///
/// Each field is `name: Type = constructor(label, …)`, where the constructor is one of
/// [`ParamSpec`]'s (`float`, `int`, `bool`, `choice`, `text`, `path`, `tensor_name`,
/// `list`, `floats`) without its first argument: the field's name is the param's name. Builder calls
/// (`.with_doc(…)`, `.with_step(…)`) may follow. Types: `f64`, `i64`, `u32`, `u64`,
/// `usize`, `bool`, `String`, `Vec<String>` (multiple tensor names), `Vec<f64>` (`floats`)
/// and `Vec<Row>` (a list whose rows are declared with `params!`). The struct derives `Debug`, `Clone` and
/// `PartialEq` (do not derive them again); registration checks each field's spec against
/// its type (an unsigned field's range, a list's rows).
#[macro_export]
macro_rules! params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $fvis:vis $field:ident : $ty:ty = $ctor:ident ( $($arg:expr),* $(,)? ) $(. $method:ident ( $($marg:expr),* $(,)? ))*
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $(
                $(#[$fmeta])*
                $fvis $field: $ty,
            )*
        }

        impl $crate::param::KindParams for $name {
            fn specs() -> ::std::vec::Vec<$crate::param::ParamSpec> {
                ::std::vec![
                    $( $crate::param::ParamSpec::$ctor(stringify!($field), $($arg),*) $(.$method($($marg),*))* ),*
                ]
            }
            fn read(
                params: &$crate::param::Params,
            ) -> ::std::result::Result<Self, (::std::string::String, ::std::string::String)> {
                let specs = <Self as $crate::param::KindParams>::specs();
                $crate::param::typed::check_names(&specs, params)?;
                ::std::result::Result::Ok(Self {
                    $( $field: $crate::param::typed::read_field::<$ty>(&specs, params, stringify!($field))?, )*
                })
            }
            fn check_fields() -> ::std::result::Result<(), ::std::string::String> {
                let specs = <Self as $crate::param::KindParams>::specs();
                // The specs are in declaration order, one per field.
                let mut specs = specs.iter();
                $(
                    if let ::std::option::Option::Some(spec) = specs.next() {
                        <$ty as $crate::param::ParamValue>::check_spec(spec)
                            .map_err(|e| ::std::format!("param '{}': {e}", stringify!($field)))?;
                    }
                )*
                ::std::result::Result::Ok(())
            }
            fn to_params(&self) -> $crate::param::Params {
                let mut out = $crate::param::Params::new();
                $( out.insert(stringify!($field).to_owned(), $crate::param::ParamValue::to_json(&self.$field)); )*
                out
            }
        }

    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    crate::params! {
        struct Row {
            tensor: String = tensor_name("Tensor", "model", false),
            scale: f64 = float("Scale", 0.0, 0.0, 1e9),
        }
    }
    crate::params! {
        struct P {
            count: usize = int("Count", 100, 0, 1000).with_doc("How many."),
            names: Vec<String> = tensor_name("Tensors", "model", true),
            rows: Vec<Row> = list("Rows", Row::specs()),
            on: bool = bool("On", true),
        }
    }

    fn params(v: serde_json::Value) -> Params {
        v.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[test]
    fn one_declaration_gives_the_schema_and_the_reader() {
        let specs = P::specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["count", "names", "rows", "on"]);
        assert_eq!(specs[0].doc, "How many.");
        assert!(matches!(&specs[2].kind, ParamKind::List { fields } if fields.len() == 2));
        let p = P::from_params(&Params::new()).unwrap();
        assert_eq!((p.count, p.names.len(), p.rows.len(), p.on), (100, 0, 0, true));
        let p = P::from_params(&params(json!({"count": 7, "rows": [{"tensor": "t"}, {"tensor": "u", "scale": 0.5}]})))
            .unwrap();
        assert_eq!(p.count, 7);
        assert_eq!(p.rows, vec![Row { tensor: "t".into(), scale: 0.0 }, Row { tensor: "u".into(), scale: 0.5 }]);
        // Written back, every field is explicit and reads the same.
        assert_eq!(P::from_params(&p.to_params()).unwrap(), p);
        assert_eq!(check_declaration::<P>(), Ok(()));
    }

    #[test]
    fn unknown_names_fields_and_bad_values_are_errors_naming_the_param() {
        let err = P::from_params(&params(json!({"cuont": 7}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter 'cuont': this kind has no parameter of that name (expected one of count, names, rows, on)"
        );
        let err = P::from_params(&params(json!({"rows": [{"tensor": "t", "sacle": 0.5}]}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter 'rows': item 1 ('t'): unknown field 'sacle' (expected one of tensor, scale)"
        );
        let err = P::from_params(&params(json!({"count": 5000}))).unwrap_err();
        assert_eq!(err.to_string(), "parameter 'count': expected an integer in [0, 1000], found 5000");
        let err = P::from_params(&params(json!({"names": "x"}))).unwrap_err();
        assert_eq!(err.to_string(), "parameter 'names': expected a list of tensor names, found text 'x'");
    }

    #[test]
    fn a_default_that_does_not_fit_its_type_is_caught_by_the_declaration_check() {
        crate::params! {
            struct Bad {
                n: usize = int("N", 7, 0, 5),
            }
        }
        assert_eq!(check_declaration::<Bad>().unwrap_err(), "param 'n': expected an integer in [0, 5], found 7");
    }

    #[test]
    fn a_spec_that_does_not_fit_its_field_is_caught_by_the_declaration_check() {
        // A range the widget allows but the type cannot hold.
        crate::params! {
            struct Range {
                n: usize = int("N", 0, -5, 5),
            }
        }
        assert_eq!(check_declaration::<Range>().unwrap_err(), "param 'n': the range [-5, 5] does not fit usize");
        // A widget of another kind than the field's type.
        crate::params! {
            struct Widget {
                x: f64 = int("X", 0, 0, 5),
            }
        }
        assert_eq!(
            check_declaration::<Widget>().unwrap_err(),
            "param 'x': a f64 field is declared with float(…), but its spec is int(…)"
        );
        // A list whose rows are not the field's row type: the row struct is checked too.
        crate::params! {
            struct Other {
                name: String = text("Name", ""),
            }
        }
        crate::params! {
            struct Mixed {
                rows: Vec<Row> = list("Rows", Other::specs()),
            }
        }
        assert!(check_declaration::<Mixed>().unwrap_err().starts_with("param 'rows': the list's fields are not"));
        crate::params! {
            struct BadRow {
                k: u32 = int("K", 0, 0, i64::MAX),
            }
        }
        crate::params! {
            struct Outer {
                rows: Vec<BadRow> = list("Rows", BadRow::specs()),
            }
        }
        assert_eq!(
            check_declaration::<Outer>().unwrap_err(),
            format!("param 'rows': row: param 'k': the range [0, {}] does not fit u32", i64::MAX)
        );
        assert_eq!(check_declaration::<P>(), Ok(()));
    }
}
