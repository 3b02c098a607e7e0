//! Activation maps: one tensor's feature maps for chosen samples, A, B and |A − B| per
//! channel, stepped through with the keyboard; and opening them from a comparator's flip
//! drill-down (through whichever kind declares [`quantgraph_nodes::kind::SampleMaps`]).

use quantgraph_nodes::graph::{NodeId, PortRef};
use quantgraph_nodes::value::{grid_image, grid_shape, heat_colour, FeatureMaps, PlotSpec, PreviewImage};
use quantgraph_nodes::PortType;

use crate::Editor;

/// Which sample (position in the value's list) and channel a maps view shows, and whether
/// |A − B| is drawn on A and B's scale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapsCursor {
    pub sample: usize,
    pub channel: usize,
    pub diff_on_shared_scale: bool,
}

/// Step a cursor by the arrow keys: ←/→ samples, ↑/↓ channels (wrapping).
pub fn step(cursor: &mut MapsCursor, samples: usize, channels: usize, key: egui::Key) {
    let wrap = |x: usize, n: usize, forward: bool| {
        if n == 0 {
            0
        } else if forward {
            (x + 1) % n
        } else {
            (x + n - 1) % n
        }
    };
    match key {
        egui::Key::ArrowRight => cursor.sample = wrap(cursor.sample, samples, true),
        egui::Key::ArrowLeft => cursor.sample = wrap(cursor.sample, samples, false),
        egui::Key::ArrowDown => cursor.channel = wrap(cursor.channel, channels, true),
        egui::Key::ArrowUp => cursor.channel = wrap(cursor.channel, channels, false),
        _ => {}
    }
}

