// Dashboard: the last 15 minutes or hour from GET /admin/v1/stats (the proxy's own counters,
// no Prometheus needed), refreshed every 5 seconds; provider health and breaker state; the
// response cache from GET /admin/v1/cache, with a purge.

import { api, query } from "../api.js";
import { lineChart } from "../chart.js";
import { clear, confirmDialog, field, fmtMs, fmtNumber, fmtPercent, fmtUsd, h, notice, table } from "../dom.js";

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

function fmtBytes(value) {
  if (value === null || value === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = Number(value);
  let unit = 0;
  while (v >= 1024 && unit < units.length - 1) {
    v /= 1024;
    unit += 1;
  }
  return `${unit ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[unit]}`;
}

// The response cache's section. Its tiles are redrawn at each refresh; the purge button and
// its status line stay (a refresh never takes the focus away from the button). `reload`: read
// the stats again (after a purge).
function cacheSection(reload) {
  const content = h("div");
  const status = h("div", { "aria-live": "polite" });
  const purge = h(
    "button",
    {
      type: "button",
      class: "danger",
      hidden: true,
      onclick: async () => {
        const sure = await confirmDialog(
          "Purge the response cache?",
          "Every cached answer is removed (with the redis backend, for every instance), so the next identical requests go upstream again. The hit and miss counts are kept.",
          "Purge",
        );
        if (!sure) return;
        purge.disabled = true;
        clear(status);
        try {
          const answer = await api("DELETE", "/cache");
          status.append(notice("ok", `Purged ${fmtNumber(answer.purged)} ${answer.purged === 1 ? "entry" : "entries"}.`));
          await reload();
        } catch (error) {
          status.append(notice("error", `Not purged: ${error.message}`));
        } finally {
          purge.disabled = false;
        }
      },
    },
    "Purge cache",
  );
  const el = h("section", { "aria-label": "Cache", id: "cache" }, h("h2", {}, "Cache"), content, h("div", { class: "toolbar" }, purge), status);

  function draw(cache) {
    purge.hidden = !cache.enabled;
    if (!cache.enabled) {
      clear(content).append(h("p", { class: "muted", id: "cache-off" }, "The response cache is off: the configuration has no cache: section, or it says enabled: false."));
      return;
    }
    const looked = cache.hits + cache.misses;
    const size = cache.max_bytes ? `${fmtBytes(cache.bytes)} of ${fmtBytes(cache.max_bytes)}` : fmtBytes(cache.bytes);
    clear(content).append(
      h(
        "div",
        { class: "tiles" },
        tile("Status", `on · ${cache.backend}`, "tile-cache"),
        tile("Entries", fmtNumber(cache.entries), "tile-cache-entries"),
        tile("Size", size, "tile-cache-bytes"),
        tile("Hit ratio", looked ? fmtPercent(cache.hits / looked) : "–", "tile-cache-ratio"),
        tile("Hits · misses · bypasses", `${fmtNumber(cache.hits)} · ${fmtNumber(cache.misses)} · ${fmtNumber(cache.bypasses)}`, "tile-cache-counts"),
      ),
      h(
        "p",
        { class: "hint" },
        cache.backend === "redis" ? "Entries and size: in Redis, every instance's." : "Entries and size: this instance's memory.",
        " Hits, misses and bypasses: this instance's since it started; hit ratio = hits ÷ (hits + misses).",
      ),
    );
  }

  function failed(error) {
    purge.hidden = true;
    clear(content).append(notice("error", `Cache stats unavailable: ${error.message}`));
  }

  return { el, draw, failed };
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
    h("option", { value: "team" }, "Per team"),
  );
  const updated = h("span", { class: "muted", "aria-live": "polite" });
  const controls = h("div", { class: "controls" }, field("Window", windowSelect), field("Show", groupSelect), updated);
  const overview = h("div");
  const cache = cacheSection(() => refreshCache());
  const traffic = h("div");
  const body = h("div", { class: "dashboard" }, overview, cache.el, traffic);
  root.append(controls, body);

  let timer = null;
  let stopped = false;

  async function refreshCache() {
    try {
      const answer = await api("GET", "/cache");
      if (!stopped) cache.draw(answer);
    } catch (error) {
      if (!stopped) cache.failed(error);
    }
  }

  async function refresh() {
    clearTimeout(timer);
    const cached = refreshCache();
    try {
      const stats = await api("GET", `/stats${query({ window: windowSelect.value, by: groupSelect.value })}`);
      if (stopped) return;
      draw(stats);
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      if (stopped) return;
      clear(overview).append(notice("error", `Stats unavailable: ${error.message}`));
      clear(traffic);
    }
    await cached;
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
    clear(overview).append(tiles, h("section", { "aria-label": "Providers" }, h("h2", {}, "Providers"), health));
    clear(traffic).append(h("h2", {}, "Traffic"), charts);
  }

  windowSelect.addEventListener("change", refresh);
  groupSelect.addEventListener("change", refresh);
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
