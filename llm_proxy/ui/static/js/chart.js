// A small SVG line chart: series of {t, value} over a shared time axis. No library, no canvas:
// the chart scales with its box and prints in the page's own colours.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
// The drawing's width in SVG units; narrower on a phone so that its labels keep their size.
const WIDTH = window.matchMedia("(max-width: 640px)").matches ? 360 : 600;
const HEIGHT = 180;
const PAD = { left: 52, right: 10, top: 10, bottom: 24 };
export const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) if (child) el.append(child);
  return el;
}

function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// `lineChart({title, unit, format, series: [{name, points: [{t, value}]}]})`: a <figure>.
export function lineChart({ title, format = (v) => String(v), series }) {
  const all = series.flatMap((s) => s.points.filter((p) => p.value !== null && p.value !== undefined));
  const t0 = all.length ? Math.min(...all.map((p) => p.t)) : 0;
  const t1 = all.length ? Math.max(...all.map((p) => p.t)) : 1;
  const top = niceMax(all.length ? Math.max(...all.map((p) => p.value)) : 0);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + (t1 > t0 ? ((t - t0) / (t1 - t0)) * plotW : plotW);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;

  const grid = [0, 0.5, 1].map((f) =>
    svg(
      "g",
      {},
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(top * f), y2: y(top * f), class: "grid" }),
      svg("text", { x: PAD.left - 6, y: y(top * f) + 4, "text-anchor": "end", class: "axis" }, document.createTextNode(format(top * f))),
    ),
  );
  const axis = all.length
    ? [
        svg("text", { x: PAD.left, y: HEIGHT - 6, class: "axis" }, document.createTextNode(clock(t0))),
        svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end", class: "axis" }, document.createTextNode(clock(t1))),
      ]
    : [svg("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "axis" }, document.createTextNode("No data yet"))];
  const lines = series.map((s, i) => {
    // A gap (null) breaks the line rather than drawing it to zero.
    const segments = [];
    let current = [];
    for (const p of s.points) {
      if (p.value === null || p.value === undefined) {
        if (current.length) segments.push(current);
        current = [];
      } else {
        current.push(`${x(p.t).toFixed(1)},${y(p.value).toFixed(1)}`);
      }
    }
    if (current.length) segments.push(current);
    const colour = PALETTE[i % PALETTE.length];
    return svg(
      "g",
      { stroke: colour, fill: colour },
      ...segments.map((points) =>
        points.length === 1
          ? svg("circle", { cx: points[0].split(",")[0], cy: points[0].split(",")[1], r: 2.5 })
          : svg("polyline", { points: points.join(" "), fill: "none", "stroke-width": 2, "stroke-linejoin": "round" }),
      ),
    );
  });

  const latest = series
    .map((s) => {
      const last = [...s.points].reverse().find((p) => p.value !== null && p.value !== undefined);
      return `${s.name}: ${last ? format(last.value) : "no data"}`;
    })
    .join(", ");
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${title}. Latest: ${latest}`, preserveAspectRatio: "none" },
    ...grid,
    ...axis,
    ...lines,
  );
  const legend = h(
    "ul",
    { class: "legend" },
    series.map((s, i) => h("li", {}, h("span", { class: "swatch", dataset: { colour: String(i % PALETTE.length) } }), s.name)),
  );
  return h("figure", { class: "chart" }, h("figcaption", {}, title), chart, legend);
}

// A day's label on the axis: "Dec 6" (the days are UTC dates, "2026-12-06").
function dayLabel(day) {
  return new Date(`${day}T00:00:00Z`).toLocaleDateString([], { month: "short", day: "numeric", timeZone: "UTC" });
}

// `dayChart({title, summary, bars, line, limit, format})`: one bar a day (`bars: {name,
// days: [{day, value}]}`); `line` (optional, `{name, points: [{value, restart}]}` on the same
// days): a running total drawn over the bars, such as the spend so far in a budget's period,
// broken where `restart` is set; `limit` (optional, `{name, value}`): a dashed rule, such as
// the budget. `summary`: the chart in words, for a screen reader. A <figure>.
export function dayChart({ title, summary = "", bars, line = null, limit = null, format = (v) => String(v) }) {
  const days = bars.days;
  const highest = Math.max(0, ...days.map((d) => d.value || 0), ...(line ? line.points.map((p) => p.value || 0) : []), limit ? limit.value : 0);
  const top = niceMax(highest);
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const step = plotW / Math.max(1, days.length);
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const centre = (i) => PAD.left + step * (i + 0.5);
  const width = Math.max(1, step * 0.7);

  const parts = [0, 0.5, 1].map((f) =>
    svg(
      "g",
      {},
      svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(top * f), y2: y(top * f), class: "grid" }),
      svg("text", { x: PAD.left - 6, y: y(top * f) + 4, "text-anchor": "end", class: "axis" }, document.createTextNode(format(top * f))),
    ),
  );
  if (days.length) {
    parts.push(
      svg("text", { x: PAD.left, y: HEIGHT - 6, class: "axis" }, document.createTextNode(dayLabel(days[0].day))),
      svg("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end", class: "axis" }, document.createTextNode(dayLabel(days[days.length - 1].day))),
    );
  }
  const legend = [{ name: bars.name, colour: 0 }];
  parts.push(
    svg(
      "g",
      { fill: PALETTE[0] },
      ...days.flatMap((d, i) => {
        if (!(d.value > 0)) return [];
        const height = Math.max(1, PAD.top + plotH - y(d.value));
        return [svg("rect", { x: (centre(i) - width / 2).toFixed(1), y: (PAD.top + plotH - height).toFixed(1), width: width.toFixed(1), height: height.toFixed(1) })];
      }),
    ),
  );
  if (line) {
    const segments = [];
    let current = [];
    line.points.forEach((p, i) => {
      if (p.restart && current.length) {
        segments.push(current);
        current = [];
      }
      current.push([centre(i).toFixed(1), y(p.value || 0).toFixed(1)]);
    });
    if (current.length) segments.push(current);
    parts.push(
      svg(
        "g",
        { stroke: PALETTE[1], fill: PALETTE[1] },
        ...segments.map((points) =>
          points.length === 1
            ? svg("circle", { cx: points[0][0], cy: points[0][1], r: 2.5 })
            : svg("polyline", { points: points.map((p) => p.join(",")).join(" "), fill: "none", "stroke-width": 2, "stroke-linejoin": "round" }),
        ),
      ),
    );
    legend.push({ name: line.name, colour: 1 });
  }
  if (limit) {
    parts.push(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(limit.value), y2: y(limit.value), stroke: PALETTE[7], "stroke-width": 1.5, "stroke-dasharray": "6 4" }));
    legend.push({ name: limit.name, colour: 7 });
  }
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": summary ? `${title}. ${summary}` : title, preserveAspectRatio: "none" }, ...parts);
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, title),
    chart,
    h("ul", { class: "legend" }, legend.map((l) => h("li", {}, h("span", { class: "swatch", dataset: { colour: String(l.colour) } }), l.name))),
  );
}
