//! HTML evaluation report: one self-contained page with inline SVG charts.
//!
//! The page carries its own CSS and has no script and no reference to an
//! external resource, so it opens offline and can be archived next to a run.
//! Charts are drawn by the SVG backend of plotters. That backend writes text as
//! SVG `<text>` elements which the browser renders in its own sans-serif font,
//! so no font file is embedded and plotters needs none of its font features.
//! Without them, plotters sizes labels for layout with a built-in estimate of
//! text width.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Everything the evaluation shows a reader, as plain data.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReportData {
    /// Page title, e.g. "Sepsis early warning: evaluation of run 20261204T2300Z-ab12".
    pub title: String,
    /// One-paragraph plain-language summary shown first.
    pub summary: String,
    /// Key facts as label/value pairs (model, data, patients, threshold, ...), shown as a table.
    pub facts: Vec<(String, String)>,
    /// Headline metric tables, e.g. "Per hour", "Per patient", "Alert burden and calibration".
    pub tables: Vec<Table>,
    /// ROC curve points (false positive rate, true positive rate), sorted by FPR; may be empty.
    pub roc: Vec<(f64, f64)>,
    pub roc_auc: Option<f64>,
    /// Precision-recall points (recall, precision); may be empty.
    pub pr: Vec<(f64, f64)>,
    pub pr_auc: Option<f64>,
    /// Base rate drawn as a horizontal line in the PR chart.
    pub positive_rate: Option<f64>,
    /// Reliability curve bins.
    pub reliability: Vec<ReliabilityBin>,
    /// Hours of warning before onset, one per septic patient alerted in time.
    pub lead_times_hours: Vec<f64>,
    /// Top feature importances (name, gain), largest first.
    pub importances: Vec<(String, f64)>,
    /// Baseline comparison and subgroup tables, shown after the charts.
    pub comparison: Vec<Table>,
    /// Footnotes: definitions, data attribution.
    pub notes: Vec<String>,
}

/// A captioned table of preformatted cells.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Table {
    pub caption: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// One bin of the reliability (calibration) curve.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReliabilityBin {
    pub mean_predicted: f64,
    pub observed_rate: f64,
    pub count: u64,
}

/// Size of the curve charts in pixels. The page scales charts down on narrow
/// screens because plotters gives each SVG a `viewBox`.
const CHART_SIZE: (u32, u32) = (560, 400);
/// Width of the feature importance chart, wider than the others so that long
/// feature names fit beside the bars.
const IMPORTANCE_CHART_WIDTH: u32 = 760;
/// Height of one bar row in the feature importance chart, in pixels.
const IMPORTANCE_ROW_HEIGHT: u32 = 22;
const MAX_IMPORTANCES: usize = 20;
/// Maximum length, in characters, of a feature name drawn in full. Longer
/// names are shortened in the middle on the chart and listed in full in the
/// table below it.
const MAX_LABEL_CHARS: usize = 40;
/// Maximum number of points drawn per curve. A 560-pixel chart shows no more
/// detail, and each point costs about 8 bytes of SVG.
const MAX_CURVE_POINTS: usize = 400;
/// First Douglas-Peucker tolerance tried, in axis units. On a 560 x 400 chart
/// of the unit square, 0.0005 is about a quarter of a pixel.
const INITIAL_TOLERANCE: f64 = 0.0005;

const FONT_FAMILY: &str = "sans-serif";
/// Font sizes in plotters units. The SVG backend (plotters-svg 0.3.7) writes
/// `size / 1.24` as the font size in pixels, so 15 becomes about 12 px.
const LABEL_FONT_SIZE: f64 = 15.0;
const AXIS_TITLE_FONT_SIZE: f64 = 16.0;
/// Average glyph width of the label font in pixels, used to reserve room for
/// feature names. It is an estimate for common sans-serif fonts.
const LABEL_CHAR_WIDTH: f64 = 6.6;

const CURVE_COLOR: RGBColor = RGBColor(0x1f, 0x5f, 0xa8);
const REFERENCE_COLOR: RGBColor = RGBColor(0x80, 0x80, 0x80);
const MARKER_COLOR: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const GRID_COLOR: RGBColor = RGBColor(0xe4, 0xe4, 0xe4);
const TEXT_COLOR: RGBColor = RGBColor(0x22, 0x22, 0x22);

