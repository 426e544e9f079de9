//! Running the sides of a comparison: warm-up, then interleaved repeats.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::report::{Sample, Series};

/// How long one run may take before it is declared hung (a crashed actor that never
/// replies must fail the run, not stall it).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A boxed future yielding one verified sample.
pub type SampleFuture = Pin<Box<dyn Future<Output = Result<Sample>> + Send>>;

/// One side of a comparison: a label and a way to start one run of it.
pub struct Contender<'a> {
    label: &'a str,
    run: Box<dyn FnMut() -> SampleFuture + 'a>,
}

impl<'a> Contender<'a> {
    /// A side named `label`; `run` starts one run (the future does the timing itself).
    pub fn new<F, Fut>(label: &'a str, mut run: F) -> Contender<'a>
    where
        F: FnMut() -> Fut + 'a,
        Fut: Future<Output = Result<Sample>> + Send + 'static,
    {
        Contender {
            label,
            run: Box::new(move || Box::pin(run())),
        }
    }
}

/// Run every side once to warm up, then `repeats` times each, interleaved (A B C A B C
/// ...) so that every side sees the same machine state. Returns one series per side, in
/// the order given. With `first_only` (for profiling) only the first side runs and the
/// other series stay empty (there is still one per side). For profiling one baseline,
/// the environment variable `RUSM_BENCH_ONLY` names the one side (by label) that runs.
pub async fn interleaved(
    repeats: usize,
    first_only: bool,
    mut sides: Vec<Contender<'_>>,
) -> Result<Vec<Series>> {
    let count = sides.len();
    if first_only {
        sides.truncate(1);
    }
    let only = std::env::var("RUSM_BENCH_ONLY").ok();
    if let Some(label) = &only {
        anyhow::ensure!(
            sides.iter().any(|side| side.label == label),
            "RUSM_BENCH_ONLY={label:?} names no side of this scenario"
        );
    }
    let mut series: Vec<Series> = sides.iter().map(|_| Series::default()).collect();
    for round in 0..=repeats {
        for (side, out) in sides.iter_mut().zip(&mut series) {
            if only.as_ref().is_some_and(|label| label != side.label) {
                continue;
            }
            let sample = tokio::time::timeout(RUN_LIMIT, (side.run)())
                .await
                .with_context(|| {
                    format!("{}: run did not finish within {RUN_LIMIT:?}", side.label)
                })?
                .with_context(|| format!("{}: run failed", side.label))?;
            anyhow::ensure!(sample.units > 0, "{}: a run did no work", side.label);
            // Round 0 is the warm-up.
            if round > 0 {
                out.push(sample);
            }
        }
    }
    series.resize_with(count, Series::default);
    Ok(series)
}
