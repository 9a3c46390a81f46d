//! The comparison's SVG chart: throughput per target, and latency
//! percentiles per target and scenario (log scale). Plain SVG text, no
//! dependencies.

use std::fmt::Write as _;

use crate::compare::Medians;

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 300.0;
const LEFT: f64 = 90.0;
const COLOURS: [&str; 6] = [
    "#3b6fb6", "#d9822b", "#3a9d5d", "#b5443c", "#7a5bb0", "#8c7853",
];

/// One bar group: a label and (series, value) bars.
type Group = (String, Vec<(String, f64)>);

/// Renders the chart for these targets from the medians.
pub fn render(targets: &[String], medians: &Medians) -> String {
    let value = |scenario: &str, target: &str, metric: &str| {
        medians
            .get(&(scenario.to_owned(), target.to_owned()))
            .and_then(|figures| figures.get(metric))
            .copied()
    };
    let mut panels: Vec<(String, Vec<Group>, bool)> = Vec::new();
    let throughput: Vec<Group> = ["S1", "S1 no-persist"]
        .iter()
        .map(|scenario| {
            let bars = targets
                .iter()
                .filter_map(|t| value(scenario, t, "deliveries/s").map(|v| (t.clone(), v / 1e6)))
                .collect();
            ((*scenario).to_owned(), bars)
        })
        .filter(|(_, bars): &Group| !bars.is_empty())
        .collect();
    if !throughput.is_empty() {
        panels.push((
            "Fan-out throughput, million deliveries/s (higher is better)".into(),
            throughput,
            false,
        ));
    }
    for scenario in ["S1", "S2", "S2-lite"] {
        let groups: Vec<Group> = targets
            .iter()
            .map(|target| {
                let bars = ["p50 us", "p90 us", "p99 us", "p99.9 us"]
                    .iter()
                    .filter_map(|m| {
                        value(scenario, target, m)
                            .map(|v| (m.trim_end_matches(" us").to_owned(), v / 1000.0))
                    })
                    .collect();
                (target.clone(), bars)
            })
            .filter(|(_, bars): &Group| !bars.is_empty())
            .collect();
        if !groups.is_empty() {
            panels.push((
                format!("{scenario} latency percentiles, ms, log scale (lower is better)"),
                groups,
                true,
            ));
        }
    }
    let height = PANEL_HEIGHT * panels.len().max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (index, (title, groups, log)) in panels.iter().enumerate() {
        panel(&mut svg, index as f64 * PANEL_HEIGHT, title, groups, *log);
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, top: f64, title: &str, groups: &[Group], log: bool) {
    let plot_top = top + 40.0;
    let plot_bottom = top + PANEL_HEIGHT - 50.0;
    let plot_height = plot_bottom - plot_top;
    let plot_width = WIDTH - LEFT - 20.0;
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        top + 22.0,
        escape(title)
    );
    let max = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|(_, v)| *v))
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    // Log scale from a decade below the smallest value to the largest.
    let min = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|(_, v)| *v))
        .filter(|v| *v > 0.0)
        .fold(max, f64::min);
    let (low, high) = if log {
        (
            min.log10().floor().min(max.log10() - 1.0),
            max.log10().ceil(),
        )
    } else {
        (0.0, max * 1.1)
    };
    let scale = |v: f64| {
        let fraction = if log {
            (v.max(10f64.powf(low)).log10() - low) / (high - low)
        } else {
            v / high
        };
        plot_bottom - fraction.clamp(0.0, 1.0) * plot_height
    };
    // Axis with a few ticks.
    let ticks: Vec<f64> = if log {
        (low as i32..=high as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=4).map(|i| high * f64::from(i) / 4.0).collect()
    };
    for tick in ticks {
        let y = scale(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + plot_width,
            LEFT - 6.0,
            y + 4.0,
            short(tick)
        );
    }
    let group_width = plot_width / groups.len().max(1) as f64;
    let mut legend: Vec<String> = Vec::new();
    for (g, (label, bars)) in groups.iter().enumerate() {
        let x0 = LEFT + g as f64 * group_width;
        let bar_width = (group_width - 20.0) / bars.len().max(1) as f64;
        for (b, (series, value)) in bars.iter().enumerate() {
            if !legend.contains(series) {
                legend.push(series.clone());
            }
            let colour =
                COLOURS[legend.iter().position(|s| s == series).unwrap_or(0) % COLOURS.len()];
            let x = x0 + 10.0 + b as f64 * bar_width;
            let y = scale(*value);
            let _ = writeln!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{colour}\"><title>{} {}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                (bar_width - 2.0).max(1.0),
                plot_bottom - y,
                escape(label),
                escape(series),
                short(*value),
                x + bar_width / 2.0,
                y - 3.0,
                short(*value)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + group_width / 2.0,
            plot_bottom + 16.0,
            escape(label)
        );
    }
    for (i, series) in legend.iter().enumerate() {
        let x = LEFT + i as f64 * 110.0;
        let y = plot_bottom + 34.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
            y - 9.0,
            COLOURS[i % COLOURS.len()],
            x + 14.0,
            escape(series)
        );
    }
}

fn short(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_bar_per_target_and_figure() {
        let mut medians = Medians::new();
        for (target, rate) in [("poll", 5.0e6), ("iocp", 6.0e6)] {
            let figures = [
                ("deliveries/s", rate),
                ("p50 us", 900.0),
                ("p99 us", 2500.0),
            ]
            .into_iter()
            .collect();
            medians.insert(("S1".into(), target.into()), figures);
        }
        let svg = render(&["poll".into(), "iocp".into()], &medians);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        // Two throughput bars and two percentiles for each of two targets.
        assert_eq!(
            svg.matches("<rect x=").count() - svg.matches("width=\"10\"").count(),
            6
        );
        assert!(svg.contains("poll: 5.0"), "{svg}");
        assert!(svg.contains("iocp p99: 2.5"), "{svg}");
    }
}
