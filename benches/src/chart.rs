//! The comparison's SVG chart: throughput per target, latency
//! percentiles per target and scenario (log scale), and each target's p99
//! against the delivery rate over the rate sweep (log-log). Plain SVG
//! text, no dependencies.

use std::fmt::Write as _;

use crate::compare::{Medians, sweep_names};

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 300.0;
const LEFT: f64 = 90.0;
const COLOURS: [&str; 6] = [
    "#3b6fb6", "#d9822b", "#3a9d5d", "#b5443c", "#7a5bb0", "#8c7853",
];

/// One bar group: a label and (series, value) bars.
type Group = (String, Vec<(String, f64)>);

/// One target's line: its name and (deliveries/s, p99 ms) points.
type Line = (String, Vec<(f64, f64)>);

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
    for scenario in ["S1", "S2", "S2-lite", "S2-light"] {
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
    // Each point is a run of the sweep the target has both figures for,
    // slowest first; a missing or zero figure (nothing delivered) has no
    // place on a log scale and is left out rather than drawn at the axis.
    let sweep: Vec<Line> = targets
        .iter()
        .map(|target| {
            let points = sweep_names()
                .iter()
                .filter_map(|run| {
                    let rate = value(run, target, "deliveries/s")?;
                    let p99 = value(run, target, "p99 us")? / 1000.0;
                    (rate > 0.0 && p99 > 0.0).then_some((rate, p99))
                })
                .collect();
            (target.clone(), points)
        })
        .collect();
    let has_sweep = sweep.iter().any(|(_, points)| !points.is_empty());
    let height = PANEL_HEIGHT * (panels.len() + usize::from(has_sweep)).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (index, (title, groups, log)) in panels.iter().enumerate() {
        panel(&mut svg, index as f64 * PANEL_HEIGHT, title, groups, *log);
    }
    if has_sweep {
        sweep_panel(
            &mut svg,
            panels.len() as f64 * PANEL_HEIGHT,
            "Rate sweep (10 rooms x 100): p99 latency, ms, against deliveries/s, log-log (lower is better)",
            &sweep,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, top: f64, title: &str, groups: &[Group], log: bool) {
    let (plot_top, plot_bottom, plot_width) = panel_frame(svg, top, title);
    let plot_height = plot_bottom - plot_top;
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
        decades(min, max)
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
        value_grid_line(svg, scale(tick), plot_width, &short(tick));
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
        legend_entry(svg, i, plot_bottom, COLOURS[i % COLOURS.len()], series);
    }
}

/// A line per target through its points, a marker on each point, a
/// decade grid on both axes and a legend. A target keeps the colour of
/// its place in `lines`, whether or not the ones before it have points.
fn sweep_panel(svg: &mut String, top: f64, title: &str, lines: &[Line]) {
    let (plot_top, plot_bottom, plot_width) = panel_frame(svg, top, title);
    let points = || lines.iter().flat_map(|(_, points)| points.iter().copied());
    // Only positive values have a place on a log scale; one at zero would
    // stretch the axis to 10^i32::MIN and its grid loop with it.
    let range = |values: Vec<f64>| {
        let positive = || values.iter().copied().filter(|v| *v > 0.0);
        let max = positive().fold(f64::MIN_POSITIVE, f64::max);
        decades(positive().fold(max, f64::min), max)
    };
    let (x_low, x_high) = range(points().map(|(rate, _)| rate).collect());
    let (y_low, y_high) = range(points().map(|(_, p99)| p99).collect());
    let x_of = |rate: f64| LEFT + (rate.log10() - x_low) / (x_high - x_low) * plot_width;
    let y_of = |p99: f64| {
        plot_bottom - (p99.log10() - y_low) / (y_high - y_low) * (plot_bottom - plot_top)
    };
    for exponent in y_low as i32..=y_high as i32 {
        let tick = 10f64.powi(exponent);
        value_grid_line(svg, y_of(tick), plot_width, &short(tick));
    }
    for exponent in x_low as i32..=x_high as i32 {
        let tick = 10f64.powi(exponent);
        let x = x_of(tick);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{plot_top:.1}\" x2=\"{x:.1}\" y2=\"{plot_bottom:.1}\" stroke=\"#ddd\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            plot_bottom + 16.0,
            rate_label(tick)
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">deliveries/s</text>",
        LEFT + plot_width,
        plot_bottom + 34.0
    );
    let drawn = lines
        .iter()
        .enumerate()
        .filter(|(_, (_, points))| !points.is_empty());
    for (slot, (i, (target, points))) in drawn.enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let coordinates: Vec<String> = points
            .iter()
            .map(|&(rate, p99)| format!("{:.1},{:.1}", x_of(rate), y_of(p99)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"><title>{}</title></polyline>",
            coordinates.join(" "),
            escape(target)
        );
        for &(rate, p99) in points {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"><title>{} at {} deliveries/s: p99 {} ms</title></circle>",
                x_of(rate),
                y_of(p99),
                escape(target),
                rate_label(rate),
                short(p99)
            );
        }
        legend_entry(svg, slot, plot_bottom, colour, target);
    }
}

/// The `slot`th entry of a panel's legend, below its plot: a swatch of
/// `colour` and the series' name.
fn legend_entry(svg: &mut String, slot: usize, plot_bottom: f64, colour: &str, name: &str) {
    let x = LEFT + slot as f64 * 110.0;
    let y = plot_bottom + 34.0;
    let _ = writeln!(
        svg,
        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{y:.1}\">{}</text>",
        y - 9.0,
        x + 14.0,
        escape(name)
    );
}

