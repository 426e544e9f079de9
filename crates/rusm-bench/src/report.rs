//! Measurement series, figures and their two output formats (text and JSON).
//!
//! Every scenario — native now, wasm later — turns its measurements into [`Figure`]s:
//! one rusm figure beside one baseline measured in the same process in the same run.
//! The output format lives here only, so new scenarios cannot change it.

use std::time::Duration;

use serde::Serialize;

/// One timed run of one side of a comparison.
#[derive(Debug, Default)]
pub struct Sample {
    /// Units of work done (and verified) in the timed section.
    pub units: u64,
    /// Wall-clock time of the timed section.
    pub elapsed: Duration,
    /// Per-unit latencies, when the unit has one (may be a sample of the units).
    pub latencies: Vec<Duration>,
}

impl Sample {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }
}

/// All repeats of one side.
#[derive(Debug, Default)]
pub struct Series {
    /// Rate of each measured repeat, in run order.
    pub rates: Vec<f64>,
    /// Latencies of every measured repeat, pooled.
    pub latencies: Vec<Duration>,
}

impl Series {
    /// Add one measured repeat.
    pub fn push(&mut self, sample: Sample) {
        self.rates.push(sample.rate());
        self.latencies.extend(sample.latencies);
    }

    /// The median rate.
    pub fn median(&self) -> f64 {
        median(&self.rates)
    }

    /// p50/p99 of the pooled latencies, if any were recorded.
    pub fn latency(&self, what: &str) -> Option<Latency> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        Some(Latency {
            what: what.to_owned(),
            p50_us: percentile(&sorted, 0.50).as_secs_f64() * 1e6,
            p99_us: percentile(&sorted, 0.99).as_secs_f64() * 1e6,
            samples: sorted.len(),
        })
    }
}

/// The median of a set of rates (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Latency percentiles of one unit.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// What one latency sample is ("round trip", "lap").
    pub what: String,
    /// Median, in microseconds.
    pub p50_us: f64,
    /// 99th percentile, in microseconds.
    pub p99_us: f64,
    /// How many samples the percentiles are taken from.
    pub samples: usize,
}

/// One side of a figure.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    /// What was run ("rusm", "tokio spawn + mpsc reply", ...).
    pub label: String,
    /// Median rate over the repeats, units per second.
    pub rate: f64,
    /// Every repeat's rate, in run order.
    pub runs: Vec<f64>,
    /// Latency percentiles, where a unit has a latency.
    pub latency: Option<Latency>,
}

impl Side {
    /// Summarise a series.
    pub fn new(label: &str, series: &Series, latency_of: Option<&str>) -> Side {
        Side {
            label: label.to_owned(),
            rate: series.median(),
            runs: series.rates.clone(),
            latency: latency_of.and_then(|what| series.latency(what)),
        }
    }
}

/// A target ratio (rusm / baseline) the project sets itself.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The least ratio that meets the target.
    pub min_ratio: f64,
    /// Whether the measured ratio meets it.
    pub met: bool,
}

/// One line of the report: a rusm figure beside its same-run baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// The scenario ("spawn-native", "ping-pong", ...).
    pub scenario: String,
    /// What this figure measures within the scenario.
    pub name: String,
    /// What one unit is ("spawns", "round trips", ...); rates are units per second.
    pub unit: String,
    /// The scenario's parameters, e.g. `n=200000` or `n=1000 m=200`.
    pub params: String,
    /// rusm's side.
    pub rusm: Side,
    /// The baseline's side.
    pub baseline: Side,
    /// rusm / baseline: the median of the per-round ratios (each round runs rusm and
    /// then the baseline back to back, so a ratio pairs runs that saw the same machine
    /// state); the ratio of the medians when the sides are not paired.
    pub ratio: f64,
    /// The per-round ratios, in run order.
    pub ratio_runs: Vec<f64>,
    /// The project's target for the ratio, if it sets one.
    pub target: Option<Target>,
    /// What else the scenario says about this figure (a latency in epoch ticks, a
    /// target that is not a ratio, what the rate means), printed at the end of the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Figure {
    /// Build a figure; the ratio and the target verdict are computed here.
    pub fn new(
        scenario: &str,
        name: &str,
        unit: &str,
        params: String,
        rusm: Side,
        baseline: Side,
        min_ratio: Option<f64>,
    ) -> Figure {
        let ratio_runs: Vec<f64> = if rusm.runs.len() == baseline.runs.len() {
            rusm.runs
                .iter()
                .zip(&baseline.runs)
                .map(|(r, b)| r / b)
                .collect()
        } else {
            Vec::new()
        };
        let ratio = if ratio_runs.is_empty() {
            rusm.rate / baseline.rate
        } else {
            median(&ratio_runs)
        };
        Figure {
            scenario: scenario.to_owned(),
            name: name.to_owned(),
            unit: unit.to_owned(),
            params,
            rusm,
            baseline,
            ratio,
            ratio_runs,
            target: min_ratio.map(|min_ratio| Target {
                min_ratio,
                met: ratio >= min_ratio,
            }),
            note: None,
        }
    }

    /// The same figure with a note.
    pub fn with_note(mut self, note: String) -> Figure {
        self.note = Some(note);
        self
    }

    /// The one text line of this figure.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<15} {:<24} {:<15} rusm {:>9}{} | {} {:>9}{} | ratio {}{}",
            self.scenario,
            self.name,
            self.params,
            rate(self.rusm.rate, &self.unit),
            latency(&self.rusm),
            self.baseline.label,
            rate(self.baseline.rate, &self.unit),
            latency(&self.baseline),
            ratio(self.ratio),
            spread(&self.ratio_runs),
        );
        if let Some(target) = &self.target {
            let verdict = if target.met { "met" } else { "NOT MET" };
            line.push_str(&format!(" (target >= {:.2}: {verdict})", target.min_ratio));
        }
        if let Some(note) = &self.note {
            line.push_str(" -- ");
            line.push_str(note);
        }
        line
    }
}

