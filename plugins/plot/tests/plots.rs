//! Plot kinds: specs from tables, tensors and datasets, and their PNG rendering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use quantgraph_nodes::value::{Cell, Dataset, Layout, PlotKind, PreviewImage, Report, Table, Tensor, Value};
use quantgraph_nodes::{EvalContext, Inputs, NodeKind, Params};
use quantgraph_plot::{plot_csv, render_png, Chart, SampleGrid};

fn report() -> Arc<Report> {
    Arc::new(Report {
        tables: vec![
            Table {
                name: "per_layer".into(),
                columns: vec!["tensor".into(), "sqnr_db".into()],
                rows: vec![
                    vec![Cell::Text("conv1".into()), Cell::Num(30.5)],
                    vec![Cell::Text("conv2".into()), Cell::Num(21.0)],
                ],
            },
            Table {
                name: "flips".into(),
                columns: vec!["sample".into(), "source_index".into(), "label".into(), "a".into(), "b".into()],
                rows: vec![vec![
                    Cell::Int(1),
                    Cell::Int(11),
                    Cell::Text("cat".into()),
                    Cell::Text("cat".into()),
                    Cell::Text("dog".into()),
                ]],
            },
            Table {
                name: "confusion_b".into(),
                columns: vec!["true \\\\ predicted".into(), "cat".into(), "dog".into()],
                rows: vec![
                    vec![Cell::Text("cat".into()), Cell::Int(5), Cell::Int(1)],
                    vec![Cell::Text("dog".into()), Cell::Int(0), Cell::Int(6)],
                ],
            },
        ],
        ..Report::default()
    })
}

fn eval(
    kind: &dyn NodeKind,
    inputs: Inputs,
    params: serde_json::Value,
) -> Result<Arc<quantgraph_nodes::value::PlotSpec>, quantgraph_nodes::NodeError> {
    let p: Params = serde_json::from_value(params).unwrap();
    let out = kind.evaluate(&EvalContext::detached(None), &inputs, &p)?;
    match out.get("plot") {
        Some(Value::Plot(p)) => Ok(p.clone()),
        other => panic!("{other:?}"),
    }
}

fn with(port: &str, v: Value) -> Inputs {
    let mut i = Inputs::default();
    i.0.insert(port.into(), v);
    i
}

#[test]
fn chart_bars_heatmaps_and_bad_columns() {
    let bar = eval(&Chart, with("table", Value::Table(report())), serde_json::json!({})).unwrap();
    assert_eq!(bar.kind, PlotKind::Bar);
    assert_eq!(bar.x_categories, ["conv1", "conv2"]);
    assert_eq!(bar.series[0].y, [30.5, 21.0]);
    assert!(plot_csv(&bar).contains("sqnr_db,1,conv2,21"));
    let heat = eval(
        &Chart,
        with("table", Value::Table(report())),
        serde_json::json!({"kind": "heatmap", "table": "confusion_b"}),
    )
    .unwrap();
    assert_eq!(heat.cells, [5.0, 1.0, 0.0, 6.0]);
    assert_eq!(heat.y_categories, ["cat", "dog"]);
    let err = eval(&Chart, with("table", Value::Table(report())), serde_json::json!({"y": "nope"})).unwrap_err();
    assert_eq!(err.to_string(), "parameter 'y': expected columns of 'per_layer' (tensor, sqnr_db), found 'nope'");
    let err = eval(&Chart, with("table", Value::Table(report())), serde_json::json!({"table": "x"})).unwrap_err();
    assert!(err.to_string().contains("expected one of per_layer, flips, confusion_b"), "{err}");
    for p in [bar, heat] {
        assert_drawn_png(&render_png(&p, 640, 360).unwrap(), 640, 360);
    }
}

fn dataset() -> Arc<Dataset> {
    let thumbs: Vec<PreviewImage> = (0..3)
        .map(|i| PreviewImage {
            index: i + 10,
            label: (i % 2) as u32,
            width: 2,
            height: 2,
            rgb: vec![i as u8 * 50; 12],
        })
        .collect();
    Arc::new(Dataset {
        images: Tensor::new(vec![3, 3, 2, 2], vec![0.0; 36]).into(),
        layout: Layout::Nchw,
        labels: vec![0, 1, 0],
        class_names: vec!["cat".into(), "dog".into()],
        source_indices: vec![10, 11, 12],
        source: "test".into(),
        preprocessing: "raw".into(),
        preview: thumbs.clone(),
        thumbnails: Arc::new(thumbs),
        before_after: None,
    })
}

