//! Tables and reports: what comparators, sweeps and searches output.

use super::*;

/// A table cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Int(i64),
    Num(f64),
    Text(String),
}

impl Cell {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::Num(x) => Some(*x),
            Cell::Text(_) => None,
        }
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Int(i) => write!(f, "{i}"),
            Cell::Num(x) if x.is_infinite() => f.write_str(if *x > 0.0 { "inf" } else { "-inf" }),
            Cell::Num(x) => write!(f, "{x:.4}"),
            Cell::Text(t) => f.write_str(t),
        }
    }
}

/// `name` shortened to `max` characters by an ellipsis in the middle, keeping both ends
/// (tensor names differ at the end and start with their block).
pub fn elide_middle(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= max || max < 3 {
        return name.to_owned();
    }
    let head = (max - 1) / 2;
    let tail = max - 1 - head;
    format!("{}…{}", chars[..head].iter().collect::<String>(), chars[chars.len() - tail..].iter().collect::<String>())
}

/// A named table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
    /// The table as CSV text (RFC 4180 quoting by the `csv` crate).
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut ok = w.write_record(&self.columns).is_ok();
        for row in &self.rows {
            let cells = row.iter().map(|c| match c {
                Cell::Num(x) => format!("{x}"),
                other => other.to_string(),
            });
            ok &= w.write_record(cells).is_ok();
        }
        // Writing into memory cannot fail; an empty string says so if it ever did.
        match (ok, w.into_inner()) {
            (true, Ok(bytes)) => String::from_utf8(bytes).unwrap_or_default(),
            _ => String::new(),
        }
    }
}

/// Metrics and tables (a comparator's output).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    pub headline: Option<String>,
    pub summary: BTreeMap<String, f64>,
    pub tables: Vec<Table>,
    pub notes: Vec<String>,
    /// The raw, mergeable content behind the figures (a comparator's per-sample outcomes and
    /// per-pair sums), when asked for: what `quantgraph merge` combines across shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial: Option<serde_json::Value>,
    /// How the editor shows the tables, set by the kind that makes the report: the editor
    /// never matches on table names.
    #[serde(default, skip_serializing_if = "ReportHints::is_empty")]
    pub hints: ReportHints,
}

/// Display hints of a [`Report`]'s tables.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReportHints {
    /// Tables shown open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<String>,
    /// A table whose rows are a model's layers: the editor offers a graph view of the model
    /// coloured by its numeric columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<LayerTable>,
    /// Tables whose rows are samples, with the column holding the sample index: clicking a
    /// row shows that sample (its image, its per-layer curve, activation maps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SampleRows>,
    /// Per-sample per-layer figures drawn as a curve against the dataset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_curve: Option<SampleCurve>,
}

impl ReportHints {
    pub fn is_empty(&self) -> bool {
        *self == ReportHints::default()
    }
}

/// A table of layers: which column names the drawn model's tensors (its rows colour that
/// model's ops).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LayerTable {
    pub table: String,
    pub tensor_column: String,
}

/// A table of samples and its sample-index column.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SampleRows {
    pub table: String,
    pub column: String,
}

/// Where a sample's per-layer curve is: rows `(sample, layer, value, reference)`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SampleCurve {
    pub table: String,
    pub sample: String,
    pub layer: String,
    pub value: String,
    pub reference: String,
    /// What the value is, for the chart's title (e.g. "SQNR (dB)").
    pub label: String,
}

impl Report {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}
