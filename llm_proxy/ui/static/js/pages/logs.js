// Logs: the request log and the failed-attempt (error) log, with filters and paging; a
// request's detail view (#/logs/request/<id>). Filters live in the URL, so a view can be shared.

import { api, query } from "../api.js";
import { pager } from "./shared.js";
import { clear, field, fmtMs, fmtNumber, fmtTime, fmtUsd, h, notice, show, statusBadge, table } from "../dom.js";

const REQUEST_FILTERS = ["key", "team", "model", "provider", "status", "cache", "request_id", "trace_id", "since", "until"];
// What the response cache said of a request (the `cache` column).
const CACHE_RESULTS = ["hit", "miss", "bypass"];
const ERROR_FILTERS = ["provider", "outcome", "status", "request_id", "since", "until"];

function toIso(local) {
  // <input type=datetime-local> gives local time without a zone; the API takes ISO 8601.
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function fromIso(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function filterForm(kind, params, navigate) {
  const names = kind === "errors" ? ERROR_FILTERS : REQUEST_FILTERS;
  const inputs = {};
  const fields = names.map((name) => {
    let input;
    if (name === "status") {
      const options = kind === "errors" ? ["", "4xx", "5xx"] : ["", "200", "4xx", "5xx", "error"];
      input = h("select", { name }, options.map((o) => h("option", { value: o, selected: params.get(name) === o }, o || "any")));
    } else if (name === "cache") {
      input = h("select", { name }, ["", ...CACHE_RESULTS].map((o) => h("option", { value: o, selected: (params.get(name) || "") === o }, o || "any")));
    } else if (name === "since" || name === "until") {
      input = h("input", { name, type: "datetime-local", value: fromIso(params.get(name)) });
    } else {
      input = h("input", { name, value: params.get(name) || "", autocomplete: "off" });
    }
    inputs[name] = input;
    const label = { request_id: "Request id", trace_id: "Trace id", since: "From", until: "Until" }[name] || name[0].toUpperCase() + name.slice(1);
    return field(label, input);
  });
  return h(
    "form",
    {
      class: "filters",
      role: "search",
      "aria-label": "Filter the log",
      onsubmit: (event) => {
        event.preventDefault();
        const values = {};
        for (const [name, input] of Object.entries(inputs)) {
          values[name] = name === "since" || name === "until" ? toIso(input.value) : input.value.trim();
        }
        navigate(`logs${kind === "errors" ? "/errors" : ""}${query(values)}`);
      },
    },
    fields,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Filter"),
      h("button", { type: "button", class: "secondary", onclick: () => navigate(kind === "errors" ? "logs/errors" : "logs") }, "Clear"),
    ),
  );
}

function requestRows(data) {
  return data.map((r) =>
    h(
      "tr",
      { dataset: { requestId: r.request_id } },
      h("td", { class: "nowrap" }, fmtTime(r.ts)),
      h("td", {}, statusBadge(r.status)),
      h("td", {}, show(r.key_name)),
      h("td", {}, show(r.team)),
      h("td", {}, show(r.model)),
      h("td", {}, show(r.provider)),
      h("td", { class: "num" }, fmtMs(r.duration_ms)),
      h("td", { class: "num" }, fmtMs(r.ttft_ms)),
      h("td", { class: "num" }, fmtNumber((r.prompt_tokens || 0) + (r.completion_tokens || 0))),
      h("td", { class: "num" }, fmtUsd(r.cost_usd)),
      h("td", { class: "mono" }, h("a", { href: `#/logs/request/${encodeURIComponent(r.request_id)}` }, r.request_id)),
    ),
  );
}

function errorRows(data) {
  return data.map((e) =>
    h(
      "tr",
      {},
      h("td", { class: "nowrap" }, fmtTime(e.ts)),
      h("td", {}, show(e.provider)),
      h("td", {}, show(e.outcome)),
      h("td", {}, e.upstream_status ? statusBadge(e.upstream_status) : "–"),
      h("td", { class: "wrap" }, show(e.detail)),
      h("td", { class: "mono" }, e.request_id ? h("a", { href: `#/logs/request/${encodeURIComponent(e.request_id)}` }, e.request_id) : "–"),
    ),
  );
}

// The request detail's labels, by request log column (README "Request log" names each).
const FIELD_LABELS = {
  ts: "Time",
  request_id: "Request id",
  key_name: "Key",
  team: "Team",
  client: "Client",
  method: "Method",
  path: "Path",
  model: "Model requested",
  model_sent: "Model sent upstream",
  provider: "Provider",
  attempts: "Providers tried",
  status: "Status",
  duration_ms: "Duration",
  ttft_ms: "Time to first token",
  prompt_tokens: "Prompt tokens",
  completion_tokens: "Completion tokens",
  cost_usd: "Cost",
  streamed: "Streamed",
  error_code: "Error code",
  prompt: "Prompt",
  completion: "Completion",
  trace_id: "Trace id",
  cache: "Cache",
};

// A column the table above does not know yet still gets words, not an identifier.
function fieldLabel(name) {
  const words = name.replace(/_ms$/, "").replace(/_usd$/, "").replaceAll("_", " ");
  return FIELD_LABELS[name] || words.charAt(0).toUpperCase() + words.slice(1);
}

function fieldValue(name, value) {
  if (name === "ts") return `${fmtTime(value)} (${value})`;
  if (value === null || value === undefined) return show(value);
  if (name.endsWith("_ms")) return fmtMs(value);
  if (name === "cost_usd") return fmtUsd(value);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "–";
  return show(value);
}

async function detail(root, requestId) {
  root.append(h("p", {}, h("a", { href: "#/logs" }, "← All requests")));
  let answer;
  try {
    answer = await api("GET", `/logs/requests/${encodeURIComponent(requestId)}`);
  } catch (error) {
    root.append(notice("error", error.message));
    return;
  }
  for (const r of answer.data) {
    const rows = Object.entries(r).filter(([name]) => name !== "id");
    root.append(
      h(
        "section",
        { class: "card", "aria-label": `Request ${r.request_id}` },
        h("h2", {}, `Request ${r.request_id}`),
        h(
          "dl",
          { class: "detail" },
          rows.map(([name, value]) => [
            h("dt", { dataset: { field: name } }, fieldLabel(name)),
            h("dd", { class: name === "prompt" || name === "completion" ? "pre" : null }, fieldValue(name, value)),
          ]),
        ),
      ),
    );
  }
  root.append(h("h2", {}, "Failed attempts"));
  root.append(
    answer.errors.length
      ? table(
          ["Time", "Provider", "Outcome", "Upstream status", "Detail", "Answer (first 2 KB)"],
          answer.errors.map((e) =>
            h(
              "tr",
              {},
              h("td", {}, fmtTime(e.ts)),
              h("td", {}, show(e.provider)),
              h("td", {}, show(e.outcome)),
              h("td", {}, show(e.upstream_status)),
              h("td", { class: "wrap" }, show(e.detail)),
              h("td", { class: "wrap pre" }, show(e.body)),
            ),
          ),
          "Failed attempts",
        )
      : h("p", { class: "muted" }, "None: the first attempt answered."),
  );
}

export async function render(root, ctx) {
  const [sub, requestId] = ctx.rest;
  if (sub === "request" && requestId) return detail(root, requestId);
  const kind = sub === "errors" ? "errors" : "requests";
  const tabs = h(
    "div",
    { class: "tabs", role: "navigation", "aria-label": "Log" },
    h("a", { href: "#/logs", "aria-current": kind === "requests" ? "page" : null }, "Requests"),
    h("a", { href: "#/logs/errors", "aria-current": kind === "errors" ? "page" : null }, "Failed attempts"),
  );
  const results = h("div");
  root.append(tabs, filterForm(kind, ctx.params, ctx.navigate), results);

  const filters = {};
  for (const name of kind === "errors" ? ERROR_FILTERS : REQUEST_FILTERS) filters[name] = ctx.params.get(name) || "";
  const pages = [""]; // the cursor of each page shown, for "Newer"
  async function load(cursor) {
    let answer;
    try {
      answer = await api("GET", `/logs/${kind}${query({ ...filters, cursor, limit: 50 })}`);
    } catch (error) {
      clear(results).append(notice(error.status === 409 ? "warn" : "error", error.message));
      return;
    }
    const headers =
      kind === "errors"
        ? ["Time", "Provider", "Outcome", "Upstream status", "Detail", "Request id"]
        : ["Time", "Status", "Key", "Team", "Model", "Provider", "Duration", "TTFT", "Tokens", "Cost", "Request id"];
    clear(results).append(
      answer.data.length
        ? table(headers, kind === "errors" ? errorRows(answer.data) : requestRows(answer.data), kind === "errors" ? "Failed attempts" : "Requests")
        : h("p", { class: "muted" }, "Nothing logged matches."),
      pager(pages, answer.next_cursor, load),
    );
  }
  await load("");
}
