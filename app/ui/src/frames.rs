//! Frames: titled, coloured boxes behind groups of nodes (comments on the canvas), saved
//! with the graph. Select nodes and press G (or Edit → Group in a frame) to frame them; drag
//! a frame by its title bar to move it with the nodes inside; click the title to edit its
//! title and colour, or delete it, in the inspector. Every change is one undo step.

use quantgraph_nodes::graph::{Frame, NodeId};

use crate::Editor;

/// Colours new frames take in turn.
const COLORS: [[u8; 3]; 5] = [[70, 110, 170], [90, 150, 90], [170, 120, 60], [140, 90, 160], [160, 80, 80]];
/// Height of a frame's title bar (canvas units).
pub const TITLE: f32 = 30.0;
const PAD: f32 = 24.0;

/// The frame around `rects` (canvas units): padded, with room for the title above.
pub fn around(rects: &[egui::Rect], title: &str, index: usize) -> Option<Frame> {
    let bbox = rects.iter().fold(egui::Rect::NOTHING, |b, r| b.union(*r));
    if !bbox.is_positive() {
        return None;
    }
    let r = bbox.expand(PAD);
    Some(Frame {
        title: title.to_owned(),
        color: COLORS[index % COLORS.len()],
        rect: [r.min.x, r.min.y - TITLE, r.width(), r.height() + TITLE],
    })
}

pub fn rect_of(f: &Frame) -> egui::Rect {
    egui::Rect::from_min_size(egui::pos2(f.rect[0], f.rect[1]), egui::vec2(f.rect[2], f.rect[3]))
}

impl Editor {
    /// Put a frame around `nodes` (one undo step).
    pub fn group_in_frame(&mut self, nodes: &[NodeId]) {
        let rects: Vec<egui::Rect> =
            self.node_rects().into_iter().filter(|(id, _)| nodes.contains(id)).map(|(_, r)| r).collect();
        let index = self.graph.frames.len();
        let Some(frame) = around(&rects, "Group", index) else {
            self.message = Some("Select the nodes to frame first".into());
            return;
        };
        self.edit(|g, _| g.frames.push(frame));
        self.selected_frame = Some(index);
    }

    /// Move frame `index` and the nodes whose centre lies inside it by `delta` (canvas units);
    /// the editor's per-gesture commit makes a drag one undo step.
    pub fn move_frame(&mut self, index: usize, delta: egui::Vec2) {
        let Some(frame) = self.graph.frames.get(index) else { return };
        let area = rect_of(frame);
        let inside: Vec<NodeId> =
            self.node_rects().into_iter().filter(|(_, r)| area.contains(r.center())).map(|(id, _)| id).collect();
        if let Some(f) = self.graph.frames.get_mut(index) {
            f.rect[0] += delta.x;
            f.rect[1] += delta.y;
        }
        for id in inside {
            if let Some(n) = self.graph.node_mut(id) {
                n.position = [n.position[0] + delta.x, n.position[1] + delta.y];
            }
            self.move_snarl_node(id, delta);
        }
    }

    /// Draw the frames behind the nodes and handle their title bars.
    pub(crate) fn frames_ui(&mut self, ui: &mut egui::Ui) {
        let t = self.canvas_transform;
        let painter = ui.painter_at(self.canvas_rect);
        let mut drag: Option<(usize, egui::Vec2)> = None;
        let mut clicked = None;
        let _ = painter;
        for (i, f) in self.graph.frames.iter().enumerate() {
            let r = t.mul_rect(rect_of(f));
            let [cr, cg, cb] = f.color;
            let bar = egui::Rect::from_min_size(r.min, egui::vec2(r.width(), TITLE * t.scaling));
            if !bar.intersects(self.canvas_rect) {
                continue;
            }
            // The title bar is its own area above the canvas, so a drag on it moves the frame
            // instead of panning the canvas.
            let bar = bar.intersect(self.canvas_rect);
            let font = egui::FontId::proportional((16.0 * t.scaling).clamp(9.0, 26.0));
            egui::Area::new(egui::Id::new(("qg_frame_bar", i)))
                .order(egui::Order::Foreground)
                .fixed_pos(bar.min)
                .constrain(false)
                .show(ui.ctx(), |ui| {
                    let (rect, response) = ui.allocate_exact_size(bar.size(), egui::Sense::click_and_drag());
                    let painter = ui.painter_at(rect);
                    painter.rect_filled(rect, 8.0, egui::Color32::from_rgba_unmultiplied(cr, cg, cb, 170));
                    painter.text(
                        rect.left_center() + egui::vec2(10.0, 0.0),
                        egui::Align2::LEFT_CENTER,
                        &f.title,
                        font,
                        egui::Color32::WHITE,
                    );
                    let response = response.on_hover_text("Drag to move the frame and its nodes; click to edit it");
                    response.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::WidgetType::Button, true, format!("frame {}", f.title))
                    });
                    if response.dragged() {
                        drag = Some((i, response.drag_delta() / t.scaling));
                    }
                    if response.clicked() {
                        clicked = Some(i);
                    }
                });
        }
        if let Some((i, d)) = drag {
            self.move_frame(i, d);
        }
        if let Some(i) = clicked {
            self.selected_frame = Some(i);
            self.selected = None;
        }
    }

    /// Draw the frames' boxes: after the canvas's background, in its layer, so the nodes
    /// (drawn in layers above it) stay on top.
    pub(crate) fn frame_boxes_ui(&self, ui: &egui::Ui) {
        let t = self.canvas_transform;
        let painter = ui.painter_at(self.canvas_rect);
        for (i, f) in self.graph.frames.iter().enumerate() {
            let r = t.mul_rect(rect_of(f));
            let [cr, cg, cb] = f.color;
            let selected = self.selected_frame == Some(i);
            painter.rect_filled(r, 8.0, egui::Color32::from_rgba_unmultiplied(cr, cg, cb, 30));
            painter.rect_stroke(
                r,
                8.0,
                egui::Stroke::new(if selected { 2.5 } else { 1.5 }, egui::Color32::from_rgb(cr, cg, cb)),
                egui::StrokeKind::Inside,
            );
        }
    }

    /// The inspector of the selected frame: title, colour, delete. Returns false when no
    /// frame is selected.
    pub(crate) fn frame_inspector_ui(&mut self, ui: &mut egui::Ui) -> bool {
        let Some(i) = self.selected_frame.filter(|i| *i < self.graph.frames.len()) else { return false };
        ui.heading("Frame");
        let mut delete = false;
        if let Some(f) = self.graph.frames.get_mut(i) {
            ui.horizontal(|ui| {
                ui.label("Title");
                ui.text_edit_singleline(&mut f.title);
            });
            ui.horizontal(|ui| {
                ui.label("Colour");
                ui.color_edit_button_srgb(&mut f.color);
            });
            ui.label(egui::RichText::new("Drag its title bar on the canvas to move it with its nodes.").weak());
            delete = ui.button("Delete frame (nodes stay)").clicked();
        }
        if delete {
            self.edit(|g, _| {
                g.frames.remove(i);
            });
            self.selected_frame = None;
        }
        true
    }
}