/// The drawing area of one chart.
type Root<'a> = DrawingArea<SVGBackend<'a>, Shift>;
/// A chart with numeric axes on both sides.
type XyChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
/// Result of drawing into an SVG string. The SVG backend does no I/O when it
/// writes to a string, so an error comes from plotters itself, and
/// `render_chart` shows it in place of the chart.
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Renders the report as one HTML page with inline SVG charts and inline CSS:
/// no script, no external link, image or font, so it opens offline.
pub fn render_html(report: &ReportData) -> String {
    let mut html = String::with_capacity(256 * 1024);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str(&format!(
        "<title>{}</title>\n",
        escape_html(page_title(&report.title))
    ));
    html.push_str(STYLE);
    html.push_str("</head>\n<body>\n<main>\n");
    html.push_str(&format!(
        "<h1>{}</h1>\n",
        escape_html(page_title(&report.title))
    ));
    if !report.summary.trim().is_empty() {
        html.push_str(&format!(
            "<p class=\"summary\">{}</p>\n",
            escape_html(&report.summary)
        ));
    }
    html.push_str(&render_facts(&report.facts));
    html.push_str(&render_table_section("Headline metrics", &report.tables));
    html.push_str(&render_charts(report));
    html.push_str(&render_table_section(
        "Comparison with baselines and subgroups",
        &report.comparison,
    ));
    html.push_str(&render_notes(&report.notes));
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

/// Inline style sheet. It references no font or image, so the page needs
/// nothing outside itself.
const STYLE: &str = r#"<style>
body { margin: 0; background: #fff; color: #222; line-height: 1.5;
  font-family: system-ui, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.7rem; margin: 0 0 0.6rem; }
h2 { font-size: 1.3rem; margin: 2rem 0 0.8rem; padding-bottom: 0.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; margin: 0 0 0.5rem; }
.summary { font-size: 1.08rem; max-width: 60rem; }
.tables { display: flex; flex-wrap: wrap; gap: 0 40px; align-items: flex-start; }
table { border-collapse: collapse; margin: 0 0 1.5rem; font-size: 0.95rem; }
.tables table { display: block; max-width: 100%; overflow-x: auto; }
caption { text-align: left; font-weight: 600; padding: 0 0 0.3rem; }
th, td { padding: 0.25rem 0.75rem; border-bottom: 1px solid #e0e0e0; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #999; }
tbody th { font-weight: 600; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.empty { color: #666; font-style: italic; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 480px), 1fr)); gap: 24px; }
figure { margin: 0; padding: 16px; border: 1px solid #ddd; border-radius: 6px; }
figure.wide { grid-column: 1 / -1; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 0.5rem; color: #444; font-size: 0.93rem; }
figcaption p { margin: 0; }
details { margin-top: 0.5rem; font-size: 0.93rem; }
details table { margin: 0.5rem 0 0; }
.placeholder { display: flex; align-items: center; justify-content: center; aspect-ratio: 560 / 400;
  background: #f5f5f5; border: 1px dashed #bbb; color: #666; text-align: center; padding: 1rem; }
.notes { font-size: 0.93rem; color: #444; }
@media print { figure, table { break-inside: avoid; } }
</style>
"#;

/// Returns the title to show, falling back to a generic one because HTML
/// requires a non-empty `<title>`.
fn page_title(title: &str) -> &str {
    if title.trim().is_empty() {
        "Evaluation report"
    } else {
        title
    }
}

fn render_facts(facts: &[(String, String)]) -> String {
    if facts.is_empty() {
        return String::new();
    }
    let mut html =
        String::from("<section>\n<h2>Key facts</h2>\n<table class=\"facts\">\n<tbody>\n");
    for (label, value) in facts {
        html.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>\n",
            escape_html(label),
            escape_html(value)
        ));
    }
    html.push_str("</tbody>\n</table>\n</section>\n");
    html
}

/// Renders a headed section of tables, or nothing when there are no tables.
fn render_table_section(heading: &str, tables: &[Table]) -> String {
    if tables.is_empty() {
        return String::new();
    }
    let mut html = format!(
        "<section>\n<h2>{}</h2>\n<div class=\"tables\">\n",
        escape_html(heading)
    );
    for table in tables {
        html.push_str(&render_table(table));
    }
    html.push_str("</div>\n</section>\n");
    html
}

/// Renders one table, right-aligning the columns whose cells are numbers.
/// Short rows are padded so that every row has the same number of cells.
fn render_table(table: &Table) -> String {
    let longest_row = table.rows.iter().map(Vec::len).max().unwrap_or(0);
    let column_count = table.headers.len().max(longest_row);
    let numeric: Vec<bool> = (0..column_count)
        .map(|column| is_numeric_column(&table.rows, column))
        .collect();

    let mut html = String::from("<table>\n");
    if !table.caption.is_empty() {
        html.push_str(&format!(
            "<caption>{}</caption>\n",
            escape_html(&table.caption)
        ));
    }
    if !table.headers.is_empty() {
        html.push_str("<thead><tr>");
        for (column, &is_numeric) in numeric.iter().enumerate() {
            let header = table.headers.get(column).map_or("", String::as_str);
            html.push_str(&format!(
                "<th scope=\"col\"{}>{}</th>",
                cell_class(is_numeric),
                escape_html(header)
            ));
        }
        html.push_str("</tr></thead>\n");
    }
    html.push_str("<tbody>\n");
    if table.rows.is_empty() {
        html.push_str(&format!(
            "<tr><td class=\"empty\" colspan=\"{}\">No rows.</td></tr>\n",
            column_count.max(1)
        ));
    }
    for row in &table.rows {
        html.push_str("<tr>");
        for (column, &is_numeric) in numeric.iter().enumerate() {
            let cell = row.get(column).map_or("", String::as_str);
            html.push_str(&format!(
                "<td{}>{}</td>",
                cell_class(is_numeric),
                escape_html(cell)
            ));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
    html
}

fn cell_class(numeric: bool) -> &'static str {
    if numeric {
        " class=\"num\""
    } else {
        ""
    }
}

/// Tells whether a column contains numbers: at least one cell is a number and
/// every other cell is a number or a missing-value marker.
fn is_numeric_column(rows: &[Vec<String>], column: usize) -> bool {
    let mut has_number = false;
    for cell in rows.iter().filter_map(|row| row.get(column)) {
        let cell = cell.trim();
        if is_missing_marker(cell) {
            continue;
        }
        if !looks_numeric(cell) {
            return false;
        }
        has_number = true;
    }
    has_number
}

fn is_missing_marker(cell: &str) -> bool {
    matches!(
        cell,
        "" | "-" | "\u{2013}" | "\u{2014}" | "n/a" | "N/A" | "NA" | "NaN"
    )
}

/// Tells whether a cell starts with a number, such as "0.81", "-3", "<0.001",
/// "12.5 %", "1,024" or "0.81 (0.79-0.83)".
fn looks_numeric(cell: &str) -> bool {
    let unsigned =
        cell.trim_start_matches(['+', '-', '\u{2212}', '\u{00b1}', '<', '>', '\u{2248}', '~']);
    let mut chars = unsigned.chars();
    match chars.next() {
        Some(first) if first.is_ascii_digit() => true,
        Some('.') => chars.next().is_some_and(|second| second.is_ascii_digit()),
        _ => false,
    }
}

fn render_notes(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let mut html = String::from("<section class=\"notes\">\n<h2>Notes</h2>\n<ol>\n");
    for note in notes {
        html.push_str(&format!("<li>{}</li>\n", escape_html(note)));
    }
    html.push_str("</ol>\n</section>\n");
    html
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

// Charts

/// One chart with its heading, reading guide and optional data table.
struct Figure {
    heading: &'static str,
    /// Plain text, escaped when rendered.
    caption: String,
    chart: Chart,
    /// Ready HTML, such as a `<details>` element with the charted numbers.
    details: Option<String>,
    /// Whether the figure spans the full page width.
    wide: bool,
}

enum Chart {
    Svg(String),
    /// Plain-text reason shown in place of the chart.
    Placeholder(String),
}

fn render_charts(report: &ReportData) -> String {
    let figures = [
        roc_figure(&report.roc, report.roc_auc),
        pr_figure(&report.pr, report.pr_auc, report.positive_rate),
        reliability_figure(&report.reliability),
        lead_time_figure(&report.lead_times_hours),
        importance_figure(&report.importances),
    ];
    let mut html = String::from("<section>\n<h2>Charts</h2>\n<div class=\"charts\">\n");
    for figure in &figures {
        html.push_str(&render_figure(figure));
    }
    html.push_str("</div>\n</section>\n");
    html
}

fn render_figure(figure: &Figure) -> String {
    let class = if figure.wide { "chart wide" } else { "chart" };
    let heading = escape_html(figure.heading);
    let mut html = format!("<figure class=\"{class}\">\n<h3>{heading}</h3>\n");
    match &figure.chart {
        // plotters writes `<svg width=...`, so the accessible name goes in front.
        Chart::Svg(svg) => html.push_str(&svg.replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{heading}\" "),
            1,
        )),
        Chart::Placeholder(reason) => html.push_str(&format!(
            "<div class=\"placeholder\" role=\"img\" aria-label=\"{heading}\">{}</div>\n",
            escape_html(reason)
        )),
    }
    // HTML allows a figcaption only as the first or last child of a figure,
    // so the data table goes inside it.
    html.push_str(&format!(
        "<figcaption>\n<p>{}</p>\n",
        escape_html(&figure.caption)
    ));
    if let Some(details) = &figure.details {
        html.push_str(details);
    }
    html.push_str("</figcaption>\n</figure>\n");
    html
}

/// Draws one chart into an SVG string, or returns a placeholder with the
/// drawing error.
fn render_chart(name: &str, size: (u32, u32), draw: impl FnOnce(&Root<'_>) -> DrawResult) -> Chart {
    let mut svg = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).and_then(|()| root.present())
    };
    match result {
        Ok(()) => Chart::Svg(svg),
        Err(error) => {
            tracing::warn!(
                chart = name,
                %error,
                "failed to draw a report chart, showing a placeholder"
            );
            Chart::Placeholder(format!("The chart could not be drawn: {error}."))
        }
    }
}

fn roc_figure(points: &[(f64, f64)], auc: Option<f64>) -> Figure {
    let cleaned = clean_unit_points(points);
    let auc = auc.filter(|value| value.is_finite());
    let mut caption = String::from(
        "Each point is one alert threshold, plotting the share of positives flagged \
         against the share of negatives flagged, so a curve nearer the top left is better \
         and the dashed diagonal is chance.",
    );
    caption.push_str(&match auc {
        Some(auc) => format!(" Area under the curve (AUC) = {auc:.3}."),
        None => String::from(" AUC not available."),
    });
    caption.push_str(&skipped_note(cleaned.skipped, "point"));

    let chart = if cleaned.values.is_empty() {
        Chart::Placeholder(String::from(
            "No data: the report contains no ROC point with finite values.",
        ))
    } else {
        let curve = simplify_curve(&cleaned.values, MAX_CURVE_POINTS);
        render_chart("ROC curve", CHART_SIZE, |root| draw_roc(root, &curve, auc))
    };
    Figure {
        heading: "ROC curve",
        caption,
        chart,
        details: None,
        wide: false,
    }
}

fn draw_roc(root: &Root<'_>, curve: &[(f64, f64)], auc: Option<f64>) -> DrawResult {
    root.fill(&WHITE)?;
    let mut chart = xy_chart(root, 0.0..1.0, 0.0..1.0)?;
    draw_mesh(
        &mut chart,
        "False positive rate",
        "True positive rate",
        1,
        1,
    )?;
    draw_reference_line(&mut chart, [(0.0, 0.0), (1.0, 1.0)], "Chance")?;
    let label = match auc {
        Some(auc) => format!("Model (AUC {auc:.3})"),
        None => String::from("Model"),
    };
    draw_curve(&mut chart, curve, &label)?;
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn pr_figure(points: &[(f64, f64)], auc: Option<f64>, positive_rate: Option<f64>) -> Figure {
    let cleaned = clean_unit_points(points);
    let auc = auc.filter(|value| value.is_finite());
    let base_rate = positive_rate.filter(|rate| (0.0..=1.0).contains(rate));
    let mut caption = String::from(
        "Each point is one alert threshold, plotting the share of alerts that are true \
         (precision) against the share of positives flagged (recall), and the dashed line \
         at the base rate is what a model without skill achieves.",
    );
    if let Some(auc) = auc {
        caption.push_str(&format!(" Area under the curve (AUC) = {auc:.3}."));
    }
    if let Some(rate) = base_rate {
        caption.push_str(&format!(" Base rate = {}.", format_percent(rate)));
    }
    caption.push_str(&skipped_note(cleaned.skipped, "point"));

    let chart = if cleaned.values.is_empty() {
        Chart::Placeholder(String::from(
            "No data: the report contains no precision-recall point with finite values.",
        ))
    } else {
        let curve = simplify_curve(&cleaned.values, MAX_CURVE_POINTS);
        render_chart("precision-recall curve", CHART_SIZE, |root| {
            draw_pr(root, &curve, auc, base_rate)
        })
    };
    Figure {
        heading: "Precision-recall curve",
        caption,
        chart,
        details: None,
        wide: false,
    }
}

fn draw_pr(
    root: &Root<'_>,
    curve: &[(f64, f64)],
    auc: Option<f64>,
    base_rate: Option<f64>,
) -> DrawResult {
    root.fill(&WHITE)?;
    let mut chart = xy_chart(root, 0.0..1.0, 0.0..1.0)?;
    draw_mesh(
        &mut chart,
        "Recall (sensitivity)",
        "Precision (positive predictive value)",
        1,
        1,
    )?;
    if let Some(rate) = base_rate {
        let label = format!("Base rate ({})", format_percent(rate));
        draw_reference_line(&mut chart, [(0.0, rate), (1.0, rate)], &label)?;
    }
    let label = match auc {
        Some(auc) => format!("Model (AUC {auc:.3})"),
        None => String::from("Model"),
    };
    draw_curve(&mut chart, curve, &label)?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn reliability_figure(bins: &[ReliabilityBin]) -> Figure {
    let usable: Vec<&ReliabilityBin> = bins
        .iter()
        .filter(|bin| bin.mean_predicted.is_finite() && bin.observed_rate.is_finite())
        .collect();
    let skipped = bins.len() - usable.len();
    let axis_max = usable
        .iter()
        .map(|bin| bin.mean_predicted.max(bin.observed_rate))
        .fold(0.0, f64::max);
    let axis_max = nice_axis_max(axis_max);

    let mut caption = String::from(
        "Each circle is a bin of predictions at its mean predicted risk and observed sepsis \
         rate, with area proportional to the bin's size, so circles below the dashed diagonal \
         mean the model overestimates risk.",
    );
    if !usable.is_empty() && axis_max < 1.0 {
        caption.push_str(&format!(
            " Both axes end at {axis_max} so that the low-risk range stays readable."
        ));
    }
    caption.push_str(&skipped_note(skipped, "bin"));

    let chart = if usable.is_empty() {
        Chart::Placeholder(String::from(
            "No data: the report contains no calibration bin with finite values.",
        ))
    } else {
        render_chart("reliability curve", CHART_SIZE, |root| {
            draw_reliability(root, &usable, axis_max)
        })
    };
    Figure {
        heading: "Calibration (reliability curve)",
        caption,
        chart,
        details: Some(reliability_details(bins)),
        wide: false,
    }
}

fn draw_reliability(root: &Root<'_>, bins: &[&ReliabilityBin], axis_max: f64) -> DrawResult {
    root.fill(&WHITE)?;
    let mut chart = xy_chart(root, 0.0..axis_max, 0.0..axis_max)?;
    let decimals = tick_decimals(axis_max);
    draw_mesh(
        &mut chart,
        "Mean predicted probability",
        "Observed sepsis rate",
        decimals,
        decimals,
    )?;
    draw_reference_line(
        &mut chart,
        [(0.0, 0.0), (axis_max, axis_max)],
        "Perfect calibration",
    )?;

    let points: Vec<(f64, f64)> = bins
        .iter()
        .map(|bin| {
            (
                bin.mean_predicted.clamp(0.0, axis_max),
                bin.observed_rate.clamp(0.0, axis_max),
            )
        })
        .collect();
    draw_curve(&mut chart, &points, "Model")?;

    // Translucent circles with an outline stay distinguishable where bins of
    // small predicted risk crowd together.
    let max_count = bins.iter().map(|bin| bin.count).max().unwrap_or(0);
    let radii: Vec<u32> = bins
        .iter()
        .map(|bin| bin_radius(bin.count, max_count))
        .collect();
    chart.draw_series(
        points
            .iter()
            .zip(&radii)
            .map(|(&point, &radius)| Circle::new(point, radius, CURVE_COLOR.mix(0.2).filled())),
    )?;
    chart.draw_series(
        points
            .iter()
            .zip(&radii)
            .map(|(&point, &radius)| Circle::new(point, radius, CURVE_COLOR.stroke_width(1))),
    )?;
    draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Radius in pixels of a reliability circle, chosen so that the circle's area
/// grows with the bin's count.
fn bin_radius(count: u64, max_count: u64) -> u32 {
    const MIN_RADIUS: f64 = 3.0;
    const MAX_RADIUS: f64 = 11.0;
    if max_count == 0 {
        return MIN_RADIUS as u32;
    }
    let share = (count as f64 / max_count as f64).sqrt();
    (MIN_RADIUS + share * (MAX_RADIUS - MIN_RADIUS)).round() as u32
}

fn reliability_details(bins: &[ReliabilityBin]) -> String {
    let table = Table {
        caption: String::new(),
        headers: vec![
            String::from("Mean predicted"),
            String::from("Observed rate"),
            String::from("Predictions"),
        ],
        rows: bins
            .iter()
            .map(|bin| {
                vec![
                    format_probability(bin.mean_predicted),
                    format_probability(bin.observed_rate),
                    bin.count.to_string(),
                ]
            })
            .collect(),
    };
    details_element("Bin values", &table)
}

fn lead_time_figure(lead_times_hours: &[f64]) -> Figure {
    let usable: Vec<f64> = lead_times_hours
        .iter()
        .copied()
        .filter(|hours| hours.is_finite() && *hours >= 0.0)
        .collect();
    let skipped = lead_times_hours.len() - usable.len();

    let (chart, mut caption) = match median(&usable) {
        None => (
            Chart::Placeholder(String::from(
                "No data: the report contains no non-negative, finite lead time.",
            )),
            String::from(
                "Each bar would count the septic patients whose first timely alert came that \
                 many hours before onset.",
            ),
        ),
        Some(median_hours) => {
            let histogram = Histogram::of_lead_times(&usable);
            let caption = format!(
                "Each bar counts the septic patients whose first timely alert came that many \
                 hours before onset (bins of {} h), and the red line marks the median of {} h \
                 over {} patients.",
                histogram.bin_width,
                format_hours(median_hours),
                usable.len()
            );
            // plotters 0.3.7 never finishes choosing ticks for an axis whose
            // span overflows f64, so such an axis is not drawn.
            let chart = if histogram.end().is_finite() {
                render_chart("lead time histogram", CHART_SIZE, |root| {
                    draw_lead_times(root, &histogram, median_hours)
                })
            } else {
                Chart::Placeholder(String::from(
                    "The lead times are too large to draw on a numeric axis.",
                ))
            };
            (chart, caption)
        }
    };
    caption.push_str(&skipped_note(skipped, "negative or missing lead time"));
    Figure {
        heading: "Warning lead time",
        caption,
        chart,
        details: None,
        wide: false,
    }
}

fn draw_lead_times(root: &Root<'_>, histogram: &Histogram, median_hours: f64) -> DrawResult {
    root.fill(&WHITE)?;
    let x_max = histogram.end();
    let max_count = histogram.counts.iter().copied().max().unwrap_or(0);
    // Headroom above the tallest bar keeps the legend clear of it.
    let y_max = (max_count + max_count / 4).max(max_count + 1);
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max, 0u64..y_max)?;

    let hours_format = |hours: &f64| format!("{hours:.0}");
    chart
        .configure_mesh()
        .x_desc("Hours of warning before onset")
        .y_desc("Patients")
        .x_label_formatter(&hours_format)
        .label_style(label_font())
        .axis_desc_style(axis_title_font())
        .bold_line_style(GRID_COLOR)
        // Hidden rather than limited to zero lines: plotters 0.3.7 overflows
        // when asked for zero key points on an integer axis.
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .draw()?;

    chart.draw_series(histogram.counts.iter().enumerate().map(|(index, &count)| {
        let start = index as f64 * histogram.bin_width;
        let mut bar = Rectangle::new(
            [(start, 0), (start + histogram.bin_width, count)],
            CURVE_COLOR.mix(0.75).filled(),
        );
        bar.set_margin(0, 0, 1, 1);
        bar
    }))?;

    let median_style = MARKER_COLOR.stroke_width(2);
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(median_hours, 0), (median_hours, y_max)],
            median_style,
        )))?
        .label(format!("Median {} h", format_hours(median_hours)))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], median_style));
    draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Counts per bin of equal width, starting at zero hours.
struct Histogram {
    /// Bin width in whole hours.
    bin_width: f64,
    counts: Vec<u64>,
}

impl Histogram {
    /// Bins non-negative, finite lead times. The last bin contains the maximum.
    fn of_lead_times(hours: &[f64]) -> Self {
        let max = hours.iter().copied().fold(0.0, f64::max);
        let bin_width = lead_time_bin_width(max);
        let bin_count = (max / bin_width).floor() as usize + 1;
        let mut counts = vec![0; bin_count];
        for &value in hours {
            let index = ((value / bin_width).floor() as usize).min(bin_count - 1);
            counts[index] += 1;
        }
        Histogram { bin_width, counts }
    }

    /// Right edge of the last bin, in hours.
    fn end(&self) -> f64 {
        self.counts.len() as f64 * self.bin_width
    }
}

/// Returns a bin width in whole hours: 1 h up to a day, 2 h up to four days,
/// and beyond that wide enough to keep about 48 bins.
fn lead_time_bin_width(max_hours: f64) -> f64 {
    if max_hours <= 24.0 {
        1.0
    } else if max_hours <= 96.0 {
        2.0
    } else {
        (max_hours / 48.0).ceil()
    }
}

fn importance_figure(importances: &[(String, f64)]) -> Figure {
    let mut usable: Vec<(&str, f64)> = importances
        .iter()
        .filter(|(_, gain)| gain.is_finite())
        .map(|(name, gain)| (name.as_str(), *gain))
        .collect();
    let skipped = importances.len() - usable.len();
    // The input should be sorted already, but the chart must show the largest
    // gains whatever the order.
    usable.sort_by(|left, right| right.1.total_cmp(&left.1));
    usable.truncate(MAX_IMPORTANCES);

    let mut caption = format!(
        "Each bar is one feature's gain, the loss reduction from all tree splits on it, for the \
         features with the largest gain (at most {MAX_IMPORTANCES}), so longer bars mark \
         features the model relies on more. Gain measures use by the model, not a causal effect."
    );
    caption.push_str(&skipped_note(skipped, "feature with a missing gain"));

    let axis = gain_axis(&usable);
    let chart = if usable.is_empty() {
        Chart::Placeholder(String::from(
            "No data: the report contains no feature importance with a finite gain.",
        ))
    } else if let Some(axis) = axis {
        let height = 80 + IMPORTANCE_ROW_HEIGHT * usable.len() as u32;
        render_chart(
            "feature importance",
            (IMPORTANCE_CHART_WIDTH, height),
            |root| draw_importances(root, &usable, axis),
        )
    } else {
        Chart::Placeholder(String::from(
            "The gains span too wide a range to draw on a numeric axis.",
        ))
    };
    Figure {
        heading: "Feature importance",
        caption,
        chart,
        details: Some(importance_details(&usable)),
        wide: true,
    }
}

/// Draws horizontal bars, largest at the top. The names are drawn as free text
/// beside the plot because a numeric axis cannot label each bar exactly.
fn draw_importances(
    root: &Root<'_>,
    importances: &[(&str, f64)],
    axis: std::ops::Range<f64>,
) -> DrawResult {
    root.fill(&WHITE)?;
    let names: Vec<String> = importances
        .iter()
        .map(|(name, _)| shorten_label(name, MAX_LABEL_CHARS))
        .collect();
    let longest_name = names
        .iter()
        .map(|name| name.chars().count())
        .max()
        .unwrap_or(0);
    let name_area_width = (longest_name as f64 * LABEL_CHAR_WIDTH).ceil() as u32 + 16;

    let axis_start = axis.start;
    let row_count = importances.len() as f64;
    let mut chart = ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(name_area_width)
        .build_cartesian_2d(axis, 0.0..row_count)?;

    let gain_format = |gain: &f64| format_number(*gain);
    chart
        .configure_mesh()
        .x_desc("Gain")
        .x_label_formatter(&gain_format)
        .y_labels(0)
        .label_style(label_font())
        .axis_desc_style(axis_title_font())
        .bold_line_style(GRID_COLOR)
        .max_light_lines(0)
        .disable_y_mesh()
        .draw()?;

    let value_style = label_font().pos(Pos::new(HPos::Left, VPos::Center));
    let name_style = label_font().pos(Pos::new(HPos::Right, VPos::Center));
    for (row, ((_, gain), name)) in importances.iter().zip(&names).enumerate() {
        // Row 0 is the largest gain and goes at the top.
        let center = row_count - row as f64 - 0.5;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, center - 0.32), (*gain, center + 0.32)],
            CURVE_COLOR.mix(0.8).filled(),
        )))?;
        chart.draw_series(std::iter::once(
            EmptyElement::at((gain.max(0.0), center))
                + Text::new(format_number(*gain), (5, 0), value_style.clone()),
        ))?;
        let (x, y) = chart.backend_coord(&(axis_start, center));
        root.draw(&Text::new(name.as_str(), (x - 8, y), name_style.clone()))?;
    }
    Ok(())
}