fn rate(per_sec: f64, unit: &str) -> String {
    let scaled = if per_sec >= 1e6 {
        format!("{:.2}M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1}k", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}")
    };
    format!("{scaled} {unit}/s")
}

/// The range of the per-round ratios, when there is more than one.
fn spread(ratios: &[f64]) -> String {
    if ratios.len() < 2 {
        return String::new();
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!(" [{}..{}]", ratio(lo), ratio(hi))
}

/// A ratio with two decimals, or three significant digits when it is below 0.1 (a
/// fairness ratio can be 0.0001).
fn ratio(r: f64) -> String {
    if !r.is_finite() || r == 0.0 || r >= 0.095 {
        return format!("{r:.2}");
    }
    let digits = (2.0 - r.abs().log10().floor()).clamp(2.0, 12.0) as usize;
    format!("{r:.digits$}")
}

fn latency(side: &Side) -> String {
    match &side.latency {
        Some(l) => format!(" [{} p50 {:.2}us p99 {:.2}us]", l.what, l.p50_us, l.p99_us),
        None => String::new(),
    }
}

/// A figure that is not a rate: a size or a count measured by a scenario (bytes per
/// idle actor, the most actors reached), with what it is compared to in its note.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// The scenario ("idle-actors").
    pub scenario: String,
    /// What is measured.
    pub name: String,
    /// The scenario's parameters.
    pub params: String,
    /// The measured value.
    pub value: f64,
    /// Its unit ("bytes per actor", "actors").
    pub unit: String,
    /// What else to know (a comparison, a limit it implies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Measure {
    /// The one text line of this measure.
    pub fn line(&self) -> String {
        let value = if self.value.fract() == 0.0 || self.value >= 100.0 {
            format!("{:.0}", self.value)
        } else {
            format!("{:.2}", self.value)
        };
        let mut line = format!(
            "{:<15} {:<24} {:<15} {value} {}",
            self.scenario, self.name, self.params, self.unit
        );
        if let Some(note) = &self.note {
            line.push_str(" -- ");
            line.push_str(note);
        }
        line
    }
}

/// The whole run, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Tokio worker threads.
    pub workers: usize,
    /// Measured repeats per side (after one warm-up run each).
    pub repeats: usize,
    /// Seconds since the Unix epoch when the run ended.
    pub unix_time: u64,
    /// Every figure, in run order.
    pub figures: Vec<Figure>,
    /// Every measure that is not a rate, in run order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<Measure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&sorted[..1], 0.99), Duration::from_micros(1));
    }

    #[test]
    fn figure_ratio_and_target() {
        let mut fast = Series::default();
        fast.push(Sample {
            units: 100,
            elapsed: Duration::from_secs(1),
            latencies: vec![],
        });
        let mut slow = Series::default();
        slow.push(Sample {
            units: 40,
            elapsed: Duration::from_secs(1),
            latencies: vec![],
        });
        let fig = Figure::new(
            "s",
            "f",
            "units",
            "n=1".into(),
            Side::new("rusm", &slow, None),
            Side::new("tokio", &fast, None),
            Some(0.5),
        );
        assert!((fig.ratio - 0.4).abs() < 1e-9);
        assert!(!fig.target.as_ref().unwrap().met);
        assert!(fig.line().contains("NOT MET"));
    }

    #[test]
    fn small_ratios_keep_three_significant_digits() {
        assert_eq!(ratio(0.853), "0.85");
        assert_eq!(ratio(0.0412), "0.0412");
        assert_eq!(ratio(0.000_131_4), "0.000131");
        assert_eq!(ratio(0.0), "0.00");
    }
}
