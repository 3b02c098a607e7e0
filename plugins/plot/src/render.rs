//! PNG rendering of plot specs with plotters (bitmap backend, bundled DejaVu Sans font).

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;
use quantgraph_nodes::value::{PlotKind, PlotSpec};

static FONT: OnceLock<bool> = OnceLock::new();

fn ensure_font() -> bool {
    *FONT.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../../assets/fonts/DejaVuSans.ttf"),
        )
        .is_ok()
    })
}

fn finite_range(values: impl Iterator<Item = f64>, include_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if include_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    (if lo == 0.0 { 0.0 } else { lo - pad }, hi + pad)
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let tail: String = s.chars().rev().take(n - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draw a plot into a `width × height` PNG.
pub fn render_png(p: &PlotSpec, width: u32, height: u32) -> Result<Vec<u8>, String> {
    if !ensure_font() {
        return Err("the bundled font could not be loaded".into());
    }
    let mut buf = vec![255u8; (width * height * 3) as usize];
    draw(p, &mut buf, width, height).map_err(|e| e.to_string())?;
    let img = image::RgbImage::from_raw(width, height, buf).ok_or("bad image buffer")?;
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

fn draw(p: &PlotSpec, buf: &mut [u8], width: u32, height: u32) -> DrawResult<()> {
    let root = BitMapBackend::with_buffer(buf, (width, height)).into_drawing_area();
    root.fill(&WHITE)?;
    match p.kind {
        PlotKind::Heatmap => draw_heatmap(p, &root)?,
        PlotKind::Bar | PlotKind::Line | PlotKind::Histogram => draw_xy(p, &root)?,
        PlotKind::ImageGrid => draw_images(p, &root)?,
        PlotKind::FeatureMaps => draw_maps(p, &root)?,
    }
    root.present()?;
    Ok(())
}

fn draw_xy<DB: DrawingBackend>(p: &PlotSpec, root: &DrawingArea<DB, plotters::coord::Shift>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let n = p.series.iter().map(|s| s.x.len()).max().unwrap_or(0);
    let categorical = !p.x_categories.is_empty();
    let (x0, x1) = if categorical {
        (-0.5, n as f64 - 0.5)
    } else {
        let (lo, hi) =
            finite_range(p.series.iter().flat_map(|s| s.x.iter().copied()).chain(p.markers.iter().map(|m| m.0)), false);
        (lo, hi)
    };
    let (y0, y1) = finite_range(
        p.series.iter().flat_map(|s| s.y.iter().copied()).chain(p.levels.iter().map(|l| l.0)),
        p.kind != PlotKind::Line,
    );
    let cats = p.x_categories.clone();
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(if categorical { 90 } else { 40 })
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let formatter = move |x: &f64| -> String {
        if categorical {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                return cats.get(i as usize).map(|c| short(c, 14)).unwrap_or_default();
            }
            String::new()
        } else {
            format!("{x:.3}")
        }
    };
    chart
        .configure_mesh()
        .x_labels(if categorical { n.clamp(1, 60) } else { 10 })
        .x_label_formatter(&formatter)
        .x_label_style(("sans-serif", 11).into_font().transform(FontTransform::Rotate90))
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .disable_x_mesh()
        .draw()?;
    let groups = p.series.len().max(1) as f64;
    for (si, s) in p.series.iter().enumerate() {
        let color = Palette99::pick(si).to_rgba();
        match p.kind {
            PlotKind::Line => {
                chart
                    .draw_series(LineSeries::new(
                        s.x.iter().zip(&s.y).filter(|(_, y)| y.is_finite()).map(|(x, y)| (*x, *y)),
                        color.stroke_width(2),
                    ))?
                    .label(&s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            }
            PlotKind::Histogram => {
                let w = if s.x.len() > 1 { (s.x[1] - s.x[0]) * 0.95 } else { 1.0 };
                chart
                    .draw_series(
                        s.x.iter()
                            .zip(&s.y)
                            .map(|(x, y)| Rectangle::new([(x - w / 2.0, 0.0), (x + w / 2.0, *y)], color.filled())),
                    )?
                    .label(&s.name)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            }
            _ => {
                let bw = 0.8 / groups;
                chart
                    .draw_series(s.x.iter().zip(&s.y).filter(|(_, y)| y.is_finite()).map(|(x, y)| {
                        let left = x - 0.4 + si as f64 * bw;
                        Rectangle::new([(left, 0.0f64.max(y0)), (left + bw * 0.95, *y)], color.filled())
                    }))?
                    .label(&s.name)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            }
        }
    }
    for (x, label) in &p.markers {
        chart.draw_series(std::iter::once(PathElement::new(vec![(*x, y0), (*x, y1)], RED.stroke_width(2))))?;
        chart.draw_series(std::iter::once(Text::new(
            label.clone(),
            (*x, y1 - (y1 - y0) * 0.05),
            ("sans-serif", 13).into_font().color(&RED),
        )))?;
    }
    for (k, (y, label)) in p.levels.iter().enumerate() {
        let color = if k == 0 { BLACK } else { RGBColor(90, 90, 90) };
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x0, *y), (x1, *y)], color.stroke_width(2))))?
            .label(format!("{label} {y:.2}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], color.stroke_width(2)));
    }
    if p.series.len() + p.levels.len() > 1 || p.kind == PlotKind::Histogram {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    Ok(())
}

fn draw_heatmap<DB: DrawingBackend>(p: &PlotSpec, root: &DrawingArea<DB, plotters::coord::Shift>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let cols = p.x_categories.len().max(1);
    let rows = p.y_categories.len().max(1);
    let max = p.cells.iter().copied().filter(|v| v.is_finite()).fold(0.0f64, f64::max).max(1e-12);
    let xc = p.x_categories.clone();
    let yc = p.y_categories.clone();
    let (rows_desc, columns_desc) = p.heatmap_axes();
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(90)
        .y_label_area_size(100)
        .build_cartesian_2d(-0.5..cols as f64 - 0.5, rows as f64 - 0.5..-0.5)?;
    let fx = move |x: &f64| xc.get(x.round().max(0.0) as usize).map(|s| short(s, 12)).unwrap_or_default();
    let fy = move |y: &f64| yc.get(y.round().max(0.0) as usize).map(|s| short(s, 12)).unwrap_or_default();
    chart
        .configure_mesh()
        .x_labels(cols)
        .y_labels(rows)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        // Few columns: names across, cut to 12 characters; many: turned (plotters draws a
        // turned label across the axis, so only when they would not fit otherwise).
        .x_label_style(if cols <= 12 {
            ("sans-serif", 11).into_font()
        } else {
            ("sans-serif", 11).into_font().transform(FontTransform::Rotate90)
        })
        .disable_mesh()
        .x_desc(columns_desc)
        .y_desc(rows_desc)
        .draw()?;
    chart.draw_series(p.cells.iter().enumerate().map(|(i, v)| {
        let (r, c) = ((i / cols) as f64, (i % cols) as f64);
        let t = if v.is_finite() { (v / max).clamp(0.0, 1.0) } else { 0.0 };
        let shade = (255.0 * (1.0 - t)) as u8;
        Rectangle::new([(c - 0.5, r - 0.5), (c + 0.5, r + 0.5)], RGBColor(shade, shade, 255).filled())
    }))?;
    if cols * rows <= 400 {
        chart.draw_series(p.cells.iter().enumerate().map(|(i, v)| {
            let (r, c) = ((i / cols) as f64, (i % cols) as f64);
            let color = if v.is_finite() && *v / max > 0.5 { WHITE } else { BLACK };
            Text::new(format!("{v}"), (c - 0.2, r - 0.15), ("sans-serif", 12).into_font().color(&color))
        }))?;
    }
    Ok(())
}

/// The first sample's maps: A, B and |A − B| grids side by side (A and B on one scale,
/// |A − B| on its own), each with its range written under it.
fn draw_maps<DB: DrawingBackend>(p: &PlotSpec, root: &DrawingArea<DB, plotters::coord::Shift>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.draw(&Text::new(short(&p.title, 110), (8, 6), ("sans-serif", 18)))?;
    let Some(m) = &p.maps else { return Ok(()) };
    let Some(s) = m.samples.first() else { return Ok(()) };
    let (w, h) = root.dim_in_pixel();
    let diff: Vec<f32> = s.a.iter().zip(&s.b).map(|(x, y)| (x - y).abs()).collect();
    let (lo, hi) = s.range();
    let grids = [("A", &s.a, lo, hi), ("B", &s.b, lo, hi), ("|A - B|", &diff, 0.0, s.max_abs_diff())];
    let (cols, rows) = quantgraph_nodes::value::grid_shape(m.channels);
    // The largest whole scale at which three grids fit side by side.
    let room_w = (w as usize).saturating_sub(40) / 3;
    let room_h = (h as usize).saturating_sub(90);
    let scale = (room_w / (cols * (m.width + 1)).max(1)).min(room_h / (rows * (m.height + 1)).max(1)).max(1);
    root.draw(&Text::new(
        format!(
            "sample {} ({}): label {}, A {}, B {}; {}",
            s.index,
            s.why,
            m.class_name(s.label),
            m.class_name(s.top1_a),
            m.class_name(s.top1_b),
            p.x_label
        ),
        (8, 30),
        ("sans-serif", 13),
    ))?;
    for (k, (name, values, lo, hi)) in grids.into_iter().enumerate() {
        let (gw, gh, rgb) = quantgraph_nodes::value::grid_image(m, values, lo, hi, scale);
        let ox = 10 + k as i32 * (room_w as i32 + 10);
        let oy = 52;
        for y in 0..gh {
            for x in 0..gw {
                let at = (y * gw + x) * 3;
                root.draw_pixel((ox + x as i32, oy + y as i32), &RGBColor(rgb[at], rgb[at + 1], rgb[at + 2]))?;
            }
        }
        root.draw(&Text::new(format!("{name}: {lo:.4} .. {hi:.4}"), (ox, oy + gh as i32 + 6), ("sans-serif", 13)))?;
    }
    Ok(())
}

fn draw_images<DB: DrawingBackend>(p: &PlotSpec, root: &DrawingArea<DB, plotters::coord::Shift>) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    let (w, _) = root.dim_in_pixel();
    let cell = 72i32;
    let per_row = (w as i32 / cell).max(1);
    for (k, (img, caption)) in p.images.iter().enumerate() {
        let (ox, oy) = ((k as i32 % per_row) * cell + 4, (k as i32 / per_row) * (cell + 16) + 30);
        let scale = 2i32;
        for y in 0..img.height as i32 {
            for x in 0..img.width as i32 {
                let at = ((y * img.width as i32 + x) * 3) as usize;
                if let (Some(r), Some(g), Some(b)) = (img.rgb.get(at), img.rgb.get(at + 1), img.rgb.get(at + 2)) {
                    root.draw(&Rectangle::new(
                        [(ox + x * scale, oy + y * scale), (ox + x * scale + scale, oy + y * scale + scale)],
                        RGBColor(*r, *g, *b).filled(),
                    ))?;
                }
            }
        }
        root.draw(&Text::new(short(caption, 10), (ox, oy + img.height as i32 * scale + 2), ("sans-serif", 11)))?;
    }
    root.draw(&Text::new(p.title.clone(), (8, 6), ("sans-serif", 18)))?;
    Ok(())
}