/// Returns the gain axis, from zero or the smallest gain to the largest gain
/// plus room for its value label. Returns `None` when the span overflows f64,
/// because plotters 0.3.7 never finishes choosing ticks for such an axis.
fn gain_axis(importances: &[(&str, f64)]) -> Option<std::ops::Range<f64>> {
    let gains = importances.iter().map(|(_, gain)| *gain);
    let max_gain = gains.clone().fold(0.0, f64::max);
    let min_gain = gains.fold(0.0, f64::min);
    let end = if max_gain > 0.0 { max_gain * 1.18 } else { 1.0 };
    (end - min_gain).is_finite().then_some(min_gain..end)
}

fn importance_details(importances: &[(&str, f64)]) -> String {
    let table = Table {
        caption: String::new(),
        headers: vec![String::from("Feature"), String::from("Gain")],
        rows: importances
            .iter()
            .map(|(name, gain)| vec![(*name).to_owned(), format_number(*gain)])
            .collect(),
    };
    details_element("Full feature names and values", &table)
}

fn details_element(summary: &str, table: &Table) -> String {
    format!(
        "<details>\n<summary>{}</summary>\n{}</details>\n",
        escape_html(summary),
        render_table(table)
    )
}

// Chart building blocks

/// Builds a chart with numeric axes and room for tick labels and axis titles.
fn xy_chart<'a, 'b>(
    root: &'a Root<'b>,
    x_range: std::ops::Range<f64>,
    y_range: std::ops::Range<f64>,
) -> Result<XyChart<'a, 'b>, DrawingAreaErrorKind<std::io::Error>> {
    ChartBuilder::on(root)
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, y_range)
}