#[test]
fn sample_grid_shows_flipped_samples_or_the_first_ones() {
    let mut inputs = with("dataset", Value::Dataset(dataset()));
    let first = eval(&SampleGrid, inputs.clone(), serde_json::json!({"max_images": 2})).unwrap();
    assert_eq!(first.kind, PlotKind::ImageGrid);
    assert_eq!(first.images.len(), 2);
    assert_eq!(first.images[1].1, "dog");
    inputs.0.insert("report".into(), Value::Table(report()));
    let flips = eval(&SampleGrid, inputs, serde_json::json!({})).unwrap();
    assert_eq!(flips.images.len(), 1);
    assert_eq!(flips.images[0].0.index, 11);
    assert_eq!(flips.images[0].1, "cat: A cat / B dog");
    assert_drawn_png(&render_png(&flips, 320, 200).unwrap(), 320, 200);
    let _ = BTreeMap::<u8, u8>::new();
}

/// Names with commas or quotes are quoted in CSV exports (plots and tables), so every row
/// keeps its columns.
#[test]
fn csv_exports_quote_commas_and_quotes() {
    let mut bar = (*eval(&Chart, with("table", Value::Table(report())), serde_json::json!({})).unwrap()).clone();
    bar.series[0].name = "sqnr, \"dB\"".into();
    bar.x_categories[1] = "stage1,conv".into();
    let csv = plot_csv(&bar);
    assert!(csv.contains("\"sqnr, \"\"dB\"\"\",1,\"stage1,conv\",21"), "{csv}");
    let t = Table {
        name: "t".into(),
        columns: vec!["tensor".into(), "sqnr_db".into()],
        rows: vec![vec![Cell::Text("a,b".into()), Cell::Num(1.5)]],
    };
    assert_eq!(t.to_csv(), "tensor,sqnr_db\n\"a,b\",1.5\n");
}

/// A PNG that decodes, has the size asked for, and shows something: many pixels differ
/// from the background (the top-left pixel) and there are more than a few colours.
fn assert_drawn_png(png: &[u8], width: u32, height: u32) {
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (width, height));
    let background = *img.get_pixel(0, 0);
    let drawn = img.pixels().filter(|p| **p != background).count();
    let colours: std::collections::BTreeSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(drawn > (width * height / 100) as usize, "only {drawn} pixels differ from the background");
    assert!(colours.len() > 4, "only {} colours", colours.len());
}

/// Reference lines come from the report's summary values, are drawn in the PNG (it differs
/// from the chart without them), and a name the summary lacks is an error listing the names.
#[test]
fn reference_lines_come_from_summary_values() {
    let mut r = (*report()).clone();
    r.summary.insert("fp32_pct".into(), 25.0);
    let inputs = with("table", Value::Table(Arc::new(r)));
    let plain = eval(&Chart, inputs.clone(), serde_json::json!({})).unwrap();
    let lined = eval(&Chart, inputs.clone(), serde_json::json!({"reference": "fp32_pct"})).unwrap();
    assert_eq!(lined.levels, vec![(25.0, "fp32_pct".to_owned())]);
    let (a, b) = (render_png(&plain, 320, 200).unwrap(), render_png(&lined, 320, 200).unwrap());
    assert_drawn_png(&b, 320, 200);
    assert_ne!(a, b, "the line is drawn");
    let err = eval(&Chart, inputs, serde_json::json!({"reference": "int8_pct"})).unwrap_err().to_string();
    assert!(err.contains("int8_pct") && err.contains("fp32_pct"), "{err}");
}

/// Feature maps render to a PNG whose grids show the maps' colours (A's highest value in
/// the top colour of the scale), and to CSV with one row per value, A and B side by side.
#[test]
fn feature_maps_render_as_grids_and_csv() {
    use quantgraph_nodes::value::{heat_colour, FeatureMaps, MapSample, PlotKind, PlotSpec};
    let (c, h, w) = (4, 3, 5);
    let a: Vec<f32> = (0..c * h * w).map(|i| i as f32 / 10.0).collect();
    let b: Vec<f32> = a.iter().map(|x| x * 0.9).collect();
    let mut p = PlotSpec::new(PlotKind::FeatureMaps, "maps");
    p.maps = Some(FeatureMaps {
        tensor_a: "t".into(),
        tensor_b: "t_q".into(),
        channels: c,
        height: h,
        width: w,
        class_names: vec!["cat".into()],
        samples: vec![MapSample { index: 7, why: "flip".into(), a: a.clone(), b, ..MapSample::default() }],
    });
    let png = render_png(&p, 640, 360).unwrap();
    assert_drawn_png(&png, 640, 360);
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap().to_rgb8();
    let top = heat_colour(1.0, 0.0, 1.0);
    assert!(img.pixels().any(|px| px.0 == top), "A's largest value is drawn in the scale's top colour");
    let csv = plot_csv(&p);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "sample,channel,y,x,a,b");
    assert_eq!(lines.len(), 1 + c * h * w);
    // Value 17 is channel 1 (15 per channel), row 0, column 2.
    assert_eq!(lines[18], "7,1,0,2,1.7,1.53");
}