/// A log scale's ends, in powers of ten: from the decade at or below the
/// smallest value (and at least one below the largest) to the decade at
/// or above the largest.
fn decades(min: f64, max: f64) -> (f64, f64) {
    (
        min.log10().floor().min(max.log10().ceil() - 1.0),
        max.log10().ceil(),
    )
}

/// A delivery rate as the sweep's names write it: 2k, 200k, 1.5M.
fn rate_label(rate: f64) -> String {
    let compact = |v: f64| {
        if v >= 10.0 || v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    if rate >= 1e6 {
        format!("{}M", compact(rate / 1e6))
    } else if rate >= 1e3 {
        format!("{}k", compact(rate / 1e3))
    } else {
        compact(rate)
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

/// Writes a panel's title and returns where its plot goes: the top and
/// bottom of the plot and its width.
fn panel_frame(svg: &mut String, top: f64, title: &str) -> (f64, f64, f64) {
    let _ = writeln!(
        svg,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        top + 22.0,
        escape(title)
    );
    (top + 40.0, top + PANEL_HEIGHT - 50.0, WIDTH - LEFT - 20.0)
}

/// A grid line across a panel's plot at height `y`, labelled with its
/// value on the left.
fn value_grid_line(svg: &mut String, y: f64, plot_width: f64, label: &str) {
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        LEFT + plot_width,
        LEFT - 6.0,
        y + 4.0,
        label
    );
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

    /// Medians of the sweep's runs: (run, target, deliveries/s, p99 us).
    fn sweep_medians(points: &[(&str, &str, f64, f64)]) -> Medians {
        let mut medians = Medians::new();
        for &(run, target, rate, p99) in points {
            let figures = [("deliveries/s", rate), ("p99 us", p99)]
                .into_iter()
                .collect();
            medians.insert((run.into(), target.into()), figures);
        }
        medians
    }

    /// The sweep panel's lines: (target, points), each point checked to
    /// lie inside the chart.
    fn polylines(svg: &str) -> Vec<(String, usize)> {
        svg.lines()
            .filter(|line| line.starts_with("<polyline"))
            .map(|line| {
                let points = line
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                for coordinate in points.split([' ', ',']) {
                    let value: f64 = coordinate.parse().unwrap();
                    assert!((0.0..=WIDTH).contains(&value), "{line}");
                }
                let target = line
                    .split("<title>")
                    .nth(1)
                    .unwrap()
                    .split('<')
                    .next()
                    .unwrap();
                (target.to_owned(), points.split(' ').count())
            })
            .collect()
    }

    #[test]
    fn the_sweep_panel_has_a_line_per_server_through_each_of_its_points() {
        let mut points = Vec::new();
        for (target, slowdown) in [("poll", 1.0), ("iocp", 1.2), ("redis", 2.0)] {
            points.push(("sweep 2k", target, 1_980.0, 900.0 * slowdown));
            points.push(("S2-light", target, 19_800.0, 1_500.0 * slowdown));
            points.push(("sweep 200k", target, 198_000.0, 90_000.0 * slowdown));
        }
        let targets = ["poll", "iocp", "redis", "ngircd"].map(String::from);
        let svg = render(&targets, &sweep_medians(&points));
        // ngircd has no point, so no line.
        assert_eq!(
            polylines(&svg),
            [("poll".into(), 3), ("iocp".into(), 3), ("redis".into(), 3)]
        );
        assert_eq!(svg.matches("<circle").count(), 9);
        assert!(
            svg.contains("poll at 20k deliveries/s: p99 1.5 ms"),
            "{svg}"
        );
        // S2-light is also in the latency percentiles.
        assert!(svg.contains("S2-light latency percentiles"), "{svg}");
        assert!(svg.contains("poll p99: 1.5"), "{svg}");
    }

    #[test]
    fn a_missing_sweep_point_is_left_out_not_drawn_at_zero() {
        let mut medians = sweep_medians(&[
            ("sweep 2k", "poll", 1_980.0, 900.0),
            ("S2-light", "poll", 19_800.0, 1_500.0),
            ("sweep 200k", "poll", 198_000.0, 90_000.0),
            // iocp has no 200k run (it failed every round).
            ("sweep 2k", "iocp", 1_980.0, 1_000.0),
            ("S2-light", "iocp", 19_800.0, 1_700.0),
            // Nothing delivered at 200k: no latency to place on a log scale.
            ("sweep 2k", "relay", 1_980.0, 800.0),
            ("sweep 200k", "relay", 0.0, 0.0),
        ]);
        // redis's 2k run has a rate but no p99.
        medians.insert(
            ("sweep 2k".into(), "redis".into()),
            [("deliveries/s", 2_000.0)].into_iter().collect(),
        );
        medians.extend(sweep_medians(&[("S2-light", "redis", 20_000.0, 3_000.0)]));
        let targets = ["poll", "iocp", "redis", "relay"].map(String::from);
        let svg = render(&targets, &medians);
        assert_eq!(
            polylines(&svg),
            [
                ("poll".into(), 3),
                ("iocp".into(), 2),
                ("redis".into(), 1),
                ("relay".into(), 1)
            ]
        );
        assert_eq!(svg.matches("<circle").count(), 7);
    }
}