/// Draws the grid, axes and axis titles with tick labels of fixed decimals.
fn draw_mesh(
    chart: &mut XyChart<'_, '_>,
    x_title: &str,
    y_title: &str,
    x_decimals: usize,
    y_decimals: usize,
) -> DrawResult {
    let x_format = |value: &f64| format!("{value:.x_decimals$}");
    let y_format = |value: &f64| format!("{value:.y_decimals$}");
    chart
        .configure_mesh()
        .x_desc(x_title)
        .y_desc(y_title)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .x_labels(6)
        .y_labels(6)
        .label_style(label_font())
        .axis_desc_style(axis_title_font())
        .bold_line_style(GRID_COLOR)
        .max_light_lines(0)
        .draw()
}

/// Draws a dashed grey line that marks a reference, such as chance level.
fn draw_reference_line(
    chart: &mut XyChart<'_, '_>,
    ends: [(f64, f64); 2],
    label: &str,
) -> DrawResult {
    let style = REFERENCE_COLOR.stroke_width(2);
    chart
        .draw_series(std::iter::once(DashedPathElement::new(ends, 6, 5, style)))?
        .label(label)
        .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, style));
    Ok(())
}

fn draw_curve(chart: &mut XyChart<'_, '_>, points: &[(f64, f64)], label: &str) -> DrawResult {
    let style = CURVE_COLOR.stroke_width(2);
    chart
        .draw_series(std::iter::once(PathElement::new(points.to_vec(), style)))?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    Ok(())
}

