//! Before/after: two reports side by side, with deltas (used by `quantgraph diff` and by the
//! editor's "compare with a snapshot"). Any report works; one with a `per_layer` table keyed
//! by `tensor` (the comparator's, or a plugin's that follows the same convention) also gets
//! its layers joined and compared.

use std::collections::{BTreeMap, BTreeSet};

use crate::value::{Cell, LayerTable, Report, ReportHints, Table};

/// Summary figures shown first, in this order (any others follow alphabetically).
const HEADLINE_METRICS: [&str; 5] = ["accuracy_a", "accuracy_b", "accuracy_diff", "agreement", "min_sqnr_db"];
/// Per-layer figures compared.
const LAYER_METRICS: [&str; 4] = ["sqnr_db", "qdq_err_db", "mse", "cosine"];

fn is_fraction(metric: &str) -> bool {
    metric.starts_with("accuracy") || metric.starts_with("agreement")
}

/// A delta in words: percentage points for accuracies and agreement, dB for SQNR.
pub fn describe_delta(metric: &str, before: f64, after: f64) -> String {
    if is_fraction(metric) {
        format!("{:.2} % → {:.2} % ({:+.2} pt)", before * 100.0, after * 100.0, (after - before) * 100.0)
    } else if metric.ends_with("_db") {
        format!("{before:.2} → {after:.2} dB ({:+.2} dB)", after - before)
    } else {
        format!("{before} → {after} ({:+})", after - before)
    }
}