/// The view of a feature-maps value in the inspector.
pub fn maps_ui(editor: &mut Editor, ui: &mut egui::Ui, node: NodeId, p: &PlotSpec) {
    let Some(m) = &p.maps else { return };
    ui.label(egui::RichText::new(&p.title).strong());
    ui.label(egui::RichText::new(&p.x_label).weak().small());
    if m.samples.is_empty() {
        ui.label("No samples.");
        return;
    }
    let mut cur = editor.views.maps.get(&node.0).copied().unwrap_or_default();
    cur.sample = cur.sample.min(m.samples.len() - 1);
    cur.channel = cur.channel.min(m.channels.saturating_sub(1));
    // Keyboard: arrows step samples and channels unless a text field has the keys.
    if !ui.ctx().egui_wants_keyboard_input() {
        for key in [egui::Key::ArrowLeft, egui::Key::ArrowRight, egui::Key::ArrowUp, egui::Key::ArrowDown] {
            if ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, key)) {
                step(&mut cur, m.samples.len(), m.channels, key);
            }
        }
    }
    let s = &m.samples[cur.sample];
    ui.horizontal(|ui| {
        if ui.button("◀").on_hover_text("Previous sample (Left arrow)").clicked() {
            step(&mut cur, m.samples.len(), m.channels, egui::Key::ArrowLeft);
        }
        egui::ComboBox::from_id_salt(("maps_sample", node.0))
            .selected_text(format!("sample {} ({}) · {} of {}", s.index, s.why, cur.sample + 1, m.samples.len()))
            .show_ui(ui, |ui| {
                for (k, x) in m.samples.iter().enumerate() {
                    let text =
                        format!("{} ({}): {} -> {}", x.index, x.why, m.class_name(x.top1_a), m.class_name(x.top1_b));
                    ui.selectable_value(&mut cur.sample, k, text);
                }
            });
        if ui.button("▶").on_hover_text("Next sample (Right arrow)").clicked() {
            step(&mut cur, m.samples.len(), m.channels, egui::Key::ArrowRight);
        }
        // (The UI font has no arrow glyphs.)
        ui.label(egui::RichText::new("Left/Right: samples · Up/Down: channels").weak().small());
    });
    let s = &m.samples[cur.sample];
    ui.horizontal(|ui| {
        if let Some(img) = &s.thumbnail {
            let key = format!("maps-thumb-{}-{}", node.0, s.digest);
            let tex = editor.texture(ui.ctx(), &key, img);
            ui.image((tex.id(), egui::vec2(72.0, 72.0)));
        }
        let pct = |x: Option<f64>| x.map_or(String::new(), |x| format!(" ({:.1} %)", x * 100.0));
        ui.label(format!(
            "label: {}\nA: {}{}\nB: {}{}",
            m.class_name(s.label),
            m.class_name(s.top1_a),
            pct(s.prob_a),
            m.class_name(s.top1_b),
            pct(s.prob_b)
        ));
    });
    ui.checkbox(&mut cur.diff_on_shared_scale, "|A − B| on A and B's colour scale");
    let (lo, hi) = s.range();
    let diff: Vec<f32> = s.a.iter().zip(&s.b).map(|(x, y)| (x - y).abs()).collect();
    let (dlo, dhi) = if cur.diff_on_shared_scale { (0.0, hi - lo) } else { (0.0, s.max_abs_diff()) };
    // Three grids side by side, each a third of the width.
    let (cols, rows) = grid_shape(m.channels);
    // The visible width (the inspector scrolls sideways, so its available width is not it).
    let avail = (ui.clip_rect().right() - ui.cursor().left()).max(240.0);
    // A third of it each, at least 100 px (they wrap when the panel is narrower).
    let grid_w = ((avail - 44.0) / 3.0).clamp(100.0, 420.0);
    let grid_h = grid_w * (rows * (m.height + 1)) as f32 / (cols * (m.width + 1)) as f32;
    // Keyed by content (the node's digest of the values), not by address: a later result at
    // a freed address is another picture.
    let digest = s.digest;
    let mut clicked_channel = None;
    ui.horizontal_wrapped(|ui| {
        for (name, values, lo, hi) in [("A", &s.a, lo, hi), ("B", &s.b, lo, hi), ("|A − B|", &diff, dlo, dhi)] {
            ui.vertical(|ui| {
                ui.label(egui::RichText::new(name).strong());
                let key = format!("maps-{}-{digest}-{name}-{}", node.0, cur.diff_on_shared_scale);
                let tex = editor.texture_with(ui.ctx(), &key, || {
                    let (w, h, rgb) = grid_image(m, values, lo, hi, 1);
                    Some(PreviewImage { index: s.index, label: 0, width: w as u32, height: h as u32, rgb })
                });
                let Some(tex) = tex else { return };
                let r = ui.add(egui::Image::new((tex.id(), egui::vec2(grid_w, grid_h))).sense(egui::Sense::click()));
                // The chosen channel's cell is outlined.
                let cell = |c: usize| {
                    let (cw, ch) = (grid_w / cols as f32, grid_h / rows as f32);
                    egui::Rect::from_min_size(
                        r.rect.min + egui::vec2((c % cols) as f32 * cw, (c / cols) as f32 * ch),
                        egui::vec2(cw, ch),
                    )
                };
                ui.painter().rect_stroke(
                    cell(cur.channel),
                    0.0,
                    egui::Stroke::new(2.0, egui::Color32::from_rgb(255, 80, 80)),
                    egui::StrokeKind::Inside,
                );
                let at = |pos: egui::Pos2| {
                    let v = pos - r.rect.min;
                    let (c, rr) = ((v.x / grid_w * cols as f32) as usize, (v.y / grid_h * rows as f32) as usize);
                    Some(rr * cols + c).filter(|c| *c < m.channels)
                };
                if let Some(c) = r.hover_pos().and_then(at) {
                    r.clone().on_hover_text(format!("channel {c} (click to enlarge)"));
                }
                if r.clicked() {
                    clicked_channel = r.interact_pointer_pos().and_then(at);
                }
                legend_ui(ui, lo, hi, grid_w);
            });
        }
    });
    if let Some(c) = clicked_channel {
        cur.channel = c;
    }
    // The chosen channel, large, with values on hover.
    ui.separator();
    ui.label(egui::RichText::new(format!("Channel {} of {}", cur.channel, m.channels)).strong());
    ui.horizontal_wrapped(|ui| {
        let side = ((avail - 44.0) / 3.0).clamp(100.0, 220.0);
        for (name, values, lo, hi) in [("A", &s.a, lo, hi), ("B", &s.b, lo, hi), ("|A − B|", &diff, dlo, dhi)] {
            ui.vertical(|ui| {
                ui.label(name);
                channel_ui(ui, m, m.channel(values, cur.channel), lo, hi, side);
            });
        }
    });
    editor.views.maps.insert(node.0, cur);
}

