//! The report's SVG plot: Mpps against rule count.

use std::path::Path;

use anyhow::Result;

use super::{Kind, Report, ThroughputRow};

impl Report {
    /// Mpps against rule count: one line per receiver kind, the ceiling as a flat line.
    /// Each point is its row's paired ratio to the ceiling times the run's median ceiling,
    /// so drift during the run does not bend the lines.
    pub fn plot(&self, path: &Path) -> Result<()> {
        use plotters::prelude::*;

        let ceiling = self.ceiling_mpps();
        let scaled = |r: &ThroughputRow| Some(r.result.as_ref().ok()?.to_ceiling * ceiling?);
        let series = |kind: Kind| -> Vec<(f64, f64)> {
            let mut v: Vec<(f64, f64)> = self
                .throughput
                .iter()
                .filter(|r| r.kind == kind && r.table.is_none())
                .filter_map(|r| Some((r.rules? as f64, scaled(r)?)))
                .collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        let lines = [
            (Kind::XdpwallDrop, "xdpwall (drop path)", RGBColor(0x1f, 0x77, 0xb4)),
            (Kind::NftSet, "nftables verdict map", RGBColor(0x2c, 0xa0, 0x2c)),
            (Kind::NftLinear, "nftables linear", RGBColor(0xd6, 0x27, 0x28)),
            (Kind::XdpFilter, "xdp-filter (as many addresses)", RGBColor(0xff, 0x7f, 0x0e)),
        ];
        let table_point: Vec<(f64, f64)> = self
            .throughput
            .iter()
            .filter(|r| r.kind == Kind::XdpwallDrop && r.table.is_some())
            .filter_map(|r| Some((r.rules? as f64, scaled(r)?)))
            .collect();
        let top = self.throughput.iter().filter_map(scaled).fold(ceiling.unwrap_or(0.0), f64::max).max(0.1) * 1.15;

        let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Throughput against rule count (veth, 1 receiving core)", ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((1f64..8192f64).log_scale(), 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("rules (log scale)")
            .y_desc("Mpps (paired ratio × median ceiling)")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        if let Some(c) = ceiling {
            let grey = RGBColor(0x55, 0x55, 0x55);
            chart
                .draw_series(LineSeries::new([(1.0, c), (8192.0, c)], grey.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(format!("XDP_DROP ceiling ({c:.2} Mpps)"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], grey.stroke_width(2)));
        }
        for (kind, name, color) in lines {
            let points = series(kind);
            if points.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(|e| err(&e))?;
        }
        if !table_point.is_empty() {
            let color = RGBColor(0x94, 0x67, 0xbd);
            chart
                .draw_series(table_point.into_iter().map(|p| TriangleMarker::new(p, 7, color.filled())))
                .map_err(|e| err(&e))?
                .label("xdpwall, + 1M-entry table")
                .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 6, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}
