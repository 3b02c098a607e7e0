//! The real editor window (Bevy + egui) under Xvfb with Mesa's software Vulkan: it opens the
//! default graph, evaluates it, and saves a screenshot that is not blank.
//! The screenshot is kept in target/ci-artifacts/editor.png.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_editor_opens_the_default_graph_and_draws_it() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = repo.join("target/ci-artifacts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shot = out_dir.join("editor.png");
    let _ = std::fs::remove_file(&shot);
    let xvfb = Command::new("sh").args(["-c", "command -v xvfb-run"]).output().unwrap();
    assert!(xvfb.status.success(), "xvfb-run is missing: run scripts/ensure-system.sh (./test.sh does)");
    let state = tempfile::tempdir().unwrap();
    let output = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1600x1000x24"])
        .arg(env!("CARGO_BIN_EXE_quantgraph"))
        .args(["edit", "assets/graphs/default.qgraph", "--screenshot"])
        .arg(&shot)
        .current_dir(&repo)
        .env("WGPU_BACKEND", "vulkan")
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    let log = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the editor failed:\n{log}");
    let img =
        image::open(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{log}", shot.display())).to_rgb8();
    assert!(img.width() >= 1000 && img.height() >= 600, "{}x{}", img.width(), img.height());
    // Not blank: many distinct colours, and bright text pixels on the dark theme.
    let mut colours = std::collections::HashSet::new();
    let mut bright = 0usize;
    for p in img.pixels() {
        colours.insert(p.0);
        if p.0.iter().map(|c| u32::from(*c)).sum::<u32>() > 500 {
            bright += 1;
        }
    }
    assert!(colours.len() > 200, "only {} colours: the window looks blank", colours.len());
    assert!(bright > 2000, "only {bright} bright pixels");
    assert!(log.contains("first frame after"), "{log}");
}
