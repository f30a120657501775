//! The pictures ferry draws for a postmortem, rendered to PNG the way a reader's viewer would
//! (`rsvg-convert` for SVG, Graphviz's `dot` for the plan graph): each must render without a
//! complaint and fit a page. The PNGs are left in `target/pictures/` to be looked at; the
//! SVGs' content is pinned by snapshot tests beside the renderers.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::Scratch;

/// Wider than this, a picture pasted into a document is shrunk until its labels are unreadable.
const PAGE_WIDTH_PIXELS: u32 = 2_400;

/// Where the PNGs are left for a person to look at.
fn pictures_folder() -> PathBuf {
    let folder = support::repository().join("target/pictures");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// Width and height from a PNG's header (the IHDR chunk, right after the signature).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let number = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (number(16), number(20))
}

/// Renders `svg` to `name.png` with rsvg-convert, which must say nothing.
fn render_svg(svg: &Path, name: &str) -> (u32, u32) {
    let png = pictures_folder().join(format!("{name}.png"));
    let run = Command::new("rsvg-convert")
        .arg("--output")
        .arg(&png)
        .arg(svg)
        .output()
        .expect("rsvg-convert runs (librsvg2-bin, installed by xtask/setup/00-base.sh)");
    assert!(
        run.status.success() && run.stderr.is_empty(),
        "rsvg-convert {}: {}",
        svg.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    // A picture with its labels and bars is far from an empty canvas's few hundred bytes.
    assert!(
        bytes.len() > 20_000,
        "{name}.png holds {} bytes",
        bytes.len()
    );
    png_size(&bytes)
}

fn fits_a_page(name: &str, (width, height): (u32, u32)) {
    assert!(
        width <= PAGE_WIDTH_PIXELS && height <= 4 * PAGE_WIDTH_PIXELS,
        "{name} is {width}x{height} pixels"
    );
}

#[test]
fn the_plan_timeline_renders_and_fits_a_page() {
    let scratch = Scratch::new();
    let run = scratch.ferry(&[
        "plan",
        "data100",
        "--observed",
        "data100/observed-apiserver-down.json",
        "--timeline",
        "plan.svg",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let size = render_svg(&scratch.path().join("plan.svg"), "plan-timeline");
    fits_a_page("the plan timeline", size);
}

#[test]
fn the_applied_timeline_of_a_failover_renders_and_fits_a_page() {
    let scratch = Scratch::new();
    scratch.build();
    scratch.break_api_server(1);
    let run = scratch.ferry(&[
        "apply",
        "data100",
        "--world",
        "world.json",
        "--auto-approve",
        // Each step takes 1/250 of its estimate (11 s in all): the journal's times are whole
        // seconds, and the bars need lengths to compare.
        "--world-time-scale",
        "0.004",
        "--timeline",
        "applied.svg",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let size = render_svg(&scratch.path().join("applied.svg"), "applied-timeline");
    fits_a_page("the applied timeline", size);
}

#[test]
fn the_plan_graph_renders_with_graphviz_and_fits_a_page() {
    let scratch = Scratch::new();
    let graph = scratch.ferry(&[
        "graph",
        "data100",
        "--plan",
        "--observed",
        "data100/observed-apiserver-down.json",
    ]);
    assert_eq!(graph.code, 0, "{}", graph.stderr);
    let dot_file = scratch.path().join("plan.dot");
    std::fs::write(&dot_file, &graph.stdout).unwrap();
    let svg = scratch.path().join("plan-graph.svg");
    let run = Command::new("dot")
        .arg("-Tsvg")
        .arg("-o")
        .arg(&svg)
        .arg(&dot_file)
        .output()
        .expect("dot runs (graphviz, installed by xtask/setup/00-base.sh)");
    assert!(
        run.status.success() && run.stderr.is_empty(),
        "dot: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let size = render_svg(&svg, "plan-graph");
    fits_a_page("the plan graph", size);
}