/// One channel drawn cell by cell (hover shows the value).
fn channel_ui(ui: &mut egui::Ui, m: &FeatureMaps, plane: &[f32], lo: f32, hi: f32, side: f32) {
    let (w, h) = (m.width.max(1), m.height.max(1));
    let px = side / w.max(h) as f32;
    let (rect, r) = ui.allocate_exact_size(egui::vec2(px * w as f32, px * h as f32), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    for (i, v) in plane.iter().enumerate() {
        let [cr, cg, cb] = heat_colour(*v, lo, hi);
        let min = rect.min + egui::vec2((i % w) as f32 * px, (i / w) as f32 * px);
        painter.rect_filled(
            egui::Rect::from_min_size(min, egui::vec2(px, px)),
            0.0,
            egui::Color32::from_rgb(cr, cg, cb),
        );
    }
    if let Some(pos) = r.hover_pos() {
        let v = pos - rect.min;
        let (x, y) = ((v.x / px) as usize, (v.y / px) as usize);
        if let Some(value) = plane.get(y * w + x) {
            r.on_hover_text(format!("({y}, {x}): {value:.5}"));
        }
    }
}

/// A colour bar from `lo` to `hi`, with both ends written under it.
fn legend_ui(ui: &mut egui::Ui, lo: f32, hi: f32, width: f32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(width, 10.0), egui::Sense::hover());
    let steps = 48;
    for k in 0..steps {
        let t = k as f32 / (steps - 1) as f32;
        let [r, g, b] = heat_colour(lo + t * (hi - lo), lo, hi);
        let x0 = rect.min.x + rect.width() * k as f32 / steps as f32;
        let x1 = rect.min.x + rect.width() * (k + 1) as f32 / steps as f32;
        ui.painter().rect_filled(
            egui::Rect::from_min_max(egui::pos2(x0, rect.min.y), egui::pos2(x1, rect.max.y)),
            0.0,
            egui::Color32::from_rgb(r, g, b),
        );
    }
    ui.horizontal(|ui| {
        ui.set_width(width);
        ui.label(egui::RichText::new(format!("{lo:.4}")).small());
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            ui.label(egui::RichText::new(format!("{hi:.4}")).small());
        });
    });
}

/// The two activations sources of a node: its first two inputs of type Activations (for a
/// comparator, A and B).
fn activation_sources(editor: &Editor, node: NodeId) -> Option<(PortRef, PortRef)> {
    let n = editor.graph.node(node)?;
    let kind = editor.registry.get(&n.kind)?;
    let mut ports = kind.inputs(&n.params).into_iter().filter(|p| p.ty == PortType::Activations);
    let (pa, pb) = (ports.next()?, ports.next()?);
    let a = editor.graph.source_of(&PortRef::new(node, &pa.name))?.clone();
    let b = editor.graph.source_of(&PortRef::new(node, &pb.name))?.clone();
    Some((a, b))
}

/// Show `tensor` of `sample` (and the flipped samples after it) in an activation-maps node fed
/// by the same probes as `node`: the existing one, else a new one below `node`. One undo
/// step; the maps node becomes the selected node.
pub fn open_maps(editor: &mut Editor, node: NodeId, tensor: &str, sample: usize) -> Option<NodeId> {
    let Some(kind) = editor.registry.kinds().find(|k| k.sample_maps().is_some()).cloned() else {
        editor.message = Some("No node kind shows activation maps (is the compare plugin loaded?)".into());
        return None;
    };
    let sm = kind.sample_maps()?;
    let Some((a, b)) = activation_sources(editor, node) else {
        editor.message = Some("Wire both probes into this node first".into());
        return None;
    };
    let existing = editor
        .graph
        .nodes()
        .filter(|n| n.kind == kind.id())
        .find(|n| {
            editor.graph.source_of(&PortRef::new(n.id, sm.a_input)) == Some(&a)
                && editor.graph.source_of(&PortRef::new(n.id, sm.b_input)) == Some(&b)
        })
        .map(|n| n.id);
    let samples = format!("{sample}, flips");
    let mut target = existing;
    let mut error = None;
    editor.edit(|g, r| {
        let id = match existing {
            Some(id) => id,
            None => {
                let Some(pos) = g.node(node).map(|n| [n.position[0], n.position[1] + 420.0]) else { return };
                let id = match g.add_node(r, kind.id(), pos) {
                    Ok(id) => id,
                    Err(e) => {
                        error = Some(e.to_string());
                        return;
                    }
                };
                for (from, port) in [(a.clone(), sm.a_input), (b.clone(), sm.b_input)] {
                    if let Err(e) = g.connect(r, from, PortRef::new(id, port)) {
                        error = Some(e.to_string());
                    }
                }
                target = Some(id);
                id
            }
        };
        for (param, value) in [(sm.tensor_param, tensor.to_owned()), (sm.samples_param, samples.clone())] {
            if let Err(e) = g.set_param(id, param, serde_json::Value::String(value)) {
                error = Some(e.to_string());
            }
        }
    });
    if let Some(e) = error {
        editor.message = Some(format!("Could not open the activation maps: {e}"));
    }
    if let Some(id) = target {
        editor.selected = Some(id);
        editor.views.maps.insert(id.0, MapsCursor::default());
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_step_and_wrap() {
        let mut c = MapsCursor::default();
        step(&mut c, 3, 16, egui::Key::ArrowLeft);
        assert_eq!(c.sample, 2);
        step(&mut c, 3, 16, egui::Key::ArrowRight);
        assert_eq!(c.sample, 0);
        step(&mut c, 3, 16, egui::Key::ArrowUp);
        assert_eq!(c.channel, 15);
        step(&mut c, 3, 16, egui::Key::ArrowDown);
        step(&mut c, 3, 16, egui::Key::ArrowDown);
        assert_eq!(c.channel, 1);
    }
}
