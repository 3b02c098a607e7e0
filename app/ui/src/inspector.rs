//! The inspector: the selected node's label and params (drawn from its kind's schema),
//! its state, and views of its outputs.

use quantgraph_nodes::graph::{NodeId, PortRef};
use quantgraph_nodes::param::{ParamKind, ParamSpec};
use quantgraph_nodes::Value;
use serde_json::Value as Json;

use crate::{Editor, NodeStatus};

/// Draw the inspector for the editor's selected node.
pub fn inspector_ui(editor: &mut Editor, ui: &mut egui::Ui) {
    if editor.selected.is_none() && editor.frame_inspector_ui(ui) {
        return;
    }
    let Some(id) = editor.selected.filter(|id| editor.graph.node(*id).is_some()) else {
        ui.heading("Inspector");
        ui.label("Select a node on the canvas. Space or right-click adds one.");
        if !editor.graph.notes.is_empty() {
            ui.separator();
            ui.label(editor.graph.notes.clone());
        }
        return;
    };
    let Some(node) = editor.graph.node(id).cloned() else { return };
    let kind = editor.registry.get(&node.kind).cloned();
    ui.heading(editor.graph.display_name(&editor.registry, id));
    match &kind {
        Some(k) => {
            ui.label(egui::RichText::new(format!("{} · {} v{}", k.category(), k.id(), k.version())).weak());
            ui.collapsing("About this node", |ui| ui.label(k.doc()));
        }
        None => {
            ui.colored_label(
                egui::Color32::from_rgb(230, 120, 60),
                format!("Unknown kind '{}': kept as a placeholder; its params are saved unchanged.", node.kind),
            );
        }
    }
    let status = editor.statuses.get(&id).cloned().unwrap_or(NodeStatus::Dirty);
    ui.horizontal(|ui| {
        ui.colored_label(status.color(), status.label_with(editor.show_timings));
        if let NodeStatus::Running { fraction, message } = &status {
            ui.add(egui::ProgressBar::new(*fraction).text(message.as_str()));
        }
    });
    if let NodeStatus::Failed(e) = &status {
        ui.colored_label(status.color(), e);
    }
    ui.separator();
    // Label.
    let mut label = node.label.clone().unwrap_or_default();
    ui.horizontal(|ui| {
        ui.label("Label");
        if ui.text_edit_singleline(&mut label).changed() {
            if let Some(n) = editor.graph.node_mut(id) {
                n.label = (!label.is_empty()).then(|| label.clone());
            }
        }
    });
    // Params.
    if let Some(k) = &kind {
        let specs = k.params();
        if !specs.is_empty() {
            ui.label(egui::RichText::new("Parameters").strong());
        }
        egui::Grid::new(("params", id.0)).num_columns(2).striped(true).show(ui, |ui| {
            for spec in &specs {
                let current = node.params.get(&spec.name).cloned().unwrap_or_else(|| spec.default_value());
                ui.label(&spec.label).on_hover_text(if spec.doc.is_empty() { &spec.name } else { &spec.doc });
                let mut value = current.clone();
                let choices = tensor_choices(editor, id, spec);
                ui.horizontal(|ui| {
                    let field = egui::Id::new(("param", editor.document_serial, id.0, spec.name.as_str()));
                    param_widget(ui, spec, &mut value, &choices, field);
                    if let ParamKind::Path { extensions, directory, .. } = &spec.kind {
                        if ui.button("Browse…").clicked() {
                            let request = crate::BrowseRequest {
                                node: id,
                                param: spec.name.clone(),
                                directory: *directory,
                                extensions: extensions.clone(),
                            };
                            ui.ctx().data_mut(|d| d.insert_temp(egui::Id::new("qg_browse"), Some(request)));
                        }
                    }
                });
                if value != current {
                    if let Some(n) = editor.graph.node_mut(id) {
                        n.params.insert(spec.name.clone(), value);
                    }
                }
                ui.end_row();
            }
        });
        let problems: Vec<(String, String)> = quantgraph_nodes::param::validate(&specs, &node.params);
        for (name, msg) in problems {
            ui.colored_label(egui::Color32::from_rgb(230, 70, 70), format!("{name}: {msg}"));
        }
    } else if !node.params.is_empty() {
        ui.label(egui::RichText::new("Parameters (read-only)").strong());
        ui.monospace(serde_json::to_string_pretty(&node.params).unwrap_or_default());
    }
    ui.separator();
    // Outputs.
    if let Some(outputs) = editor.outputs(id).cloned() {
        for (port, value) in outputs.iter() {
            egui::CollapsingHeader::new(format!("{port}: {}", value.summary()))
                .id_salt(("out", id.0, port.as_str()))
                .default_open(true)
                .show(ui, |ui| {
                    crate::views::value_ui(editor, ui, id, port, value);
                });
        }
    } else if !matches!(status, NodeStatus::Failed(_)) {
        ui.label("No result yet.");
    }
}

