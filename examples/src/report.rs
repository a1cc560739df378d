//! How benchmark figures are printed: a table for people, or one JSON object per line.

use std::borrow::Cow;

/// One measured figure, optionally beside its baseline (measured in the same run: the raw limit,
/// or the row it is compared with).
#[derive(Clone, Debug)]
pub struct Figure {
    /// Stable name, e.g. `memory.throughput.1group`.
    pub name: Cow<'static, str>,
    /// The measured value.
    pub value: f64,
    /// Its unit, e.g. `events/s`.
    pub unit: &'static str,
    /// The raw limit measured in the same run, if there is one.
    pub baseline: Option<f64>,
}

impl Figure {
    /// A figure with no baseline.
    pub fn new(name: impl Into<Cow<'static, str>>, value: f64, unit: &'static str) -> Self {
        Figure {
            name: name.into(),
            value,
            unit,
            baseline: None,
        }
    }

    /// A figure beside its baseline.
    pub fn against(
        name: impl Into<Cow<'static, str>>,
        value: f64,
        unit: &'static str,
        baseline: f64,
    ) -> Self {
        Figure {
            baseline: Some(baseline),
            ..Figure::new(name, value, unit)
        }
    }

    /// `value / baseline`.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline.filter(|b| *b > 0.0).map(|b| self.value / b)
    }

    /// Prints the figure as a table row or a JSON line.
    pub fn print(&self, json: bool) {
        let line = if json {
            let mut s = format!(
                r#"{{"name":"{}","value":{:.3},"unit":"{}""#,
                self.name, self.value, self.unit
            );
            if let (Some(b), Some(r)) = (self.baseline, self.ratio()) {
                s.push_str(&format!(r#","baseline":{b:.3},"ratio":{r:.4}"#));
            }
            s.push('}');
            s
        } else {
            match (self.baseline, self.ratio()) {
                (Some(b), Some(r)) => format!(
                    "{:<40} {:>14.1} {:<10} base {:>14.1}  ratio {:.3}",
                    self.name, self.value, self.unit, b, r
                ),
                _ => format!("{:<40} {:>14.2} {:<10}", self.name, self.value, self.unit),
            }
        };
        #[allow(clippy::print_stdout)]
        {
            println!("{line}");
        }
    }
}
