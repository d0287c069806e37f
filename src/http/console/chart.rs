//! The overview's chart, drawn on the server as SVG: no script, nothing to download,
//! and it passes a `default-src 'self'` policy as part of the page.

use std::fmt::Write;

use crate::clock::{UnixTime, rfc3339};

const WIDTH: usize = 600;
const HEIGHT: usize = 160;
/// Room under the bars for the dates, and above them for the largest count.
const BOTTOM: usize = 20;
const TOP: usize = 16;

/// A bar chart of `days` (the start of each day and its count, oldest first), with
/// `label` as its accessible name.
pub fn bars(days: &[(UnixTime, i64)], label: &str) -> String {
    let mut svg = String::new();
    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let slot = WIDTH as f64 / days.len().max(1) as f64;
    let plot = (HEIGHT - BOTTOM - TOP) as f64;
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        escape(label)
    );
    let _ = write!(
        svg,
        r#"<text x="0" y="11" class="axis">{max}</text><line x1="0" y1="{TOP}" x2="{WIDTH}" y2="{TOP}" class="grid"/><line x1="0" y1="{base}" x2="{WIDTH}" y2="{base}" class="grid"/>"#,
        base = HEIGHT - BOTTOM
    );
    for (i, (day, n)) in days.iter().enumerate() {
        let h = (*n as f64 / max as f64 * plot).round();
        let x = i as f64 * slot + slot * 0.15;
        let y = (HEIGHT - BOTTOM) as f64 - h;
        let date = &rfc3339(*day)[..10];
        let _ = write!(
            svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" class="bar"><title>{date}: {n}</title></rect>"#,
            w = slot * 0.7
        );
    }
    for i in [0, days.len() / 2, days.len().saturating_sub(1)] {
        if let Some((day, _)) = days.get(i) {
            let anchor = match i {
                0 => "start",
                i if i + 1 == days.len() => "end",
                _ => "middle",
            };
            let x = match anchor {
                "start" => 0.0,
                "end" => WIDTH as f64,
                _ => i as f64 * slot + slot / 2.0,
            };
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{HEIGHT}" dy="-4" text-anchor="{anchor}" class="axis">{}</text>"#,
                &rfc3339(*day)[5..10]
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_day_is_a_bar_scaled_to_the_largest() {
        let day = 86_400;
        let days: Vec<(UnixTime, i64)> = (0..30)
            .map(|d| (1_796_000_000 / day * day + d * day, d))
            .collect();
        let svg = bars(&days, "Logins <per> day");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 30);
        assert!(svg.contains(r#"aria-label="Logins &lt;per&gt; day""#));
        // The largest bar fills the plot; an empty day has no height.
        let plot = (HEIGHT - BOTTOM - TOP) as f64;
        assert!(svg.contains(&format!(
            r#"height="{plot:.1}" class="bar"><title>2026-12-"#
        )));
        assert!(svg.contains(r#"height="0.0" class="bar">"#));
        assert!(svg.contains(">29</text>"));
    }

    #[test]
    fn no_logins_draws_empty_bars() {
        let svg = bars(&[(0, 0), (86_400, 0)], "x");
        assert_eq!(svg.matches(r#"height="0.0""#).count(), 2);
    }
}