fn draw_legend<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> DrawResult
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font(label_font())
        .background_style(WHITE.mix(0.9))
        .border_style(REFERENCE_COLOR)
        .draw()
}

fn label_font() -> TextStyle<'static> {
    (FONT_FAMILY, LABEL_FONT_SIZE)
        .into_font()
        .color(&TEXT_COLOR)
}

fn axis_title_font() -> TextStyle<'static> {
    (FONT_FAMILY, AXIS_TITLE_FONT_SIZE)
        .into_font()
        .color(&TEXT_COLOR)
}

// Data preparation

/// Values that can be drawn, and how many others were left out.
struct Cleaned<T> {
    values: Vec<T>,
    skipped: usize,
}

/// Keeps curve points whose coordinates are both finite, clamped to the unit
/// square that ROC and precision-recall charts show.
fn clean_unit_points(points: &[(f64, f64)]) -> Cleaned<(f64, f64)> {
    let values: Vec<(f64, f64)> = points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|&(x, y)| (x.clamp(0.0, 1.0), y.clamp(0.0, 1.0)))
        .collect();
    Cleaned {
        skipped: points.len() - values.len(),
        values,
    }
}

/// Returns a caption sentence that reports left-out values, or nothing.
fn skipped_note(skipped: usize, noun: &str) -> String {
    match skipped {
        0 => String::new(),
        1 => format!(" One {noun} was left out because it could not be drawn."),
        _ => format!(" {skipped} {noun}s were left out because they could not be drawn."),
    }
}

/// Reduces a polyline to at most `max_points` points, keeping its shape.
///
/// Runs Douglas-Peucker with a tolerance that doubles until the result is
/// small enough. The first and last points are always kept, so `max_points`
/// below 2 still yields two points for a longer curve.
fn simplify_curve(points: &[(f64, f64)], max_points: usize) -> Vec<(f64, f64)> {
    if points.len() <= max_points {
        return points.to_vec();
    }
    let mut tolerance = INITIAL_TOLERANCE;
    loop {
        let kept = douglas_peucker(points, tolerance);
        if kept.len() <= max_points.max(2) {
            return kept;
        }
        tolerance *= 2.0;
    }
}

