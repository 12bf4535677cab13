// Dashboard: the last 15 minutes or hour from GET /admin/v1/stats (the proxy's own counters,
// no Prometheus needed), refreshed every 5 seconds; provider health and breaker state.

import { api, query } from "../api.js";
import { lineChart } from "../chart.js";
import { clear, field, fmtMs, fmtNumber, fmtPercent, fmtUsd, h, notice, table } from "../dom.js";

const REFRESH_MS = 5000;

function tile(label, value, id) {
  return h("div", { class: "tile", id }, h("div", { class: "tile-label" }, label), h("div", { class: "tile-value" }, value));
}

function sum(steps, name) {
  return steps.reduce((total, s) => total + (s[name] || 0), 0);
}

function points(steps, name) {
  return steps.map((s) => ({ t: s.t, value: s[name] }));
}

// A rate (requests_per_sec, tokens_per_min) over the steps of the last `secs`, weighted by
// each step's length: the newest step alone may be a fraction of a second long.
function recentRate(steps, name, secs = 30) {
  if (!steps.length) return null;
  const since = steps[steps.length - 1].t - secs;
  const recent = steps.filter((s) => s.t > since);
  const span = recent.reduce((total, s) => total + s.secs, 0);
  return span > 0 ? recent.reduce((total, s) => total + s[name] * s.secs, 0) / span : null;
}

// Dollars on an axis: short ($0.005, not $0.005000).
function usdAxis(value) {
  if (!value) return "$0";
  return value < 0.01 ? `$${Number(value.toPrecision(2))}` : `$${value.toFixed(2)}`;
}

function latest(steps, name) {
  for (let i = steps.length - 1; i >= 0; i -= 1) if (steps[i][name] !== null) return steps[i][name];
  return null;
}

export async function render(root) {
  const windowSelect = h(
    "select",
    {},
    h("option", { value: "900" }, "Last 15 minutes"),
    h("option", { value: "3600" }, "Last hour"),
  );
  const groupSelect = h(
    "select",
    {},
    h("option", { value: "" }, "All traffic"),
    h("option", { value: "provider" }, "Per provider"),
    h("option", { value: "key" }, "Per key"),
  );
  const updated = h("span", { class: "muted", "aria-live": "polite" });
  const controls = h("div", { class: "controls" }, field("Window", windowSelect), field("Show", groupSelect), updated);
  const body = h("div", { class: "dashboard" });
  root.append(controls, body);

  let timer = null;
  let stopped = false;

  async function refresh() {
    clearTimeout(timer);
    try {
      const stats = await api("GET", `/stats${query({ window: windowSelect.value, by: groupSelect.value })}`);
      if (stopped) return;
      draw(stats);
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (stopped) return;
      clear(body).append(notice("error", `Stats unavailable: ${error.message}`));
    }
    if (!stopped) timer = setTimeout(refresh, REFRESH_MS);
  }

  function draw(stats) {
    const all = stats.series.all || [];
    const groups = Object.keys(stats.series).filter((name) => name !== "all");
    const minutes = Math.round(stats.window_secs / 60);
    const requests = sum(all, "requests");
    const errors = sum(all, "errors");
    const tiles = h(
      "div",
      { class: "tiles" },
      tile(`Requests (${minutes} min)`, fmtNumber(requests), "tile-requests"),
      tile("Requests/s (30 s)", fmtNumber(recentRate(all, "requests_per_sec"), 2), "tile-rps"),
      tile("Errors (5xx)", `${fmtNumber(errors)} · ${fmtPercent(requests ? errors / requests : 0)}`, "tile-errors"),
      tile("p95 latency (latest)", fmtMs(latest(all, "p95_ms")), "tile-p95"),
      tile("Tokens/min (30 s)", fmtNumber(recentRate(all, "tokens_per_min")), "tile-tokens"),
      tile(`Cost (${minutes} min)`, fmtUsd(sum(all, "cost_usd")), "tile-cost"),
      tile("Config version", String(stats.config_version), "tile-version"),
    );
    const named = groups.length ? groups.map((g) => ({ name: g, steps: stats.series[g] })) : [{ name: "all", steps: all }];
    const per = (metric) => named.map((g) => ({ name: g.name, points: points(g.steps, metric) }));
    const latency = groups.length
      ? per("p95_ms")
      : [
          { name: "p50", points: points(all, "p50_ms") },
          { name: "p95", points: points(all, "p95_ms") },
          { name: "p99", points: points(all, "p99_ms") },
        ];
    const ttft = groups.length
      ? per("ttft_p95_ms")
      : [
          { name: "p50", points: points(all, "ttft_p50_ms") },
          { name: "p95", points: points(all, "ttft_p95_ms") },
        ];
    const charts = h(
      "div",
      { class: "charts" },
      lineChart({ title: "Requests per second", series: per("requests_per_sec"), format: (v) => fmtNumber(v, 1) }),
      lineChart({ title: groups.length ? "Latency p95" : "Latency", series: latency, format: fmtMs }),
      lineChart({ title: groups.length ? "Time to first token p95" : "Time to first token", series: ttft, format: fmtMs }),
      lineChart({ title: "Tokens per minute", series: per("tokens_per_min"), format: (v) => fmtNumber(v) }),
      lineChart({ title: "Error rate (5xx)", series: per("error_rate"), format: fmtPercent }),
      lineChart({ title: "Cost per step (USD)", series: per("cost_usd"), format: usdAxis }),
    );
    const providers = table(
      ["Provider", "Health", "Breaker"],
      stats.providers.map((p) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, p.name),
          h("td", {}, h("span", { class: `badge ${p.healthy ? "good" : "bad"}` }, p.healthy ? "healthy" : "unhealthy")),
          h("td", {}, h("span", { class: `badge ${p.state === "healthy" ? "good" : p.state === "half_open" ? "warn" : "bad"}` }, p.state || "–")),
        ),
      ),
      "Providers",
    );
    const health = stats.providers.length ? providers : h("p", { class: "muted" }, "No providers configured.");
    clear(body).append(tiles, h("section", { "aria-label": "Providers" }, h("h2", {}, "Providers"), health), h("h2", {}, "Traffic"), charts);
  }

  windowSelect.addEventListener("change", refresh);
  groupSelect.addEventListener("change", refresh);
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