/// `after` against `before`: a report whose `summary` table lists every summary figure
/// before and after with its delta, and whose `per_layer` table joins the per-layer rows by
/// tensor (SQNR, qdq_err, MSE and cosine before, after and delta; tensors in only one report
/// are listed as such). The headline names the accuracy, agreement and worst-SQNR changes.
pub fn diff(before: &Report, after: &Report) -> Report {
    let mut keys: Vec<String> = HEADLINE_METRICS
        .iter()
        .filter(|k| before.summary.contains_key(**k) || after.summary.contains_key(**k))
        .map(|k| (*k).to_owned())
        .collect();
    let rest: BTreeSet<&String> = before.summary.keys().chain(after.summary.keys()).collect();
    keys.extend(rest.into_iter().filter(|k| !HEADLINE_METRICS.contains(&k.as_str())).cloned());
    let num = |v: Option<&f64>| v.map_or(Cell::Text(String::new()), |x| Cell::Num(*x));
    let summary = Table {
        name: "summary".into(),
        columns: vec!["metric".into(), "before".into(), "after".into(), "delta".into()],
        rows: keys
            .iter()
            .map(|k| {
                let (b, a) = (before.summary.get(k), after.summary.get(k));
                let delta = match (b, a) {
                    (Some(b), Some(a)) => Cell::Num(a - b),
                    _ => Cell::Text(String::new()),
                };
                vec![Cell::Text(k.clone()), num(b), num(a), delta]
            })
            .collect(),
    };
    let mut headline = Vec::new();
    for k in ["accuracy_b", "agreement", "min_sqnr_db"] {
        if let (Some(b), Some(a)) = (before.summary.get(k), after.summary.get(k)) {
            headline.push(format!("{k} {}", describe_delta(k, *b, *a)));
        }
    }

    // Per layer, joined by tensor name.
    let rows_of = |r: &Report| -> Vec<(String, BTreeMap<&'static str, f64>)> {
        let Some(t) = r.table("per_layer") else { return Vec::new() };
        let Some(tc) = t.column("tensor") else { return Vec::new() };
        t.rows
            .iter()
            .map(|row| {
                let figures = LAYER_METRICS
                    .iter()
                    .filter_map(|m| Some((*m, row.get(t.column(m)?)?.as_f64()?)))
                    .collect::<BTreeMap<_, _>>();
                (row.get(tc).map(ToString::to_string).unwrap_or_default(), figures)
            })
            .collect()
    };
    let (rows_b, rows_a) = (rows_of(before), rows_of(after));
    let index_b: BTreeMap<&str, &BTreeMap<&str, f64>> = rows_b.iter().map(|(t, f)| (t.as_str(), f)).collect();
    let names_a: BTreeSet<&str> = rows_a.iter().map(|(t, _)| t.as_str()).collect();
    let mut columns = vec!["tensor".to_owned(), "status".to_owned()];
    for m in LAYER_METRICS {
        columns.extend([format!("{m}_before"), format!("{m}_after"), format!("{m}_delta")]);
    }
    let mut layer_rows = Vec::new();
    let mut push = |tensor: &str, status: &str, b: Option<&BTreeMap<&str, f64>>, a: Option<&BTreeMap<&str, f64>>| {
        let mut row = vec![Cell::Text(tensor.to_owned()), Cell::Text(status.to_owned())];
        for m in LAYER_METRICS {
            let (x, y) = (b.and_then(|f| f.get(m)), a.and_then(|f| f.get(m)));
            row.push(num(x));
            row.push(num(y));
            row.push(match (x, y) {
                (Some(x), Some(y)) => Cell::Num(y - x),
                _ => Cell::Text(String::new()),
            });
        }
        layer_rows.push(row);
    };
    let mut biggest: Option<(String, f64)> = None;
    for (tensor, figures) in &rows_a {
        match index_b.get(tensor.as_str()) {
            Some(b) => {
                if let (Some(x), Some(y)) = (b.get("sqnr_db"), figures.get("sqnr_db")) {
                    if (y - x).is_finite() && biggest.as_ref().is_none_or(|(_, d)| (y - x).abs() > d.abs()) {
                        biggest = Some((tensor.clone(), y - x));
                    }
                }
                push(tensor, "both", Some(b), Some(figures));
            }
            None => push(tensor, "only after", None, Some(figures)),
        }
    }
    for (tensor, figures) in &rows_b {
        if !names_a.contains(tensor.as_str()) {
            push(tensor, "only before", Some(figures), None);
        }
    }
    if let Some((tensor, d)) = biggest {
        headline.push(format!("largest per-layer change: {tensor} {d:+.2} dB"));
    }
    let per_layer = Table { name: "per_layer".into(), columns, rows: layer_rows };
    Report {
        headline: Some(if headline.is_empty() { "no figures in common".into() } else { headline.join(" · ") }),
        summary: BTreeMap::new(),
        tables: vec![summary, per_layer],
        notes: Vec::new(),
        partial: None,
        hints: ReportHints {
            open: vec!["per_layer".into()],
            layers: Some(LayerTable { table: "per_layer".into(), tensor_column: "tensor".into() }),
            ..ReportHints::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(acc: f64, layers: &[(&str, f64)]) -> Report {
        Report {
            summary: [("accuracy_b".to_owned(), acc), ("agreement".to_owned(), acc + 0.1)].into_iter().collect(),
            tables: vec![Table {
                name: "per_layer".into(),
                columns: vec!["tensor".into(), "sqnr_db".into()],
                rows: layers.iter().map(|(t, s)| vec![Cell::Text((*t).into()), Cell::Num(*s)]).collect(),
            }],
            ..Report::default()
        }
    }

    #[test]
    fn deltas_join_layers_by_tensor_and_name_the_largest_change() {
        let before = report(0.80, &[("conv1", 30.0), ("conv2", 20.0), ("gone", 10.0)]);
        let after = report(0.81, &[("conv2", 22.5), ("conv1", 29.0), ("new", 5.0)]);
        let d = diff(&before, &after);
        let h = d.headline.unwrap();
        assert!(h.contains("accuracy_b 80.00 % → 81.00 % (+1.00 pt)"), "{h}");
        assert!(h.contains("largest per-layer change: conv2 +2.50 dB"), "{h}");
        let t = d.tables.iter().find(|t| t.name == "per_layer").unwrap();
        let delta = t.column("sqnr_db_delta").unwrap();
        let row = |name: &str| t.rows.iter().find(|r| r[0].to_string() == name).unwrap();
        assert_eq!(row("conv1")[delta].as_f64(), Some(-1.0));
        assert_eq!(row("gone")[1].to_string(), "only before");
        assert_eq!(row("new")[1].to_string(), "only after");
        let s = d.tables.iter().find(|t| t.name == "summary").unwrap();
        assert_eq!(s.rows[0][0].to_string(), "accuracy_b");
        assert!((s.rows[0][3].as_f64().unwrap() - 0.01).abs() < 1e-12);
    }
}
