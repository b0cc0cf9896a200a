//! Medians, figures and the printed table.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Every sample taken, by (workload, system).
#[derive(Default)]
pub(crate) struct Samples {
    map: HashMap<(&'static str, &'static str), Vec<f64>>,
}

impl Samples {
    pub(crate) fn add(&mut self, workload: &'static str, system: &'static str, value: f64) {
        self.map.entry((workload, system)).or_default().push(value);
    }

    pub(crate) fn median(&self, workload: &'static str, system: &'static str) -> Option<f64> {
        self.map.get(&(workload, system)).and_then(|v| median(v))
    }

    /// Samples of one cell, for the spread shown beside a median.
    pub(crate) fn get(&self, workload: &'static str, system: &'static str) -> &[f64] {
        self.map.get(&(workload, system)).map_or(&[], Vec::as_slice)
    }

    /// Half the spread of a cell's samples as a fraction of their median; None with
    /// fewer than two samples.
    pub(crate) fn spread(&self, workload: &'static str, system: &'static str) -> Option<f64> {
        let v = self.get(workload, system);
        let m = self.median(workload, system)?;
        if v.len() < 2 || m <= 0.0 {
            return None;
        }
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        Some((hi - lo) / 2.0 / m)
    }
}

/// Spread (± around the median) above which a judged ratio is marked uncertain.
pub(crate) const NOISY_SPREAD: f64 = 0.25;

pub(crate) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// The `p`-th percentile (0..=100) of durations, nearest rank.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// How a figure is shown and which direction is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Records per second; higher is better.
    RecPerSec,
    /// Operations per second; higher is better.
    OpsPerSec,
    /// Seconds of latency or time; lower is better.
    Seconds,
    /// Bytes; lower is better.
    Bytes,
    /// KiB of memory; lower is better.
    KiB,
}

impl Unit {
    pub(crate) fn higher_is_better(self) -> bool {
        match self {
            Unit::RecPerSec | Unit::OpsPerSec => true,
            Unit::Seconds | Unit::Bytes | Unit::KiB => false,
        }
    }

    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Unit::RecPerSec => format!("{} rec/s", si(v)),
            Unit::OpsPerSec => format!("{} /s", si(v)),
            Unit::Seconds => seconds(v),
            Unit::Bytes => bytes(v),
            Unit::KiB => bytes(v * 1024.0),
        }
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub(crate) fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

pub(crate) fn bytes(b: f64) -> String {
    if b >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

/// trailkeep's advantage over a baseline: > 1 means trailkeep is ahead.
pub(crate) fn advantage(unit: Unit, trailkeep: f64, baseline: f64) -> Option<f64> {
    let (num, den) = if unit.higher_is_better() {
        (trailkeep, baseline)
    } else {
        (baseline, trailkeep)
    };
    (den > 0.0 && num.is_finite()).then(|| num / den)
}

/// One printed line.
#[derive(Clone, Debug, Default)]
pub(crate) struct Line {
    /// Shown on the first line of a workload only.
    pub workload: String,
    pub system: String,
    pub figure: String,
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
    /// A judged ratio whose figures varied more than [`NOISY_SPREAD`].
    pub noisy: bool,
}

impl Line {
    pub(crate) fn new(workload: impl Into<String>, system: impl Into<String>, figure: impl Into<String>) -> Line {
        Line {
            workload: workload.into(),
            system: system.into(),
            figure: figure.into(),
            ..Line::default()
        }
    }

    pub(crate) fn ratio(mut self, ratio: Option<f64>) -> Line {
        self.ratio = ratio;
        self
    }

    /// A ratio target: met when the ratio is at least `min`.
    pub(crate) fn ratio_target(mut self, min: f64) -> Line {
        self.target = format!(">= {min}x");
        self.met = self.ratio.map(|r| r >= min);
        self
    }

    /// Marks the judgement uncertain (see [`NOISY_SPREAD`]).
    pub(crate) fn noisy(mut self, noisy: bool) -> Line {
        self.noisy = noisy;
        self
    }

    pub(crate) fn target(mut self, target: impl Into<String>, met: Option<bool>) -> Line {
        self.target = target.into();
        self.met = met;
        self
    }
}

/// The table as text; column widths fit the widest cell.
pub(crate) fn table(lines: &[Line]) -> String {
    let ratio_text = |line: &Line| match line.ratio {
        Some(r) => format!("{r:.2}x"),
        // trailkeep's own lines have nothing to compare with; baselines without a figure do.
        None if line.target.is_empty() && line.system.starts_with("trailkeep") => String::new(),
        None => "—".to_owned(),
    };
    let width = |f: &dyn Fn(&Line) -> String, title: &str| {
        lines
            .iter()
            .map(|l| f(l).chars().count())
            .chain([title.chars().count()])
            .max()
            .unwrap_or(0)
    };
    let ws = width(&|l: &Line| format!("  {}", l.system), "workload / system");
    let wf = width(&|l: &Line| l.figure.clone(), "median");
    let wr = width(&ratio_text, "ratio");
    let wt = width(&|l: &Line| l.target.clone(), "target");
    let row = |s: &str, f: &str, r: &str, t: &str, m: &str| {
        let text = format!("{s:<ws$}  {f:>wf$}  {r:>wr$}  {t:<wt$}  {m}");
        text.trim_end().to_owned()
    };
    let mut out = String::new();
    let header = row("workload / system", "median", "ratio", "target", "met");
    let _ = writeln!(out, "{header}\n{}", "-".repeat(ws + wf + wr + wt + 13));
    let mut previous = String::new();
    for line in lines {
        if line.workload != previous {
            if !previous.is_empty() {
                out.push('\n');
            }
            previous.clone_from(&line.workload);
            let _ = writeln!(out, "{}", line.workload);
        }
        let met = match line.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None if line.target.is_empty() => "",
            None => "n/a",
        };
        let met = if line.noisy {
            format!("{met} (noisy)")
        } else {
            met.to_owned()
        };
        let _ = writeln!(
            out,
            "{}",
            row(
                &format!("  {}", line.system),
                &line.figure,
                &ratio_text(line),
                &line.target,
                &met
            )
        );
    }
    out
}

/// A line about the machine for the header.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
            })
        })
        .map_or_else(|| "? RAM".into(), |kib| format!("{} RAM", bytes(kib * 1024.0)));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, {mem}, Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_percentiles_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let d: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&d, 99.0), Duration::from_micros(99));
        assert_eq!(advantage(Unit::RecPerSec, 4.0, 1.0), Some(4.0));
        assert_eq!(advantage(Unit::Seconds, 1.0, 4.0), Some(4.0));
        let t = table(&[Line::new("w", "s", "1").ratio(Some(5.0)).ratio_target(4.0)]);
        assert!(t.contains("5.00x") && t.contains("yes") && !t.contains("noisy"), "{t}");
        let t = table(&[Line::new("w", "s", "1").ratio(Some(0.5)).ratio_target(4.0).noisy(true)]);
        assert!(t.contains("NO (noisy)"), "{t}");
    }

    #[test]
    fn spread_is_half_the_range_over_the_median() {
        let mut samples = Samples::default();
        samples.add("w", "a", 10.0);
        assert_eq!(samples.spread("w", "a"), None, "one sample has no spread");
        samples.add("w", "a", 6.0);
        samples.add("w", "a", 8.0);
        assert_eq!(samples.spread("w", "a"), Some(0.25));
        assert_eq!(samples.spread("w", "b"), None);
    }
}
