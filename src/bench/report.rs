//! `--report DIR`: `results.json`, `latency.svg` (the latency distribution, from send
//! time and from schedule, as a percentile plot), `timeline.svg` (deliveries/s and p99
//! per second) and `index.html` tying them to the run's parameters and figures.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::Charts;

pub fn write(
    dir: &Path,
    scenario: &str,
    json: &serde_json::Value,
    charts: Option<&Charts>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(json)?,
    )?;
    let mut images = Vec::new();
    if let Some(charts) = charts.filter(|c| c.lat.count() > 0) {
        latency(&dir.join("latency.svg"), charts)
            .map_err(|e| anyhow::anyhow!("latency chart: {e}"))?;
        images.push("latency.svg");
        if !charts.per_sec.is_empty() {
            timeline(&dir.join("timeline.svg"), charts)
                .map_err(|e| anyhow::anyhow!("timeline chart: {e}"))?;
            images.push("timeline.svg");
        }
    }
    std::fs::write(dir.join("index.html"), html(scenario, json, &images))?;
    Ok(())
}

/// Percentile plot: x is 1/(1-q) on a log scale (10 = p90, 100 = p99, ...).
fn latency(path: &Path, charts: &Charts) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let series = |h: &super::stats::Histogram| -> Vec<(f64, f64)> {
        h.cdf()
            .into_iter()
            .map(|(v, q)| ((1.0 / (1.0 - q).max(1e-5)).min(1e5), v as f64 / 1e6))
            .collect()
    };
    let send = series(&charts.lat);
    let sched = series(&charts.lat_sched);
    let top = send
        .iter()
        .chain(&sched)
        .map(|p| p.1)
        .fold(0.001f64, f64::max)
        * 1.1;
    let right = send
        .iter()
        .chain(&sched)
        .map(|p| p.0)
        .fold(10.0f64, f64::max)
        * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption("One-way latency by percentile", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..right).log_scale(), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 1.0 / x);
            format!("p{}", trim(p))
        })
        .draw()?;
    chart
        .draw_series(LineSeries::new(send, BLUE.stroke_width(2)))?
        .label("from send time")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(sched, RED.stroke_width(2)))?
        .label("from scheduled time")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn trim(p: f64) -> String {
    let s = format!("{p:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Deliveries per second (top) and p99 per second (bottom).
fn timeline(path: &Path, charts: &Charts) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(300);
    let last = charts.per_sec.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let peak = charts.per_sec.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut top = ChartBuilder::on(&upper)
        .caption("Deliveries per second", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..last, 0f64..peak)?;
    top.configure_mesh().x_desc("second").draw()?;
    top.draw_series(LineSeries::new(
        charts.per_sec.iter().map(|p| (p.0 as f64, p.1 as f64)),
        BLUE.stroke_width(2),
    ))?;
    let worst = charts
        .per_sec
        .iter()
        .map(|p| p.2 as f64 / 1e6)
        .fold(0.001f64, f64::max)
        * 1.1;
    let mut bottom = ChartBuilder::on(&lower)
        .caption("p99 latency per second (from send, ms)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..last, 0f64..worst)?;
    bottom.configure_mesh().x_desc("second").draw()?;
    bottom.draw_series(LineSeries::new(
        charts
            .per_sec
            .iter()
            .map(|p| (p.0 as f64, p.2 as f64 / 1e6)),
        RED.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}

fn html(scenario: &str, json: &serde_json::Value, images: &[&str]) -> String {
    let mut rows = String::new();
    flatten("", json, &mut rows);
    let mut figures = String::new();
    for image in images {
        let _ = writeln!(figures, "<p><img src=\"{image}\" alt=\"{image}\"></p>");
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>switchyard bench {scenario}</title>\n\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}\
         table{{border-collapse:collapse}}td{{border-bottom:1px solid #ddd;padding:2px 12px}}\
         td:first-child{{color:#555}}img{{max-width:100%}}</style></head><body>\n\
         <h1>switchyard bench {scenario}</h1>\n{figures}<h2>Parameters and figures</h2>\n\
         <table>\n{rows}</table>\n<p>Raw: <a href=\"results.json\">results.json</a></p>\n</body></html>\n"
    )
}

/// One table row per scalar, nested keys joined with dots; the per-second series is left
/// to the chart.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                if key == "per_sec" {
                    continue;
                }
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
        }
        other => {
            let text = match other {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(prefix),
                escape(&text)
            );
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
