//! The node canvas: egui-snarl drawing our [`Graph`](quantgraph_nodes::Graph).
//!
//! The graph is the document; the snarl is its view. Edits made on the canvas (wires,
//! moves, deletions, new nodes) are applied to both at once; the editor turns them into
//! one undo step when the gesture ends. Connecting asks the graph first, so a type mismatch
//! or a cycle is refused with its reason.

use egui::Color32;
use egui_snarl::ui::{AnyPins, PinInfo, SnarlViewer};
use egui_snarl::{InPin, InPinId, OutPin, OutPinId, Snarl};
use quantgraph_nodes::graph::{NodeId, PortRef};
use quantgraph_nodes::{NodeRegistry, PortType};

use crate::{Editor, NodeStatus};

/// The canvas widget's id (for its selection).
pub fn canvas_id() -> egui::Id {
    egui::Id::new("quantgraph_canvas")
}

pub fn port_color(ty: PortType) -> Color32 {
    let [r, g, b] = ty.color_rgb();
    Color32::from_rgb(r, g, b)
}

/// The list of node kinds, filtered by a query over name, category, id and doc, and
/// (optionally) by a port type they must accept. Returns the kind chosen.
pub fn palette_ui(
    ui: &mut egui::Ui,
    registry: &NodeRegistry,
    query: &mut String,
    accepts: Option<(PortType, bool)>,
) -> Option<String> {
    let r = ui.add(egui::TextEdit::singleline(query).hint_text("search nodes…").desired_width(f32::INFINITY));
    r.request_focus();
    let q = query.to_lowercase();
    let empty = Default::default();
    let mut chosen = None;
    let mut by_category: std::collections::BTreeMap<&str, Vec<&std::sync::Arc<dyn quantgraph_nodes::NodeKind>>> =
        Default::default();
    // Kinds whose name or id has every word come first (and Enter takes the first of them);
    // those that match only by their doc follow.
    let name_match = |k: &dyn quantgraph_nodes::NodeKind| {
        let name = format!("{} {}", k.display_name(), k.id()).to_lowercase();
        q.split_whitespace().all(|w| name.contains(w))
    };
    let mut best = None;
    for k in registry.kinds() {
        let text = format!("{} {} {} {}", k.display_name(), k.category(), k.id(), k.doc()).to_lowercase();
        if !q.is_empty() && !q.split_whitespace().all(|w| text.contains(w)) {
            continue;
        }
        if let Some((ty, wants_input)) = accepts {
            let ports = if wants_input { k.inputs(&empty) } else { k.outputs(&empty) };
            if !ports.iter().any(|p| p.ty == ty) {
                continue;
            }
        }
        if best.is_none() && name_match(k.as_ref()) {
            best = Some(k.id().to_owned());
        }
        by_category.entry(k.category()).or_default().push(k);
    }
    for kinds in by_category.values_mut() {
        kinds.sort_by_key(|k| !name_match(k.as_ref()));
    }
    if by_category.is_empty() {
        ui.label("No node kind matches.");
    }
    // Enter in the search field adds the first kind whose name matches, else the first
    // listed (the field takes the focus back every frame, so `lost_focus` is never seen).
    let enter = ui.input(|i| i.key_pressed(egui::Key::Enter));
    let mut first = None;
    for (cat, kinds) in by_category {
        ui.label(egui::RichText::new(cat).strong());
        for k in kinds {
            first.get_or_insert(k.id().to_owned());
            if ui.button(k.display_name()).on_hover_text(format!("{}\n\n{}", k.id(), k.doc())).clicked() {
                chosen = Some(k.id().to_owned());
            }
        }
    }
    if enter && chosen.is_none() {
        chosen = best.or(first);
    }
    chosen
}

/// The snarl viewer: draws nodes from the registry's kinds and applies canvas edits.
/// Node title text size on the canvas at zoom 1 (≥ 13 px at the zoom that frames the
/// default graph at 1600×1000).
pub const TITLE_SIZE: f32 = 17.0;
/// Ports and status line.
pub const BODY_SIZE: f32 = 15.0;
/// Summary and error lines.
pub const DETAIL_SIZE: f32 = 14.5;

