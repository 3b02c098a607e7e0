//! Moving around the canvas: selecting a tensor everywhere, the minimap, finding a node, the add-node palette.

use super::*;

impl Editor {
    /// Select a tensor in every view (tables mark it, activations views show it).
    pub fn select_tensor(&mut self, tensor: String) {
        self.select_tensor_as(tensor, Vec::new());
    }

    /// Select a tensor known by other names in other models too (a per-layer row's A and B
    /// tensors, whose names differ for models from different exporters): every view marks
    /// or shows whichever of the names it has.
    pub fn select_tensor_as(&mut self, tensor: String, aliases: Vec<String>) {
        self.selected_tensor = Some(tensor);
        self.selected_aliases = aliases;
        self.selection_serial += 1;
    }

    /// Whether `name` is the selected tensor or one of its other names.
    pub fn is_selected_tensor(&self, name: &str) -> bool {
        self.selected_tensor.as_deref() == Some(name) || self.selected_aliases.iter().any(|a| a == name)
    }

    /// The selected tensor's names, the chosen one first.
    pub fn selected_names(&self) -> Vec<String> {
        self.selected_tensor.iter().chain(&self.selected_aliases).cloned().collect()
    }

    /// Move a node on the canvas by `delta` (graph units).
    pub(crate) fn move_snarl_node(&mut self, node: NodeId, delta: egui::Vec2) {
        if let Some(sid) = self.snarl_ids.get(&node).copied() {
            if let Some(info) = self.snarl.get_node_info_mut(sid) {
                info.pos += delta;
            }
        }
    }

    /// Where the nodes are (graph units), as last drawn.
    pub fn node_rects(&self) -> Vec<(NodeId, egui::Rect)> {
        self.snarl
            .nodes_pos()
            .map(|(pos, id)| {
                let size = self.node_sizes.get(id).copied().unwrap_or(egui::vec2(320.0, 200.0));
                (*id, egui::Rect::from_min_size(pos, size))
            })
            .collect()
    }

    /// The minimap: every node and the visible part of the canvas, in the canvas's
    /// bottom-right corner; a click or drag there moves the view to that point.
    pub(crate) fn minimap_ui(&mut self, ui: &mut egui::Ui) {
        let rects = self.node_rects();
        if rects.len() < 2 || !self.canvas_rect.is_positive() {
            return;
        }
        let view = self.canvas_transform.inverse().mul_rect(self.canvas_rect);
        let all = rects.iter().fold(view, |b, (_, r)| b.union(*r));
        let size = egui::vec2(200.0, 130.0);
        let map = egui::Rect::from_min_size(self.canvas_rect.right_bottom() - size - egui::vec2(10.0, 10.0), size);
        let scale = (map.width() / all.width()).min(map.height() / all.height());
        let to_map = |p: egui::Pos2| map.min + (p - all.min) * scale;
        let from_map = |p: egui::Pos2| all.min + (p - map.min) / scale;
        // Its own area above the canvas, so clicks reach it and not the canvas under it.
        let statuses = &self.statuses;
        let selected = self.selected;
        let mut target = None;
        egui::Area::new(egui::Id::new("qg_minimap_area")).order(egui::Order::Foreground).fixed_pos(map.min).show(
            ui.ctx(),
            |ui| {
                let (rect, response) = ui.allocate_exact_size(map.size(), egui::Sense::click_and_drag());
                let painter = ui.painter_at(rect);
                painter.rect_filled(rect, 4.0, egui::Color32::from_rgba_unmultiplied(20, 20, 24, 220));
                for (id, r) in &rects {
                    let color = match statuses.get(id) {
                        Some(status) => status.color().gamma_multiply(0.8),
                        None => egui::Color32::from_gray(120),
                    };
                    let fill = if selected == Some(*id) { egui::Color32::WHITE } else { color };
                    painter.rect_filled(egui::Rect::from_min_max(to_map(r.min), to_map(r.max)), 1.0, fill);
                }
                painter.rect_stroke(
                    egui::Rect::from_min_max(to_map(view.min), to_map(view.max)),
                    1.0,
                    egui::Stroke::new(1.5, egui::Color32::from_rgb(230, 200, 90)),
                    egui::StrokeKind::Inside,
                );
                let response = response.on_hover_text("Minimap: click or drag to move the view");
                if response.clicked() || response.dragged() {
                    target = response.interact_pointer_pos().map(from_map);
                }
            },
        );
        if target.is_some() {
            self.center_at = target;
        }
    }

    /// Nodes whose label, kind name or kind id contain every word of `query`.
    pub fn find_nodes(&self, query: &str) -> Vec<(NodeId, String)> {
        let q = query.to_lowercase();
        self.graph
            .nodes()
            .map(|n| (n.id, self.graph.display_name(&self.registry, n.id), n.kind.clone()))
            .filter(|(_, name, kind)| {
                let text = format!("{name} {kind}").to_lowercase();
                q.split_whitespace().all(|w| text.contains(w))
            })
            .map(|(id, name, _)| (id, name))
            .collect()
    }

    /// Select a node and bring it to the middle of the canvas.
    pub fn go_to_node(&mut self, node: NodeId) {
        self.selected = Some(node);
        self.center_on = Some(node);
    }

    pub(crate) fn find_window_ui(&mut self, ui: &mut egui::Ui) {
        let Some(mut query) = self.find.take() else { return };
        let mut open = true;
        let mut chosen = None;
        egui::Window::new("Find node").open(&mut open).collapsible(false).default_width(340.0).show(ui.ctx(), |ui| {
            let r =
                ui.add(egui::TextEdit::singleline(&mut query).hint_text("label or kind…").desired_width(f32::INFINITY));
            // Enter makes the field give up focus in the same frame (and it is asked for again
            // right away), so `lost_focus` is never seen: any Enter here means "go".
            let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
            r.request_focus();
            let found = self.find_nodes(&query);
            if found.is_empty() {
                ui.label("No node matches.");
            }
            for (id, name) in &found {
                if ui.button(name).clicked() {
                    chosen = Some(*id);
                }
            }
            if enter {
                chosen = chosen.or(found.first().map(|f| f.0));
            }
        });
        if let Some(id) = chosen {
            self.go_to_node(id);
        } else if open {
            self.find = Some(query);
        }
    }

    pub(crate) fn palette_window_ui(&mut self, ui: &mut egui::Ui) {
        let Some(mut palette) = self.palette.take() else { return };
        let mut open = true;
        let mut chosen = None;
        egui::Window::new("Add node").open(&mut open).collapsible(false).default_width(360.0).show(ui.ctx(), |ui| {
            chosen = canvas::palette_ui(ui, &self.registry, &mut palette.query, None);
        });
        if let Some(kind) = chosen {
            self.add_node(&kind, palette.pos);
        } else if open {
            self.palette = Some(palette);
        }
    }
}
