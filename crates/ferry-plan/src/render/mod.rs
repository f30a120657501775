//! Renderings of a plan: text for people, JSON for programs, DOT for Graphviz.
//!
//! Colour is the caller's decision (a terminal, and no `NO_COLOR`); these functions only obey
//! the flag, so that the same plan renders byte for byte the same in tests.

mod dot;
mod text;
mod timeline;

pub use dot::{plan_dot, spec_dot};
pub use text::{TextOptions, duration, text, write_text};
pub use timeline::{Bar, Marker, estimated_bars, timeline_svg, timeline_svg_marked};

use ferry_core::Plan;

/// The plan as documented JSON (`format_version` "1"), pretty-printed, ending with a newline.
pub fn json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).expect("plans always serialise");
    text.push('\n');
    text
}
