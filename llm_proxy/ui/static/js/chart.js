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