/// Keeps the points that lie farther than `tolerance` from the simplified
/// line. Uses an explicit stack so that long curves cannot overflow the call
/// stack.
fn douglas_peucker(points: &[(f64, f64)], tolerance: f64) -> Vec<(f64, f64)> {
    if points.len() < 3 {
        return points.to_vec();
    }
    let last = points.len() - 1;
    let mut keep = vec![false; points.len()];
    keep[0] = true;
    keep[last] = true;
    let mut segments = vec![(0, last)];
    while let Some((start, end)) = segments.pop() {
        if let Some((index, distance)) = farthest_point(points, start, end) {
            if distance > tolerance {
                keep[index] = true;
                segments.push((start, index));
                segments.push((index, end));
            }
        }
    }
    points
        .iter()
        .zip(keep)
        .filter_map(|(&point, kept)| kept.then_some(point))
        .collect()
}

/// Finds the point strictly between `start` and `end` that is farthest from
/// the segment joining them.
fn farthest_point(points: &[(f64, f64)], start: usize, end: usize) -> Option<(usize, f64)> {
    let (a, b) = (points[start], points[end]);
    (start + 1..end)
        .map(|index| (index, distance_to_segment(points[index], a, b)))
        .max_by(|left, right| left.1.total_cmp(&right.1))
}

fn distance_to_segment(point: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let length_squared = dx * dx + dy * dy;
    let t = if length_squared > 0.0 {
        (((point.0 - a.0) * dx + (point.1 - a.1) * dy) / length_squared).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (nearest_x, nearest_y) = (a.0 + t * dx, a.1 + t * dy);
    (point.0 - nearest_x).hypot(point.1 - nearest_y)
}

/// Returns the smallest round axis end at or above `value` plus 5 % headroom,
/// between 0.01 and 1.
fn nice_axis_max(value: f64) -> f64 {
    const STEPS: [f64; 14] = [
        0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0,
    ];
    let target = value * 1.05;
    STEPS
        .iter()
        .copied()
        .find(|&step| step >= target)
        .unwrap_or(1.0)
}

/// Returns the decimals needed to tell apart about five ticks up to `axis_max`.
fn tick_decimals(axis_max: f64) -> usize {
    let step = axis_max / 5.0;
    (-step.log10()).ceil().clamp(1.0, 4.0) as usize
}

/// Returns the median, or `None` for an empty slice. Expects finite values.
fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        Some((sorted[middle - 1] + sorted[middle]) / 2.0)
    } else {
        Some(sorted[middle])
    }
}

/// Shortens a label longer than `max_chars` by replacing its middle with an
/// ellipsis, since feature names differ mostly at their start and end.
fn shorten_label(label: &str, max_chars: usize) -> String {
    let char_count = label.chars().count();
    if char_count <= max_chars {
        return label.to_owned();
    }
    let kept = max_chars.saturating_sub(1);
    let head_chars = kept - kept / 3;
    let tail_chars = kept / 3;
    let head: String = label.chars().take(head_chars).collect();
    let tail: String = label.chars().skip(char_count - tail_chars).collect();
    format!("{head}\u{2026}{tail}")
}

fn format_percent(rate: f64) -> String {
    format!("{:.1} %", rate * 100.0)
}

fn format_hours(hours: f64) -> String {
    format!("{hours:.1}")
}

fn format_probability(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.4}")
    } else {
        String::from("n/a")
    }
}

