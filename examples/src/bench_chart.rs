//! One PNG line chart per benchmark curve, drawn with `plotters` (bitmap backend) and the DejaVu
//! Sans font embedded in the binary, so no system font or font library is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// A curve to draw: one x label per point, one line per series.
#[derive(Debug)]
pub struct Chart<'a> {
    /// The title above the plot.
    pub title: &'a str,
    /// What the x axis counts (each point is labelled with its own `x_labels` entry).
    pub x_axis: &'a str,
    /// What the y axis measures.
    pub y_axis: &'a str,
    /// Whether the y axis is logarithmic (for series of very different sizes).
    pub log_y: bool,
    /// The label of each point on the x axis.
    pub x_labels: &'a [String],
    /// Each series: its name and one value per x label.
    pub series: &'a [(String, Vec<f64>)],
}

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font does not parse"));
    });
}

/// Draws `chart` to `path` (a PNG, 900 x 520 pixels).
///
/// # Errors
///
/// When the file cannot be written, with the path in the message.
pub fn draw(chart: &Chart<'_>, path: &Path) -> Result<(), String> {
    register_font();
    draw_inner(chart, path).map_err(|e| format!("drawing {}: {e}", path.display()))
}

fn draw_inner(chart: &Chart<'_>, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    // A logarithmic axis is drawn as log10 of the values on a linear one, labelled back.
    let scale = |v: f64| if chart.log_y { v.max(1e-9).log10() } else { v };
    let values = || chart.series.iter().flat_map(|(_, v)| v.iter().copied());
    let (low, top) = if chart.log_y {
        let min = values().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
        let max = values().fold(0.0_f64, f64::max);
        (scale(min * 0.7), scale(max * 1.4))
    } else {
        (0.0, values().fold(0.0_f64, f64::max).max(1.0) * 1.15)
    };
    let points = chart.x_labels.len().max(1);
    let mut plot = ChartBuilder::on(&root)
        .caption(chart.title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.3_f64..(points as f64 - 0.7), low..top)?;
    let labels = chart.x_labels;
    plot.configure_mesh()
        .x_desc(chart.x_axis)
        .y_desc(chart.y_axis)
        .x_labels(points)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format_si(if chart.log_y { 10f64.powf(*y) } else { *y }))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()?;
    for (i, (name, values)) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(x, y)| (x as f64, scale(*y)))
            .collect();
        plot.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        plot.draw_series(line.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    plot.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// `12 300` as `12.3k`, `4 500 000` as `4.5M`.
fn format_si(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e3 => format!("{:.0}k", v / 1e3),
        a if a >= 10.0 => format!("{v:.0}"),
        _ => format!("{v:.2}"),
    }
}