pub struct CanvasViewer<'a> {
    pub editor: &'a mut Editor,
    /// Nodes added during this frame (to select them).
    pub added: Vec<NodeId>,
}

impl CanvasViewer<'_> {
    /// A pin's label, counted in its node's measured size.
    fn port_label(
        &mut self,
        ui: &mut egui::Ui,
        snarl: &Snarl<NodeId>,
        node: egui_snarl::NodeId,
        text: &str,
        ty: PortType,
    ) {
        let r = ui.label(egui::RichText::new(text).size(BODY_SIZE)).on_hover_text(ty.name());
        if let Some(id) = snarl.get_node(node).copied() {
            self.editor.measure_node(id, r.rect, ui.ctx().cumulative_pass_nr());
        }
    }

    /// The node and declared port behind a pin.
    fn port_spec(
        &self,
        snarl: &Snarl<NodeId>,
        node: egui_snarl::NodeId,
        index: usize,
        output: bool,
    ) -> Option<(NodeId, quantgraph_nodes::PortSpec)> {
        let id = *snarl.get_node(node)?;
        let ports = if output {
            self.editor.graph.output_ports(&self.editor.registry, id)?
        } else {
            self.editor.graph.input_ports(&self.editor.registry, id)?
        };
        Some((id, ports.into_iter().nth(index)?))
    }

    fn port_ref(&self, snarl: &Snarl<NodeId>, node: egui_snarl::NodeId, index: usize, output: bool) -> Option<PortRef> {
        self.port_spec(snarl, node, index, output).map(|(id, p)| PortRef::new(id, &p.name))
    }

    fn pin_type(
        &self,
        snarl: &Snarl<NodeId>,
        node: egui_snarl::NodeId,
        index: usize,
        output: bool,
    ) -> Option<PortType> {
        self.port_spec(snarl, node, index, output).map(|(_, p)| p.ty)
    }

    fn add_node(
        &mut self,
        kind: &str,
        pos: egui::Pos2,
        snarl: &mut Snarl<NodeId>,
    ) -> Option<(NodeId, egui_snarl::NodeId)> {
        match self.editor.graph.add_node(&self.editor.registry, kind, [pos.x, pos.y]) {
            Ok(id) => {
                let sid = snarl.insert_node(pos, id);
                self.editor.snarl_ids.insert(id, sid);
                self.added.push(id);
                self.editor.selected = Some(id);
                Some((id, sid))
            }
            Err(e) => {
                self.editor.message = Some(e.to_string());
                None
            }
        }
    }

    fn status(&self, node: NodeId) -> NodeStatus {
        self.editor.statuses.get(&node).cloned().unwrap_or(NodeStatus::Dirty)
    }
}

