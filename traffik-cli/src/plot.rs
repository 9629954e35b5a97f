//! `--plot`: allowed and denied per minute, one panel per rule, as SVG.

use std::path::Path;

use plotters::prelude::*;

use crate::replay::Report;

const ALLOWED: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const DENIED: RGBColor = RGBColor(0xc5, 0x30, 0x30);

/// `HH:MM` (UTC) of a time in milliseconds since the epoch.
fn clock(ms: u64) -> String {
    let minutes = ms / 60_000;
    format!("{:02}:{:02}", minutes / 60 % 24, minutes % 60)
}

/// Draws `report` into an SVG file at `path`.
pub(crate) fn draw(path: &Path, report: &Report) -> Result<(), String> {
    let panels = report.rules.len().max(1);
    let height = u32::try_from(40 + 220 * panels).unwrap_or(u32::MAX);
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (title, body) = root.split_vertically(40);
    title
        .titled(
            "traffik replay: requests per minute, allowed and denied, per rule",
            ("sans-serif", 18),
        )
        .map_err(|e| e.to_string())?;
    let (first, last) = report.span_ms.unwrap_or((0, 0));
    let (first, last) = (first - first % 60_000, last - last % 60_000 + 60_000);
    for (index, area) in body.split_evenly((panels, 1)).iter().enumerate() {
        let Some(rule) = report.rules.get(index) else {
            break;
        };
        let series = |denied: bool| -> Vec<(u64, u64)> {
            report
                .minutes
                .iter()
                .map(|(&minute, rules)| {
                    let at = rules.get(index).copied().unwrap_or_default();
                    (minute, if denied { at.denied } else { at.allowed })
                })
                .collect()
        };
        let (allowed, denied) = (series(false), series(true));
        let top = allowed
            .iter()
            .chain(&denied)
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(0)
            .max(1);
        let caption = format!(
            "{}: {} decided, {} denied{}",
            rule.throttle,
            rule.decided,
            rule.denied,
            if rule.shadow_denied > 0 {
                format!(", {} shadow-denied", rule.shadow_denied)
            } else {
                String::new()
            }
        );
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(first..last, 0..top + top / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(12)
            .x_label_formatter(&|ms| clock(*ms))
            .y_desc("requests / min")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(allowed, ALLOWED.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("allowed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], ALLOWED.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(denied, DENIED.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("denied (or would be, in shadow)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], DENIED.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
