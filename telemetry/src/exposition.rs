//! The text formats of a scrape: Prometheus 0.0.4 (`text/plain`) and OpenMetrics 1.0
//! (`application/openmetrics-text`, the only one that carries exemplars).
//!
//! Families are gathered first and written whole at the end, so that several sources
//! (two workers of one `dev` process) can add samples to one family with their own
//! labels, and `# HELP`/`# TYPE` appear once per family as both formats require.

use std::fmt::Write as _;

/// Content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: String,
}

/// One scrape's worth of metric families.
pub struct Exposition {
    openmetrics: bool,
    families: Vec<Family>,
}

/// `(name, value)` label pairs; values are escaped when written.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Exposition {
    /// `openmetrics`: write OpenMetrics 1.0 (with exemplars), else Prometheus 0.0.4.
    pub fn new(openmetrics: bool) -> Exposition {
        Exposition {
            openmetrics,
            families: Vec::new(),
        }
    }

    /// Chooses the format from a request's `Accept` header, as Prometheus negotiates it.
    pub fn for_accept(accept: Option<&str>) -> Exposition {
        Exposition::new(accept.is_some_and(|a| a.contains("application/openmetrics-text")))
    }

    pub fn content_type(&self) -> &'static str {
        if self.openmetrics {
            OPENMETRICS_CONTENT_TYPE
        } else {
            PROMETHEUS_CONTENT_TYPE
        }
    }

    pub fn is_openmetrics(&self) -> bool {
        self.openmetrics
    }

    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut String {
        let at = match self.families.iter().position(|f| f.name == name) {
            Some(at) => at,
            None => {
                self.families.push(Family {
                    name,
                    help,
                    kind,
                    samples: String::new(),
                });
                self.families.len() - 1
            }
        };
        &mut self.families[at].samples
    }

    /// A monotonic counter. `name` ends in `_total`, as both formats want the sample.
    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Labels<'_>,
        value: u64,
    ) {
        debug_assert!(name.ends_with("_total"), "{name}: counters end in _total");
        let out = self.family(name, help, Kind::Counter);
        sample(out, name, "", labels, None, &value.to_string());
    }

    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Labels<'_>,
        value: f64,
    ) {
        let out = self.family(name, help, Kind::Gauge);
        sample(out, name, "", labels, None, &number(value));
    }

    /// A histogram from its cumulative buckets (`le` upper bounds, `+Inf` last), sum and
    /// count, with an exemplar per bucket where one is known (written in OpenMetrics only).
    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Labels<'_>,
        snapshot: &crate::histogram::Snapshot,
    ) {
        let openmetrics = self.openmetrics;
        let out = self.family(name, help, Kind::Histogram);
        let mut cumulative = 0u64;
        for (i, bucket) in snapshot.buckets.iter().enumerate() {
            cumulative += bucket.count;
            let le = match snapshot.bounds.get(i) {
                Some(bound) => number(*bound),
                None => "+Inf".to_string(),
            };
            let exemplar = bucket.exemplar.as_ref().filter(|_| openmetrics).map(|e| {
                format!(
                    " # {{trace_id=\"{}\"}} {} {}",
                    e.trace_id,
                    number(e.value),
                    number(e.timestamp)
                )
            });
            sample(
                out,
                name,
                "_bucket",
                labels,
                Some(("le", &le)),
                &format!("{cumulative}{}", exemplar.unwrap_or_default()),
            );
        }
        sample(out, name, "_sum", labels, None, &number(snapshot.sum));
        sample(
            out,
            name,
            "_count",
            labels,
            None,
            &snapshot.count.to_string(),
        );
    }

    /// The whole scrape body.
    pub fn finish(self) -> String {
        let mut text = String::new();
        for family in &self.families {
            // OpenMetrics names a counter family without its `_total`.
            let name = match (self.openmetrics, family.kind) {
                (true, Kind::Counter) => family.name.trim_end_matches("_total"),
                _ => family.name,
            };
            let _ = writeln!(text, "# HELP {name} {}", family.help);
            let _ = writeln!(text, "# TYPE {name} {}", family.kind.as_str());
            text.push_str(&family.samples);
        }
        if self.openmetrics {
            text.push_str("# EOF\n");
        }
        text
    }
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: Labels<'_>,
    extra: Option<(&str, &str)>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut pairs = labels.iter().copied().chain(extra);
    if let Some((key, val)) = pairs.next() {
        out.push('{');
        label(out, key, val);
        for (key, val) in pairs {
            out.push(',');
            label(out, key, val);
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

fn label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as both formats read it (integers without a fraction).
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Histogram;

    #[test]
    fn prometheus_text_groups_families_and_escapes_labels() {
        let mut e = Exposition::new(false);
        e.counter(
            "x_frames_total",
            "Frames.",
            &[("worker", "w1"), ("op", "pub")],
            3,
        );
        e.gauge("x_connections", "Open.", &[], 2.0);
        e.counter(
            "x_frames_total",
            "Frames.",
            &[("worker", "w\"2"), ("op", "pub")],
            4,
        );
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP x_frames_total Frames.\n# TYPE x_frames_total counter\n\
             x_frames_total{worker=\"w1\",op=\"pub\"} 3\n\
             x_frames_total{worker=\"w\\\"2\",op=\"pub\"} 4\n\
             # HELP x_connections Open.\n# TYPE x_connections gauge\nx_connections 2\n"
        );
    }

    #[test]
    fn openmetrics_names_counters_without_total_and_carries_exemplars() {
        let h = Histogram::new();
        h.observe_us(1_500, Some(TraceIdForTest::ID));
        h.observe_us(20_000_000, None);
        let mut e = Exposition::new(true);
        e.counter("x_total", "X.", &[], 1);
        e.histogram("x_seconds", "Latency.", &[("worker", "w1")], &h.snapshot());
        let text = e.finish();
        assert!(text.contains("# TYPE x counter\nx_total 1\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{worker=\"w1\",le=\"0.0025\"} 1 # {trace_id=\"0102030405060708090a0b0c0d0e0f10\"} 0.0015 "), "{text}");
        assert!(
            text.contains("x_seconds_bucket{worker=\"w1\",le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_count{worker=\"w1\"} 2\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        let plain = {
            let mut e = Exposition::new(false);
            e.histogram("x_seconds", "Latency.", &[], &h.snapshot());
            e.finish()
        };
        assert!(
            !plain.contains('#') || !plain.contains("trace_id"),
            "{plain}"
        );
    }

    struct TraceIdForTest;
    impl TraceIdForTest {
        const ID: crate::TraceId =
            crate::TraceId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
    }
}