impl SnarlViewer<NodeId> for CanvasViewer<'_> {
    fn title(&mut self, node: &NodeId) -> String {
        let Some(n) = self.editor.graph.node(*node) else { return "?".into() };
        let kind = self
            .editor
            .registry
            .get(&n.kind)
            .map(|k| k.display_name().to_owned())
            .unwrap_or_else(|| format!("? {}", n.kind));
        match &n.label {
            Some(l) => format!("{l} · {kind}"),
            None => kind,
        }
    }

    fn show_header(
        &mut self,
        node: egui_snarl::NodeId,
        _: &[InPin],
        _: &[OutPin],
        ui: &mut egui::Ui,
        snarl: &mut Snarl<NodeId>,
    ) {
        let Some(id) = snarl.get_node(node).copied() else { return };
        let title = self.title(&id);
        let r = ui.label(egui::RichText::new(title).size(TITLE_SIZE).strong());
        self.editor.measure_node(id, r.rect, ui.ctx().cumulative_pass_nr());
    }

    fn inputs(&mut self, node: &NodeId) -> usize {
        self.editor.graph.input_ports(&self.editor.registry, *node).map_or(0, |p| p.len())
    }

    fn outputs(&mut self, node: &NodeId) -> usize {
        self.editor.graph.output_ports(&self.editor.registry, *node).map_or(0, |p| p.len())
    }

    fn show_input(
        &mut self,
        pin: &InPin,
        ui: &mut egui::Ui,
        snarl: &mut Snarl<NodeId>,
    ) -> impl egui_snarl::ui::SnarlPin + 'static {
        let port = self.port_spec(snarl, pin.id.node, pin.id.input, false).map(|(_, p)| p);
        match port {
            Some(p) => {
                let text = if p.optional { format!("{} (optional)", p.name) } else { p.name.clone() };
                self.port_label(ui, snarl, pin.id.node, &text, p.ty);
                PinInfo::circle().with_fill(port_color(p.ty))
            }
            None => PinInfo::circle(),
        }
    }

    fn show_output(
        &mut self,
        pin: &OutPin,
        ui: &mut egui::Ui,
        snarl: &mut Snarl<NodeId>,
    ) -> impl egui_snarl::ui::SnarlPin + 'static {
        let port = self.port_spec(snarl, pin.id.node, pin.id.output, true).map(|(_, p)| p);
        match port {
            Some(p) => {
                self.port_label(ui, snarl, pin.id.node, &p.name, p.ty);
                PinInfo::circle().with_fill(port_color(p.ty)).with_wire_color(port_color(p.ty))
            }
            None => PinInfo::circle(),
        }
    }

    fn has_body(&mut self, _: &NodeId) -> bool {
        true
    }

    fn show_body(
        &mut self,
        node: egui_snarl::NodeId,
        _: &[InPin],
        _: &[OutPin],
        ui: &mut egui::Ui,
        snarl: &mut Snarl<NodeId>,
    ) {
        let Some(id) = snarl.get_node(node).copied() else { return };
        let status = self.status(id);
        let body = ui.vertical(|ui| {
            ui.set_max_width(260.0);
            ui.horizontal(|ui| {
                let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
                ui.painter().circle_filled(rect.center(), 6.0, status.color());
                ui.label(egui::RichText::new(status.label_with(self.editor.show_timings)).size(BODY_SIZE));
            });
            match &status {
                NodeStatus::Running { fraction, message } => {
                    ui.add(
                        egui::ProgressBar::new(*fraction)
                            .text(egui::RichText::new(message.as_str()).size(BODY_SIZE))
                            .desired_width(250.0),
                    );
                }
                NodeStatus::Failed(e) => {
                    ui.colored_label(status.color(), egui::RichText::new(short(e, 60)).size(DETAIL_SIZE))
                        .on_hover_text(e);
                }
                NodeStatus::Blocked(by) => {
                    let name = self.editor.graph.display_name(&self.editor.registry, *by);
                    ui.label(egui::RichText::new(format!("blocked by {name}")).size(DETAIL_SIZE));
                }
                _ => {}
            }
            if let Some(s) = self.editor.summary(id) {
                ui.label(egui::RichText::new(short(&s, 70)).size(DETAIL_SIZE));
            }
            if let Some(outputs) = self.editor.outputs.get(&id).cloned() {
                for v in outputs.values() {
                    if let quantgraph_nodes::Value::Plot(p) = v {
                        crate::views::plot_ui(ui, p, egui::Id::new(("node_plot", id.0)), 150.0, true);
                    }
                }
            }
        });
        self.editor.measure_node(id, body.response.rect, ui.ctx().cumulative_pass_nr());
    }

    fn has_on_hover_popup(&mut self, node: &NodeId) -> bool {
        matches!(self.editor.statuses.get(node), Some(NodeStatus::Failed(_)))
    }

    fn show_on_hover_popup(
        &mut self,
        node: egui_snarl::NodeId,
        _: &[InPin],
        _: &[OutPin],
        ui: &mut egui::Ui,
        snarl: &mut Snarl<NodeId>,
    ) {
        if let Some(NodeStatus::Failed(e)) = snarl.get_node(node).and_then(|id| self.editor.statuses.get(id)) {
            ui.label(e);
        }
    }

    fn connect(&mut self, from: &OutPin, to: &InPin, snarl: &mut Snarl<NodeId>) {
        let (Some(f), Some(t)) = (
            self.port_ref(snarl, from.id.node, from.id.output, true),
            self.port_ref(snarl, to.id.node, to.id.input, false),
        ) else {
            return;
        };
        match self.editor.graph.connect(&self.editor.registry, f, t) {
            Ok(_) => {
                snarl.drop_inputs(to.id);
                snarl.connect(from.id, to.id);
                self.editor.message = None;
            }
            Err(e) => self.editor.message = Some(format!("Cannot connect: {e}")),
        }
    }

    fn disconnect(&mut self, from: &OutPin, to: &InPin, snarl: &mut Snarl<NodeId>) {
        if let Some(t) = self.port_ref(snarl, to.id.node, to.id.input, false) {
            self.editor.graph.disconnect(&t);
        }
        snarl.disconnect(from.id, to.id);
    }

    fn drop_inputs(&mut self, pin: &InPin, snarl: &mut Snarl<NodeId>) {
        if let Some(t) = self.port_ref(snarl, pin.id.node, pin.id.input, false) {
            self.editor.graph.disconnect(&t);
        }
        snarl.drop_inputs(pin.id);
    }

    fn drop_outputs(&mut self, pin: &OutPin, snarl: &mut Snarl<NodeId>) {
        for remote in &pin.remotes {
            if let Some(t) = self.port_ref(snarl, remote.node, remote.input, false) {
                self.editor.graph.disconnect(&t);
            }
        }
        snarl.drop_outputs(pin.id);
    }

    fn has_graph_menu(&mut self, _: egui::Pos2, _: &mut Snarl<NodeId>) -> bool {
        true
    }

    fn show_graph_menu(&mut self, pos: egui::Pos2, ui: &mut egui::Ui, snarl: &mut Snarl<NodeId>) {
        ui.label("Add node");
        let mut query = ui.ctx().data_mut(|d| d.get_temp::<String>(egui::Id::new("qg_menu_query")).unwrap_or_default());
        let chosen = palette_ui(ui, &self.editor.registry.clone(), &mut query, None);
        ui.ctx().data_mut(|d| d.insert_temp(egui::Id::new("qg_menu_query"), query));
        if let Some(kind) = chosen {
            self.add_node(&kind, pos, snarl);
            ui.close();
        }
    }

    fn has_dropped_wire_menu(&mut self, _: AnyPins, _: &mut Snarl<NodeId>) -> bool {
        true
    }

    fn show_dropped_wire_menu(
        &mut self,
        pos: egui::Pos2,
        ui: &mut egui::Ui,
        src_pins: AnyPins,
        snarl: &mut Snarl<NodeId>,
    ) {
        // The type being dragged, and whether the new node must take it as an input.
        let (ty, wants_input) = match src_pins {
            AnyPins::Out(pins) => (pins.first().and_then(|p| self.pin_type(snarl, p.node, p.output, true)), true),
            AnyPins::In(pins) => (pins.first().and_then(|p| self.pin_type(snarl, p.node, p.input, false)), false),
        };
        let Some(ty) = ty else { return };
        ui.label(format!("Add a node that {} {ty}", if wants_input { "takes" } else { "gives" }));
        let mut query = String::new();
        let registry = self.editor.registry.clone();
        if let Some(kind) = palette_ui(ui, &registry, &mut query, Some((ty, wants_input))) {
            if let Some((_, sid)) = self.add_node(&kind, pos, snarl) {
                let empty = Default::default();
                let Some(k) = registry.get(&kind) else { return };
                match src_pins {
                    AnyPins::Out(pins) => {
                        if let Some(i) = k.inputs(&empty).iter().position(|p| p.ty == ty) {
                            for p in pins {
                                let from = snarl.out_pin(*p);
                                let to = snarl.in_pin(InPinId { node: sid, input: i });
                                self.connect(&from, &to, snarl);
                            }
                        }
                    }
                    AnyPins::In(pins) => {
                        if let Some(o) = k.outputs(&empty).iter().position(|p| p.ty == ty) {
                            for p in pins {
                                let from = snarl.out_pin(OutPinId { node: sid, output: o });
                                let to = snarl.in_pin(*p);
                                self.connect(&from, &to, snarl);
                            }
                        }
                    }
                }
            }
            ui.close();
        }
    }

    fn current_transform(&mut self, to_global: &mut egui::emath::TSTransform, snarl: &mut Snarl<NodeId>) {
        // Frame all (after opening, and on F), and keep framing while nodes grow (results
        // arrive, plots appear) or the canvas changes size — until the user pans or zooms.
        if std::mem::take(&mut self.editor.frame_requested) {
            self.editor.auto_fit = true;
        } else if self.editor.auto_fit && *to_global != self.editor.canvas_transform {
            self.editor.auto_fit = false;
        }
        if let Some(node) = self.editor.center_on.take() {
            // Go to a node (Find): keep the zoom, put the node in the middle.
            self.editor.auto_fit = false;
            let pos = snarl.nodes_pos().find(|(_, id)| **id == node).map(|(p, _)| p);
            if let Some(pos) = pos {
                let size = self.editor.node_sizes.get(&node).copied().unwrap_or(egui::vec2(320.0, 200.0));
                let center = pos + size / 2.0;
                to_global.translation =
                    self.editor.canvas_rect.center().to_vec2() - center.to_vec2() * to_global.scaling;
            }
        }
        if let Some(p) = self.editor.center_at.take() {
            // A click on the minimap: keep the zoom, put that point in the middle.
            self.editor.auto_fit = false;
            to_global.translation = self.editor.canvas_rect.center().to_vec2() - p.to_vec2() * to_global.scaling;
        }
        if let Some(nodes) = self.editor.frame_nodes.take() {
            // Frame selected (Shift+F): fit those nodes, once.
            self.editor.auto_fit = false;
            let bbox =
                snarl.nodes_pos().filter(|(_, id)| nodes.contains(id)).fold(egui::Rect::NOTHING, |b, (pos, id)| {
                    let size = self.editor.node_sizes.get(id).copied().unwrap_or(egui::vec2(320.0, 200.0));
                    b.union(egui::Rect::from_min_size(pos, size))
                });
            fit(to_global, bbox, self.editor.canvas_rect.shrink(16.0));
        }
        if !self.editor.auto_fit {
            self.editor.canvas_transform = *to_global;
            return;
        }
        let mut bbox = egui::Rect::NOTHING;
        for (pos, id) in snarl.nodes_pos() {
            // A node not drawn yet: an estimate of its size until the next frame measures it.
            let size = self.editor.node_sizes.get(id).copied().unwrap_or(egui::vec2(320.0, 200.0));
            bbox = bbox.union(egui::Rect::from_min_size(pos, size));
        }
        fit(to_global, bbox, self.editor.canvas_rect.shrink(16.0));
        self.editor.canvas_transform = *to_global;
    }

    fn has_node_menu(&mut self, _: &NodeId) -> bool {
        true
    }

    fn show_node_menu(
        &mut self,
        node: egui_snarl::NodeId,
        _: &[InPin],
        _: &[OutPin],
        ui: &mut egui::Ui,
        snarl: &mut Snarl<NodeId>,
    ) {
        let Some(id) = snarl.get_node(node).copied() else { return };
        if ui.button("Inspect").clicked() {
            self.editor.selected = Some(id);
            ui.close();
        }
        if ui.button("Delete").clicked() {
            self.editor.graph.remove_node(id);
            snarl.remove_node(node);
            if self.editor.selected == Some(id) {
                self.editor.selected = None;
            }
            ui.close();
        }
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// Scale and move `to_global` so `bbox` (graph units) fills `view` (screen), zoom within
/// 0.2–1.25.
fn fit(to_global: &mut egui::emath::TSTransform, bbox: egui::Rect, view: egui::Rect) {
    if bbox.is_positive() && view.is_positive() {
        let scaling = (view.width() / bbox.width()).min(view.height() / bbox.height()).clamp(0.2, 1.25);
        to_global.scaling = scaling;
        to_global.translation = view.center().to_vec2() - bbox.center().to_vec2() * scaling;
    }
}