/// Formats a gain compactly: whole numbers for large values, significant
/// digits for small ones and scientific notation at the extremes.
fn format_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        String::from("0")
    } else if !(1e-3..1e6).contains(&magnitude) {
        format!("{value:.2e}")
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XMLNS: &str = "xmlns=\"http://www.w3.org/2000/svg\"";

    /// Builds a report with the shape and size of a real evaluation: a
    /// 2000-point ROC curve with AUC about 0.83, hourly base rate 2.2 %.
    fn realistic_report() -> ReportData {
        let base_rate = 0.022;
        // ROC curve TPR = FPR^0.2, whose AUC is 1 / 1.2.
        let roc: Vec<(f64, f64)> = (0..2000)
            .map(|i| {
                let fpr = (i as f64 / 1999.0).powi(2);
                (fpr, fpr.powf(0.2))
            })
            .collect();
        let pr: Vec<(f64, f64)> = roc
            .iter()
            .rev()
            .filter(|(fpr, tpr)| fpr + tpr > 0.0)
            .map(|&(fpr, tpr)| {
                let precision = tpr * base_rate / (tpr * base_rate + fpr * (1.0 - base_rate));
                (tpr, precision)
            })
            .collect();
        let reliability = [
            (0.004, 0.003, 412_000),
            (0.009, 0.008, 198_000),
            (0.016, 0.019, 96_000),
            (0.028, 0.033, 51_000),
            (0.047, 0.052, 24_000),
            (0.079, 0.071, 11_500),
            (0.128, 0.104, 5_200),
            (0.205, 0.151, 2_100),
            (0.312, 0.226, 640),
        ]
        .into_iter()
        .map(|(mean_predicted, observed_rate, count)| ReliabilityBin {
            mean_predicted,
            observed_rate,
            count,
        })
        .collect();
        // Deterministic right-skewed lead times between 0 and about 36 hours.
        let lead_times_hours = (0..1800)
            .map(|i| {
                let u = ((i * 7919 + 13) % 1000) as f64 / 1000.0;
                -6.0 * (1.0 - u * 0.9985).ln()
            })
            .collect();
        let importances = [
            "ICULOS",
            "HospAdmTime",
            "Temp_max_24h",
            "resp_rate_trend_slope_over_last_twelve_hours_normalised",
            "HR_mean_6h",
            "WBC_last",
            "Lactate_last",
            "MAP_min_6h",
            "Age",
            "BUN_to_creatinine_ratio",
            "O2Sat_min_6h",
            "Platelets_last",
            "Resp_mean_6h",
            "hours_since_last_lab_measurement_any_panel",
            "SBP_std_12h",
            "Bilirubin_total_last",
            "FiO2_last",
            "Glucose_last",
            "Unit1",
            "Gender",
            "EtCO2_last",
        ]
        .iter()
        .enumerate()
        .map(|(rank, name)| (name.to_string(), 1800.0 / (rank as f64 + 1.0).powf(0.9)))
        .collect();

        ReportData {
            title: String::from("Sepsis early warning: evaluation of run 20261204T2300Z-ab12"),
            summary: String::from(
                "On held-out patients the model separates hours within six hours of sepsis \
                 onset from other hours with an AUC of 0.833, and it alerts 71 % of septic \
                 patients at a median of 4.1 hours before onset, at 2.3 alerts per 100 \
                 patient-days.",
            ),
            facts: vec![
                (
                    String::from("Model"),
                    String::from("LightGBM, 400 trees, 63 features"),
                ),
                (
                    String::from("Data"),
                    String::from("PhysioNet 2019 challenge, set B"),
                ),
                (String::from("Patients"), String::from("8,067 (588 septic)")),
                (
                    String::from("Threshold"),
                    String::from("0.082 (alerts at 5 % of hours)"),
                ),
            ],
            tables: vec![
                Table {
                    caption: String::from("Per hour"),
                    headers: vec![
                        String::from("Metric"),
                        String::from("Value"),
                        String::from("95 % CI"),
                    ],
                    rows: vec![
                        vec![
                            String::from("AUROC"),
                            String::from("0.833"),
                            String::from("0.826-0.840"),
                        ],
                        vec![
                            String::from("AUPRC"),
                            String::from("0.114"),
                            String::from("0.106-0.122"),
                        ],
                        vec![
                            String::from("Sensitivity"),
                            String::from("0.412"),
                            String::from("-"),
                        ],
                    ],
                },
                Table {
                    caption: String::from("Per patient"),
                    headers: vec![String::from("Metric"), String::from("Value")],
                    rows: vec![
                        vec![
                            String::from("Septic patients alerted in time"),
                            String::from("71.2 %"),
                        ],
                        vec![String::from("Median lead time"), String::from("4.1 h")],
                    ],
                },
                Table {
                    caption: String::from("Alert burden and calibration"),
                    headers: vec![String::from("Metric"), String::from("Value")],
                    rows: vec![
                        vec![
                            String::from("Alerts per 100 patient-days"),
                            String::from("2.3"),
                        ],
                        vec![String::from("Brier score"), String::from("0.0198")],
                    ],
                },
            ],
            roc,
            roc_auc: Some(0.833),
            pr,
            pr_auc: Some(0.114),
            positive_rate: Some(base_rate),
            reliability,
            lead_times_hours,
            importances,
            comparison: vec![
                Table {
                    caption: String::from("Baseline comparison"),
                    headers: vec![
                        String::from("Score"),
                        String::from("AUROC"),
                        String::from("Alerted in time"),
                    ],
                    rows: vec![
                        vec![
                            String::from("Model"),
                            String::from("0.833"),
                            String::from("71.2 %"),
                        ],
                        vec![
                            String::from("qSOFA >= 2"),
                            String::from("0.642"),
                            String::from("38.0 %"),
                        ],
                        vec![
                            String::from("SIRS >= 2"),
                            String::from("0.611"),
                            String::from("n/a"),
                        ],
                    ],
                },
                Table {
                    caption: String::from("Subgroups"),
                    headers: vec![
                        String::from("Group"),
                        String::from("Patients"),
                        String::from("AUROC"),
                    ],
                    rows: vec![
                        vec![
                            String::from("Age < 65"),
                            String::from("4,210"),
                            String::from("0.841"),
                        ],
                        vec![
                            String::from("Age >= 65"),
                            String::from("3,857"),
                            String::from("0.822"),
                        ],
                    ],
                },
            ],
            notes: vec![
                String::from("Positive hours are those from six hours before sepsis onset on."),
                String::from("Data: PhysioNet/Computing in Cardiology Challenge 2019, CC BY 4.0."),
            ],
        }
    }

    /// Writes the realistic report to the path in `REPORT_EXAMPLE_PATH`, for
    /// looking at the page in a browser. Does nothing when the variable is unset.
    #[test]
    fn realistic_report_writes_example() {
        let Some(path) = std::env::var_os("REPORT_EXAMPLE_PATH") else {
            return;
        };
        let html = render_html(&realistic_report());
        if let Err(error) = std::fs::write(&path, html) {
            panic!(
                "failed to write the example report to {}: {error}",
                path.to_string_lossy()
            );
        }
    }

    fn empty_report_with_nan_bin() -> ReportData {
        ReportData {
            reliability: vec![ReliabilityBin {
                mean_predicted: f64::NAN,
                observed_rate: 0.1,
                count: 0,
            }],
            ..ReportData::default()
        }
    }

    #[test]
    fn escape_html_replaces_markup() {
        assert_eq!(
            escape_html("<script>alert(\"x\")</script>"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape_html("a & b"), "a &amp; b");
        assert_eq!(escape_html("it's"), "it&#39;s");
        assert_eq!(escape_html("plain text, 5 %"), "plain text, 5 %");
    }

    #[test]
    fn realistic_report_has_five_charts() {
        let html = render_html(&realistic_report());
        assert_eq!(html.matches("<svg").count(), 5);
        assert_eq!(html.matches("</svg>").count(), 5);
        assert!(!html.contains("class=\"placeholder\""));
    }

    #[test]
    fn realistic_report_shows_title_and_captions() {
        let report = realistic_report();
        let html = render_html(&report);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains(&format!("<title>{}</title>", report.title)));
        assert!(html.contains(&format!("<h1>{}</h1>", report.title)));
        for table in report.tables.iter().chain(&report.comparison) {
            let caption = format!("<caption>{}</caption>", escape_html(&table.caption));
            assert!(html.contains(&caption), "missing table caption {caption}");
        }
        for heading in [
            "ROC curve",
            "Precision-recall curve",
            "Calibration (reliability curve)",
            "Warning lead time",
            "Feature importance",
        ] {
            assert!(
                html.contains(&format!("<h3>{heading}</h3>")),
                "missing {heading}"
            );
        }
        assert!(html.contains("Area under the curve (AUC) = 0.833."));
    }

    #[test]
    fn realistic_report_is_self_contained() {
        let html = render_html(&realistic_report());
        assert!(!html.to_lowercase().contains("<script"));
        assert_eq!(html.matches(XMLNS).count(), 5);
        let without_namespace = html.replace(XMLNS, "");
        assert!(!without_namespace.contains("http://"));
        assert!(!without_namespace.contains("https://"));
        assert!(!html.contains("<link"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("url("));
    }

    #[test]
    fn realistic_report_stays_small() {
        let html = render_html(&realistic_report());
        assert!(html.len() < 200_000, "page has {} bytes", html.len());
    }

    #[test]
    fn realistic_report_labels_axes() {
        let html = render_html(&realistic_report());
        for label in [
            "False positive rate",
            "True positive rate",
            "Recall (sensitivity)",
            "Mean predicted probability",
            "Observed sepsis rate",
            "Hours of warning before onset",
            "Gain",
            "ICULOS",
        ] {
            assert!(html.contains(label), "missing axis label {label}");
        }
    }

    #[test]
    fn numeric_columns_are_right_aligned() {
        let html = render_table(&realistic_report().tables[0]);
        assert!(html.contains("<th scope=\"col\" class=\"num\">Value</th>"));
        assert!(html.contains("<td class=\"num\">0.833</td>"));
        assert!(html.contains("<td class=\"num\">-</td>"));
        assert!(html.contains("<td>AUROC</td>"));
    }

    #[test]
    fn report_text_is_escaped() {
        let hostile = "<script>alert('x')</script> & \"quoted\"";
        let report = ReportData {
            title: hostile.to_owned(),
            summary: hostile.to_owned(),
            facts: vec![(hostile.to_owned(), hostile.to_owned())],
            tables: vec![Table {
                caption: hostile.to_owned(),
                headers: vec![hostile.to_owned()],
                rows: vec![vec![hostile.to_owned()]],
            }],
            importances: vec![(hostile.to_owned(), 1.0)],
            notes: vec![hostile.to_owned()],
            ..realistic_report()
        };
        let html = render_html(&report);
        assert!(!html.to_lowercase().contains("<script"));
        assert!(html
            .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"));
        // The importance chart draws the name inside the SVG, where plotters escapes it.
        assert!(html.contains(
            "&lt;script&gt;alert(&apos;x&apos;)&lt;/script&gt; &amp; &quot;quoted&quot;"
        ));
    }

    #[test]
    fn empty_report_shows_placeholders() {
        let html = render_html(&empty_report_with_nan_bin());
        assert_eq!(html.matches("<svg").count(), 0);
        assert_eq!(html.matches("class=\"placeholder\"").count(), 5);
        assert!(html.contains("<title>Evaluation report</title>"));
        assert!(html.contains("One bin was left out"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn non_finite_points_are_left_out() {
        let report = ReportData {
            roc: vec![
                (0.0, 0.0),
                (f64::NAN, 0.5),
                (0.5, f64::INFINITY),
                (1.0, 1.0),
            ],
            pr: vec![(f64::NAN, f64::NAN)],
            roc_auc: Some(f64::NAN),
            positive_rate: Some(f64::NAN),
            lead_times_hours: vec![f64::NAN, -1.0, 0.0, 0.0],
            importances: vec![(String::from("a"), f64::NAN), (String::from("b"), 0.0)],
            ..ReportData::default()
        };
        let html = render_html(&report);
        // ROC, lead time and importance are drawn. PR has no finite point and
        // the report has no reliability bins.
        assert_eq!(html.matches("<svg").count(), 3);
        assert_eq!(html.matches("class=\"placeholder\"").count(), 2);
        assert!(html.contains("2 points were left out"));
        assert!(html.contains("AUC not available."));
        assert!(html.contains("2 negative or missing lead times were left out"));
        assert!(html.contains("One feature with a missing gain was left out"));
    }

    #[test]
    fn single_values_render_charts() {
        let report = ReportData {
            roc: vec![(0.5, 0.5)],
            pr: vec![(0.5, 0.5)],
            reliability: vec![ReliabilityBin {
                mean_predicted: 0.0,
                observed_rate: 0.0,
                count: 0,
            }],
            lead_times_hours: vec![3.0],
            importances: vec![(String::from("only"), -2.0)],
            ..ReportData::default()
        };
        let html = render_html(&report);
        assert_eq!(html.matches("<svg").count(), 5);
    }

    #[test]
    fn extreme_values_show_placeholders() {
        let report = ReportData {
            lead_times_hours: vec![0.0, f64::MAX],
            importances: vec![(String::from("a"), 1e308), (String::from("b"), -1e308)],
            ..realistic_report()
        };
        let html = render_html(&report);
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("The lead times are too large to draw"));
        assert!(html.contains("The gains span too wide a range to draw"));
    }

    #[test]
    fn simplify_curve_bounds_points_and_keeps_ends() {
        let curve = realistic_report().roc;
        let simplified = simplify_curve(&curve, MAX_CURVE_POINTS);
        assert!(simplified.len() <= MAX_CURVE_POINTS);
        assert!(
            simplified.len() > 20,
            "kept only {} points",
            simplified.len()
        );
        assert_eq!(simplified.first(), curve.first());
        assert_eq!(simplified.last(), curve.last());
    }

    #[test]
    fn simplify_curve_keeps_step_corners() {
        // A staircase with 1000 points per step. Its corners carry the shape.
        let mut curve = Vec::new();
        for i in 0..=1000 {
            curve.push((0.0, i as f64 / 2000.0));
        }
        for i in 1..=1000 {
            curve.push((i as f64 / 1000.0, 0.5));
        }
        for i in 1..=1000 {
            curve.push((1.0, 0.5 + i as f64 / 2000.0));
        }
        let simplified = simplify_curve(&curve, 10);
        assert_eq!(
            simplified,
            vec![(0.0, 0.0), (0.0, 0.5), (1.0, 0.5), (1.0, 1.0)]
        );
    }

    #[test]
    fn simplify_curve_handles_duplicates() {
        let curve = vec![(0.5, 0.5); 1000];
        assert_eq!(simplify_curve(&curve, 10), vec![(0.5, 0.5), (0.5, 0.5)]);
    }

    #[test]
    fn histogram_bins_lead_times() {
        let histogram = Histogram::of_lead_times(&[0.0, 0.5, 1.0, 23.9, 24.0]);
        assert_eq!(histogram.bin_width, 1.0);
        assert_eq!(histogram.counts.len(), 25);
        assert_eq!(histogram.counts[0], 2);
        assert_eq!(histogram.counts[1], 1);
        assert_eq!(histogram.counts[23], 1);
        assert_eq!(histogram.counts[24], 1);

        let histogram = Histogram::of_lead_times(&[0.0, 48.0]);
        assert_eq!(histogram.bin_width, 2.0);
        assert_eq!(histogram.counts.len(), 25);

        let histogram = Histogram::of_lead_times(&[0.0, 480.0]);
        assert_eq!(histogram.bin_width, 10.0);
        assert_eq!(histogram.counts.len(), 49);

        let histogram = Histogram::of_lead_times(&[0.0]);
        assert_eq!(histogram.counts, vec![1]);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn nice_axis_max_rounds_up() {
        assert_eq!(nice_axis_max(0.0), 0.01);
        assert_eq!(nice_axis_max(0.312), 0.4);
        assert_eq!(nice_axis_max(0.2), 0.25);
        assert_eq!(nice_axis_max(0.97), 1.0);
        assert_eq!(nice_axis_max(5.0), 1.0);
        assert_eq!(nice_axis_max(f64::NAN), 1.0);
    }

    #[test]
    fn shorten_label_keeps_ends() {
        assert_eq!(shorten_label("short", 40), "short");
        let name = "resp_rate_trend_slope_over_last_twelve_hours_normalised";
        let short = shorten_label(name, 40);
        assert_eq!(short.chars().count(), 40);
        assert!(short.starts_with("resp_rate_trend_slope_ov"));
        assert!(short.ends_with("rs_normalised"));
        let accented = "é".repeat(50);
        assert_eq!(shorten_label(&accented, 10).chars().count(), 10);
    }

    #[test]
    fn looks_numeric_cases() {
        for cell in [
            "0.81",
            "-3",
            "<0.001",
            "12.5 %",
            "1,024",
            ".5",
            "0.81 (0.79-0.83)",
        ] {
            assert!(looks_numeric(cell), "{cell} should be numeric");
        }
        for cell in ["AUROC", "Age < 65", "n/a", ".", "-x"] {
            assert!(!looks_numeric(cell), "{cell} should not be numeric");
        }
    }

    #[test]
    fn format_number_ranges() {
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(1800.0), "1800");
        assert_eq!(format_number(12.345), "12.35");
        assert_eq!(format_number(0.1234), "0.123");
        assert_eq!(format_number(2.5e7), "2.50e7");
    }
}
