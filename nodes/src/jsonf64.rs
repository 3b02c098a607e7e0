//! `f64` fields that may be NaN or infinite, in JSON. serde_json writes a non-finite float as
//! `null` and cannot read `null` back into an `f64`, so a result holding a NaN sum (a model
//! whose activations overflow) could be written but not read again (`quantgraph merge` of
//! shards failed on it). With `#[serde(with = "quantgraph_nodes::jsonf64")]` such values are
//! written as the strings `"NaN"`, `"inf"` and `"-inf"`, and `null` reads as NaN, so files
//! written before keep loading. [`vec`] and [`opt_pairs`] do the same for lists.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum Repr {
    Num(f64),
    Text(String),
}

fn from_repr(r: Option<Repr>) -> Result<f64, String> {
    match r {
        None => Ok(f64::NAN),
        Some(Repr::Num(x)) => Ok(x),
        Some(Repr::Text(t)) => match t.as_str() {
            "NaN" | "nan" => Ok(f64::NAN),
            "inf" | "Infinity" => Ok(f64::INFINITY),
            "-inf" | "-Infinity" => Ok(f64::NEG_INFINITY),
            other => Err(format!("expected a number, \"NaN\", \"inf\" or \"-inf\", found \"{other}\"")),
        },
    }
}

/// An `f64` that serializes as [`serialize`] does.
struct W(f64);

impl Serialize for W {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize(&self.0, s)
    }
}

pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    match *v {
        x if x.is_finite() => s.serialize_f64(x),
        x if x.is_nan() => s.serialize_str("NaN"),
        x if x > 0.0 => s.serialize_str("inf"),
        _ => s.serialize_str("-inf"),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    from_repr(Option::<Repr>::deserialize(d)?).map_err(D::Error::custom)
}

/// `Vec<f64>` with non-finite values.
pub mod vec {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| W(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<Option<Repr>>::deserialize(d)?.into_iter().map(|r| from_repr(r).map_err(D::Error::custom)).collect()
    }
}

/// `Option<Vec<[f64; 2]>>` with non-finite values.
pub mod opt_pairs {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Vec<[f64; 2]>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(pairs) => s.collect_seq(pairs.iter().map(|[a, b]| [W(*a), W(*b)])),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<[f64; 2]>>, D::Error> {
        let Some(pairs) = Option::<Vec<[Option<Repr>; 2]>>::deserialize(d)? else { return Ok(None) };
        pairs
            .into_iter()
            .map(|[a, b]| Ok([from_repr(a).map_err(D::Error::custom)?, from_repr(b).map_err(D::Error::custom)?]))
            .collect::<Result<Vec<_>, D::Error>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct T {
        #[serde(with = "super")]
        x: f64,
        #[serde(with = "super::vec")]
        v: Vec<f64>,
        #[serde(with = "super::opt_pairs")]
        p: Option<Vec<[f64; 2]>>,
    }

    #[test]
    fn non_finite_values_survive_json() {
        let t = T { x: f64::NAN, v: vec![1.5, f64::INFINITY, f64::NEG_INFINITY], p: Some(vec![[f64::NAN, 2.0]]) };
        let text = serde_json::to_string(&t).unwrap();
        assert_eq!(text, r#"{"x":"NaN","v":[1.5,"inf","-inf"],"p":[["NaN",2.0]]}"#);
        let back: T = serde_json::from_str(&text).unwrap();
        assert!(back.x.is_nan());
        assert_eq!(back.v[..2], [1.5, f64::INFINITY]);
        assert_eq!(back.v[2], f64::NEG_INFINITY);
        assert!(back.p.as_ref().unwrap()[0][0].is_nan());
        // What serde_json wrote before (null) reads as NaN.
        let old: T = serde_json::from_str(r#"{"x":null,"v":[null],"p":null}"#).unwrap();
        assert!(old.x.is_nan() && old.v[0].is_nan() && old.p.is_none());
        assert!(serde_json::from_str::<T>(r#"{"x":"lots","v":[],"p":null}"#).is_err());
    }
}