/// Tensor names offered for a TensorName param: from the value on the input it names.
fn tensor_choices(editor: &Editor, id: NodeId, spec: &ParamSpec) -> Vec<String> {
    let from = match &spec.kind {
        ParamKind::TensorName { from_input, .. } => from_input.clone(),
        ParamKind::List { fields } => match fields.iter().find_map(|f| match &f.kind {
            ParamKind::TensorName { from_input, .. } => Some(from_input.clone()),
            _ => None,
        }) {
            Some(f) => f,
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    let Some(src) = editor.graph.source_of(&PortRef::new(id, &from)) else { return Vec::new() };
    let Some(value) = editor.outputs(src.node).and_then(|o| o.get(&src.port)) else { return Vec::new() };
    match value {
        Value::Model(m) => {
            let mut names: Vec<String> =
                m.info.qdq.iter().filter(|q| !q.is_weight).map(|q| q.float_tensor.clone()).collect();
            names.extend(m.info.qdq.iter().filter(|q| q.is_weight).map(|q| q.float_tensor.clone()));
            if names.is_empty() {
                names = m.info.nodes.iter().flat_map(|n| n.outputs.clone()).collect();
            }
            let mut seen = std::collections::BTreeSet::new();
            names.retain(|n| seen.insert(n.clone()));
            names
        }
        Value::Activations(a) => a.tensors.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// One param's widget; edits `value` in place.
pub fn param_widget(ui: &mut egui::Ui, spec: &ParamSpec, value: &mut Json, choices: &[String], id: egui::Id) {
    match &spec.kind {
        ParamKind::Float { min, max, step, log_scale, .. } => {
            let mut v = value.as_f64().unwrap_or(0.0);
            let slider_range = if max - min <= 1e6 { *min..=*max } else { *min..=min.max(1.0) * 10.0 };
            ui.horizontal(|ui| {
                let mut s = egui::Slider::new(&mut v, slider_range)
                    .logarithmic(*log_scale)
                    .clamping(egui::SliderClamping::Never);
                if *step > 0.0 {
                    s = s.step_by(*step);
                }
                if *log_scale || max - min > 1e6 {
                    s = s.logarithmic(true).smallest_positive(1e-8);
                }
                ui.add(s);
            });
            if v.is_finite() {
                *value = Json::from(v);
            }
        }
        ParamKind::Int { min, max, .. } => {
            let mut v = value.as_i64().unwrap_or(0);
            ui.add(egui::DragValue::new(&mut v).range(*min..=*max));
            *value = Json::from(v);
        }
        ParamKind::Bool { .. } => {
            let mut v = value.as_bool().unwrap_or(false);
            ui.checkbox(&mut v, "");
            *value = Json::from(v);
        }
        ParamKind::Choice { options, .. } => {
            let mut v = value.as_str().unwrap_or_default().to_owned();
            egui::ComboBox::from_id_salt(id).selected_text(&v).show_ui(ui, |ui| {
                for o in options {
                    ui.selectable_value(&mut v, o.clone(), o);
                }
            });
            *value = Json::from(v);
        }
        ParamKind::Text { .. } => {
            let mut v = value.as_str().unwrap_or_default().to_owned();
            ui.add(egui::TextEdit::singleline(&mut v).desired_width(220.0));
            *value = Json::from(v);
        }
        ParamKind::Path { extensions, directory, .. } => {
            let mut v = value.as_str().unwrap_or_default().to_owned();
            ui.vertical(|ui| {
                ui.add(egui::TextEdit::singleline(&mut v).desired_width(260.0).hint_text(if *directory {
                    "folder"
                } else {
                    "file"
                }));
                if !extensions.is_empty() {
                    ui.label(egui::RichText::new(format!("*.{}", extensions.join(", *."))).weak().small());
                }
            });
            *value = Json::from(v);
        }
        ParamKind::TensorName { multiple: false, .. } => {
            let mut v = value.as_str().unwrap_or_default().to_owned();
            tensor_combo(ui, &mut v, choices, id);
            *value = Json::from(v);
        }
        ParamKind::TensorName { multiple: true, .. } => {
            let mut chosen: Vec<String> = value
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            egui::CollapsingHeader::new(format!("{} chosen", chosen.len())).id_salt(id).show(ui, |ui| {
                egui::ScrollArea::vertical().max_height(160.0).show(ui, |ui| {
                    for c in choices {
                        let mut on = chosen.contains(c);
                        if ui.checkbox(&mut on, c).changed() {
                            if on {
                                chosen.push(c.clone());
                            } else {
                                chosen.retain(|x| x != c);
                            }
                        }
                    }
                    if choices.is_empty() {
                        ui.label("(connect and evaluate the upstream model to list its tensors)");
                    }
                });
            });
            *value = Json::Array(chosen.into_iter().map(Json::from).collect());
        }
        ParamKind::Floats { lengths, .. } => {
            // Shown as text ("0.49, 0.48, 0.45"). The param changes only when the user edits
            // the text and it reads as numbers that fit. Text that does not stays in the field
            // with the reason (also after the field loses the focus) until it is fixed, or
            // until the value changes elsewhere (undo): the kept text remembers the value it
            // was typed over, and `id` changes with the document (another graph).
            let shown = match &*value {
                // A value an old file left as text (its migration failed): shown as it is.
                Json::String(text) => text.clone(),
                other => quantgraph_nodes::param::format_floats(
                    &other
                        .as_array()
                        .map(|a| a.iter().filter_map(Json::as_f64).collect::<Vec<_>>())
                        .unwrap_or_default(),
                ),
            };
            let text_id = id.with("floats_text");
            let mut over = value.to_string();
            let kept = ui.ctx().data_mut(|d| d.get_temp::<(String, String)>(text_id)).filter(|(_, o)| *o == over);
            let mut text = kept.map_or(shown, |(t, _)| t);
            let hint = if lengths.contains(&0) { "none" } else { "numbers, comma-separated" };
            let (focused, valid) = ui
                .vertical(|ui| {
                    let r = ui.add(egui::TextEdit::singleline(&mut text).desired_width(220.0).hint_text(hint));
                    let parsed = quantgraph_nodes::param::parse_floats(&text).and_then(|v| {
                        let candidate = Json::Array(v.iter().map(|x| Json::from(*x)).collect());
                        spec.validate(&candidate).map(|()| candidate)
                    });
                    match parsed {
                        Ok(candidate) => {
                            if r.changed() {
                                over = candidate.to_string();
                                *value = candidate;
                            }
                            (r.has_focus(), true)
                        }
                        Err(e) => {
                            ui.colored_label(egui::Color32::from_rgb(230, 70, 70), format!("not applied: {e}"));
                            (r.has_focus(), false)
                        }
                    }
                })
                .inner;
            if focused || !valid {
                ui.ctx().data_mut(|d| d.insert_temp(text_id, (text, over)));
            } else {
                ui.ctx().data_mut(|d| d.remove::<(String, String)>(text_id));
            }
        }
        ParamKind::List { fields } => {
            let mut items: Vec<Json> = value.as_array().cloned().unwrap_or_default();
            let mut remove = None;
            ui.vertical(|ui| {
                for (i, item) in items.iter_mut().enumerate() {
                    if !item.is_object() {
                        *item = Json::Object(Default::default());
                    }
                    ui.horizontal(|ui| {
                        for f in fields {
                            let Some(obj) = item.as_object_mut() else { continue };
                            let mut fv = obj.get(&f.name).cloned().unwrap_or_else(|| f.default_value());
                            ui.label(egui::RichText::new(&f.label).small());
                            param_widget(ui, f, &mut fv, choices, id.with((i, f.name.as_str())));
                            obj.insert(f.name.clone(), fv);
                        }
                        if ui.small_button("✖").on_hover_text("Remove (reset to the original)").clicked() {
                            remove = Some(i);
                        }
                    });
                }
                if ui.button("+ Add").clicked() {
                    let obj: serde_json::Map<String, Json> =
                        fields.iter().map(|f| (f.name.clone(), f.default_value())).collect();
                    items.push(Json::Object(obj));
                }
            });
            if let Some(i) = remove {
                items.remove(i);
            }
            *value = Json::Array(items);
        }
    }
}

fn tensor_combo(ui: &mut egui::Ui, v: &mut String, choices: &[String], id: egui::Id) {
    let filter_id = id.with("filter");
    let mut filter = ui.ctx().data_mut(|d| d.get_temp::<String>(filter_id).unwrap_or_default());
    egui::ComboBox::from_id_salt(id)
        .selected_text(if v.is_empty() { "(choose)" } else { v.as_str() })
        .width(200.0)
        .show_ui(ui, |ui| {
            ui.add(egui::TextEdit::singleline(&mut filter).hint_text("filter"));
            for c in choices.iter().filter(|c| filter.is_empty() || c.contains(filter.as_str())) {
                ui.selectable_value(v, c.clone(), c);
            }
            if choices.is_empty() {
                ui.label("(evaluate the upstream model first)");
            }
        });
    ui.ctx().data_mut(|d| d.insert_temp(filter_id, filter));
}
