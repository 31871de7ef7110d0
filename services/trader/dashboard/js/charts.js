// Charts with Apache ECharts (vendor/echarts.min.js, a global). Colours are the Okabe-Ito
// palette, told apart by colour-blind readers; lines also differ by dash and marker, and
// every series is named in the legend and the tooltip.

import { toMs } from "./dom.js";

export const PALETTE = {
  blue: "#0072B2", orange: "#E69F00", sky: "#56B4E9", green: "#009E73",
  yellow: "#F0E442", vermillion: "#D55E00", purple: "#CC79A7", black: "#000000", grey: "#6b6b6b",
};
const SERIES_COLOURS = [PALETTE.blue, PALETTE.orange, PALETTE.green, PALETTE.vermillion, PALETTE.purple,
  PALETTE.sky, PALETTE.black, PALETTE.yellow];
const DASHES = ["solid", "dashed", "dotted", [8, 3, 2, 3], [2, 2], [12, 4]];
const SYMBOLS = ["circle", "rect", "triangle", "diamond", "roundRect", "pin"];

const charts = new Map(); // element -> chart

/** Draw `option` into `el` (a fresh chart each time: options never leak between renders). */
export function draw(el, option) {
  let chart = charts.get(el);
  if (!chart || chart.isDisposed()) {
    chart = echarts.init(el, null, { renderer: "canvas" });
    charts.set(el, chart);
  }
  chart.setOption({
    useUTC: true,
    animation: false,
    color: SERIES_COLOURS,
    aria: { enabled: true, decal: { show: true } }, // a text description for screen readers; patterns on areas
    textStyle: { fontFamily: "system-ui, sans-serif" },
    ...option,
  }, { notMerge: true });
  el.dataset.rendered = "true";
  return chart;
}

/** Free the charts whose element left the page. */
export function sweep() {
  for (const [el, chart] of charts) {
    if (!el.isConnected) {
      chart.dispose();
      charts.delete(el);
    }
  }
}

addEventListener("resize", () => {
  for (const chart of charts.values()) if (!chart.isDisposed()) chart.resize();
});

/** Resize the charts inside `root` (after it became visible). */
export function resizeWithin(root) {
  for (const [el, chart] of charts) if (root.contains(el) && !chart.isDisposed()) chart.resize();
}

/** A named line over a time axis: points = [[iso, value], ...]. */
export function line(name, points, i = 0, extra = {}) {
  return {
    name, type: "line", showSymbol: points.length < 60, symbol: SYMBOLS[i % SYMBOLS.length], symbolSize: 6,
    data: points.map(([t, v]) => [toMs(t), v]),
    lineStyle: { width: 2, type: DASHES[i % DASHES.length], color: SERIES_COLOURS[i % SERIES_COLOURS.length] },
    itemStyle: { color: SERIES_COLOURS[i % SERIES_COLOURS.length] },
    ...extra,
  };
}

/** Shared axis options: time on x, numbers on y, a zoom that keyboard and wheel can drive. */
export function timeAxes({ yName = "", yFormatter, zoom = true } = {}) {
  return {
    grid: { left: 64, right: 24, top: 48, bottom: zoom ? 72 : 40, containLabel: false },
    xAxis: { type: "time" },
    yAxis: { type: "value", scale: true, name: yName, axisLabel: yFormatter ? { formatter: yFormatter } : {} },
    tooltip: { trigger: "axis", valueFormatter: (v) => (typeof v === "number" ? v.toLocaleString("en-US", { maximumFractionDigits: 4 }) : v) },
    legend: { top: 8, type: "scroll" },
    dataZoom: zoom ? [{ type: "inside" }, { type: "slider", bottom: 12, height: 24 }] : [],
  };
}
