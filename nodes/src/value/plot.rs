//! Charts, ready to draw.

use super::*;

/// Kind of chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlotKind {
    Bar,
    Line,
    Histogram,
    Heatmap,
    ImageGrid,
    /// One tensor's maps per channel for a few samples ([`PlotSpec::maps`]).
    FeatureMaps,
}

impl PlotKind {
    pub fn name(self) -> &'static str {
        match self {
            PlotKind::Bar => "bar",
            PlotKind::Line => "line",
            PlotKind::Histogram => "histogram",
            PlotKind::Heatmap => "heatmap",
            PlotKind::ImageGrid => "image grid",
            PlotKind::FeatureMaps => "feature maps",
        }
    }
}

/// One data series of a chart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

/// A chart, ready to draw (egui_plot in the editor, PNG in headless runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlotSpec {
    pub title: String,
    pub kind: PlotKind,
    pub x_label: String,
    pub y_label: String,
    /// Category labels for bar charts and heatmap columns.
    pub x_categories: Vec<String>,
    /// Heatmap row labels.
    pub y_categories: Vec<String>,
    pub series: Vec<Series>,
    /// Heatmap cells, row-major `y_categories.len() × x_categories.len()`.
    pub cells: Vec<f64>,
    /// Vertical marker lines (e.g. a quantization clip range), `(x, label)`.
    pub markers: Vec<(f64, String)>,
    /// Horizontal reference lines (e.g. FP32 and full-INT8 accuracy), `(y, label)`.
    #[serde(default)]
    pub levels: Vec<(f64, String)>,
    /// Images for an image grid, with captions.
    pub images: Vec<(PreviewImage, String)>,
    /// Feature maps, for [`PlotKind::FeatureMaps`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maps: Option<FeatureMaps>,
}

impl PlotSpec {
    /// A heatmap's axis titles (rows, columns) from its label column's header: "true \\
    /// predicted" (a confusion matrix) names both, any other header names the rows.
    pub fn heatmap_axes(&self) -> (String, String) {
        match self.x_label.split_once(" \\ ") {
            Some((rows, columns)) => (rows.to_owned(), columns.to_owned()),
            None => (self.x_label.clone(), String::new()),
        }
    }

    pub fn new(kind: PlotKind, title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            kind,
            x_label: String::new(),
            y_label: String::new(),
            x_categories: Vec::new(),
            y_categories: Vec::new(),
            series: Vec::new(),
            cells: Vec::new(),
            markers: Vec::new(),
            levels: Vec::new(),
            images: Vec::new(),
            maps: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heatmap_axes_come_from_the_label_header() {
        let mut p = PlotSpec::new(PlotKind::Heatmap, "confusion");
        p.x_label = "true \\ predicted".into();
        assert_eq!(p.heatmap_axes(), ("true".to_owned(), "predicted".to_owned()));
        p.x_label = "layer".into();
        assert_eq!(p.heatmap_axes(), ("layer".to_owned(), String::new()));
    }
}
