// Routing: what happens when a model's providers fail (fallback chains), how attempts are
// retried and bounded, how a provider is chosen (strategies), and which requests go elsewhere
// (rules). Read from GET /routing (the `routing:` section as the YAML file would give it, every
// default written out). In database mode the whole section is edited as JSON and saved with
// PUT /routing: the server validates it and names the field it refuses; a refused or
// unparsable edit changes nothing.

import { api } from "../api.js";
import { append, clear, field, h, notice, table } from "../dom.js";

const DEFAULT_RETRY = { attempts: null, on: ["5xx", "connect", "stream_error", "timeout", "429"], backoff_ms: 50, max_backoff_ms: 2000 };

const CHAINS = [
  ["fallbacks", "When a model's providers all fail", "Any failure before the first byte reaches the client: the next model is tried."],
  ["context_window_fallbacks", "When the prompt is too long", "The upstream said the context window was exceeded (or the prompt is above the model's context window)."],
  ["content_policy_fallbacks", "When the upstream refuses on content policy", "A content-filter refusal: the next model is tried."],
];

const STRATEGIES = {
  weighted: "weighted round robin over the providers",
  latency: "the provider with the lowest recent time to first byte",
  least_busy: "the provider with the fewest requests in flight",
  cost: "the cheapest provider for the model (by pricing)",
};

const EXAMPLE = {
  fallbacks: { "gpt-4o": ["gpt-4o-mini", "claude-sonnet"] },
  context_window_fallbacks: { "gpt-4o-mini": ["gpt-4.1"] },
  retry: { attempts: 3, on: ["connect", "timeout", "429", "5xx"], backoff_ms: 100, max_backoff_ms: 2000 },
  deadline_secs: 60,
  strategy: "weighted",
  models: { "gpt-4o": { strategy: "latency", deadline_secs: 30, context_window: 128000 } },
  rules: [{ name: "eu", match: { key: ["eu-*"] }, providers: ["azure-eu"] }],
};

const EXAMPLE_YAML = `routing:
  fallbacks: {gpt-4o: [gpt-4o-mini, claude-sonnet]}   # after the model's own providers fail
  context_window_fallbacks: {gpt-4o-mini: [gpt-4.1]}
  retry: {attempts: 3, on: [connect, timeout, "429", 5xx], backoff_ms: 100, max_backoff_ms: 2000}
  deadline_secs: 60
  strategy: weighted                 # or latency, least_busy, cost
  models:                            # per model or pattern, over the defaults above
    gpt-4o: {strategy: latency, deadline_secs: 30, context_window: 128000}
  rules:                             # first match wins
    - name: eu
      match: {key: [eu-*]}
      providers: [azure-eu]`;

function sameList(a, b) {
  return a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");
}

function sameRetry(a, b) {
  return a.attempts === b.attempts && sameList(a.on, b.on) && a.backoff_ms === b.backoff_ms && a.max_backoff_ms === b.max_backoff_ms;
}

// Nothing configured: what GET answers for a config without a `routing:` section.
function isEmpty(r) {
  const chains = CHAINS.every(([key]) => Object.keys(r[key] || {}).length === 0);
  return chains && Object.keys(r.models || {}).length === 0 && (r.rules || []).length === 0 &&
    r.strategy === "weighted" && r.deadline_secs === null && sameRetry(r.retry, DEFAULT_RETRY);
}

function attempts(retry) {
  return retry.attempts === null ? "max_attempts (the global setting)" : String(retry.attempts);
}

function backoff(retry) {
  return `${retry.backoff_ms} ms, doubling, at most ${retry.max_backoff_ms} ms`;
}

function deadline(secs) {
  return secs === null ? "none" : `${secs} s`;
}

function model(name) {
  return h("span", { class: "model mono" }, name);
}

// `gpt-4o → gpt-4o-mini → claude-sonnet`
function chainItem(from, chain) {
  const parts = [model(from)];
  for (const name of chain) parts.push(h("span", { class: "arrow", "aria-hidden": "true" }, "→"), h("span", { class: "visually-hidden" }, "then"), model(name));
  return h("li", { class: "chain", dataset: { chain: from } }, parts);
}

function fallbacksSection(r) {
  const groups = CHAINS.filter(([key]) => Object.keys(r[key] || {}).length).map(([key, title, hint]) =>
    h(
      "div",
      { class: "chain-group", dataset: { reason: key } },
      h("h3", {}, title),
      h("p", { class: "muted" }, hint),
      h("ul", { class: "chains", "aria-label": title }, Object.entries(r[key]).map(([from, chain]) => chainItem(from, chain))),
    ),
  );
  return h(
    "section",
    { class: "card routing", "aria-labelledby": "routing-fallbacks" },
    h("h2", { id: "routing-fallbacks" }, "Fallback chains"),
    groups.length ? groups : h("p", { class: "muted" }, "No fallbacks: a model whose providers all fail answers with the upstream's error."),
  );
}

function defaultsSection(r) {
  const row = (label, value) => [h("dt", {}, label), h("dd", { dataset: { setting: label } }, value)];
  return h(
    "section",
    { class: "card routing", "aria-labelledby": "routing-defaults" },
    h("h2", { id: "routing-defaults" }, "Defaults (every model without its own settings)"),
    h(
      "dl",
      { class: "detail" },
      row("Strategy", [h("strong", {}, r.strategy), ` — ${STRATEGIES[r.strategy] || ""}`]),
      row("Attempts", attempts(r.retry)),
      row("Retried on", r.retry.on.join(", ")),
      row("Backoff", backoff(r.retry)),
      row("Deadline", r.deadline_secs === null ? "none: each attempt's own timeouts only" : `${r.deadline_secs} s for every retry and fallback, until the first byte`),
    ),
  );
}

// Per model: each value, muted where it is the default's.
function modelsSection(r) {
  const entries = Object.entries(r.models || {});
  const cell = (text, same) => h("td", same ? { class: "muted", title: "the default" } : {}, text);
  const rows = entries.map(([name, m]) =>
    h(
      "tr",
      { dataset: { model: name } },
      h("th", { scope: "row", class: "mono" }, name),
      cell(m.strategy, m.strategy === r.strategy),
      cell(attempts(m.retry), m.retry.attempts === r.retry.attempts),
      cell(m.retry.on.join(", "), sameList(m.retry.on, r.retry.on)),
      cell(backoff(m.retry), m.retry.backoff_ms === r.retry.backoff_ms && m.retry.max_backoff_ms === r.retry.max_backoff_ms),
      cell(deadline(m.deadline_secs), m.deadline_secs === r.deadline_secs),
      cell(m.context_window === null ? "unknown" : `${m.context_window.toLocaleString()} tokens`, m.context_window === null),
    ),
  );
  return h(
    "section",
    { "aria-labelledby": "routing-models" },
    h("h2", { id: "routing-models" }, "Per-model settings"),
    entries.length
      ? table(["Model", "Strategy", "Attempts", "Retried on", "Backoff", "Deadline", "Context window"], rows, "Per-model settings")
      : h("p", { class: "muted" }, "None: every model has the defaults."),
  );
}

function conditions(match) {
  const parts = [];
  const list = (values) => values.join(" or ");
  if (match.key) parts.push(`key is ${list(match.key)}`);
  if (match.tags) parts.push(`tagged ${list(match.tags)}`);
  for (const [name, values] of Object.entries(match.header || {})) parts.push(`header ${name} is ${list(values)}`);
  if (match.model) parts.push(`model is ${list(match.model)}`);
  return parts.length ? parts.join(", and ") : "every request";
}

function destination(rule) {
  const parts = [];
  if (rule.model !== null && rule.model !== undefined) parts.push(`model ${rule.model}`);
  if (rule.providers) parts.push(`${rule.model ? "at " : ""}providers ${rule.providers.join(", ")} only`);
  return parts.join(" ");
}

function rulesSection(r) {
  const rules = r.rules || [];
  const rows = rules.map((rule, i) =>
    h(
      "tr",
      { dataset: { rule: rule.name } },
      h("td", { class: "num" }, String(i + 1)),
      h("th", { scope: "row" }, rule.name),
      h("td", { class: "wrap" }, conditions(rule.match || {})),
      h("td", { class: "wrap" }, destination(rule)),
    ),
  );
  return h(
    "section",
    { "aria-labelledby": "routing-rules" },
    h("h2", { id: "routing-rules" }, "Rules (in order: the first that matches decides)"),
    rules.length
      ? table(["#", "Name", "When", "Goes to"], rows, "Routing rules")
      : h("p", { class: "muted" }, "None: every request goes to its model's providers."),
  );
}

function emptyState(editable, startEditing) {
  return h(
    "section",
    { class: "card routing", "aria-labelledby": "routing-empty" },
    h("h2", { id: "routing-empty" }, "No routing configured"),
    h("p", {}, "Every request goes to its model's providers, chosen by weight; a failed attempt is retried at another provider (up to max_attempts), and when all fail the client gets the error."),
    h(
      "p",
      {},
      "Routing adds: fallback chains (when gpt-4o's providers fail, try gpt-4o-mini, then claude-sonnet; separate chains for a prompt too long and a content-policy refusal), retry policies with a deadline, a strategy per model (weighted, latency, least_busy, cost), and rules that send some requests (by key, tag or header) to chosen providers or another model.",
    ),
    editable
      ? [
          h("p", {}, "For example (the section as JSON; the same shape as the YAML file's routing:):"),
          h("pre", { class: "pre example" }, JSON.stringify(EXAMPLE, null, 2)),
          h("button", { type: "button", class: "primary", onclick: () => startEditing(EXAMPLE) }, "Start from this example"),
        ]
      : [h("p", {}, "For example, in the config file:"), h("pre", { class: "pre example" }, EXAMPLE_YAML)],
  );
}

// The editor: the whole section as JSON. Nothing is sent unless it parses as an object; the
// server validates the rest and a refusal changes nothing. If-Match: the version shown, so an
// edit made meanwhile elsewhere is not overwritten.
function editor(text, version, onSaved, onCancel, onReload) {
  const area = h("textarea", { name: "routing", rows: "22", spellcheck: "false", class: "mono" });
  area.value = text;
  const status = h("div", { "aria-live": "assertive" });
  return h(
    "form",
    {
      class: "card routing editor",
      "aria-label": "Edit routing",
      onsubmit: async (event) => {
        event.preventDefault();
        clear(status);
        let body;
        try {
          body = JSON.parse(area.value);
        } catch (error) {
          status.append(notice("error", `Not valid JSON (${error.message}). Nothing was saved.`));
          return;
        }
        if (body === null || typeof body !== "object" || Array.isArray(body)) {
          status.append(notice("error", "The routing section must be a JSON object ({} for none). Nothing was saved."));
          return;
        }
        try {
          const answer = await api("PUT", "/routing", body, { headers: version === null ? {} : { "If-Match": String(version) } });
          onSaved(answer);
        } catch (error) {
          if (error.status === 412) {
            const reload = h("button", { type: "button", class: "secondary small", onclick: onReload }, "Reload routing");
            status.append(notice("error", "Routing was changed elsewhere since this page read it: nothing was changed. Copy your text if you need it, then ", reload, " and edit the current section."));
            return;
          }
          const named = error.param && !error.message.startsWith(error.param) ? `${error.param}: ` : "";
          status.append(notice("error", `${named}${error.message}`, h("br"), "Nothing was changed."));
          area.focus();
        }
      },
    },
    h("h2", {}, "Edit routing"),
    field("Routing (JSON)", area, "The whole section, in the shape of the YAML file's routing: (every default written out). Saving replaces it; {} removes it."),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: onCancel }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, "Save routing"),
    ),
    status,
  );
}

export async function render(root, ctx) {
  const flash = h("div", { "aria-live": "polite" });
  const panel = h("div");
  const view = h("div");
  append(root, [flash, panel, view]);

  async function load() {
    let answer;
    try {
      answer = await api("GET", "/routing");
    } catch (error) {
      const missing = error.status === 404 || error.status === 405;
      clear(view).append(notice("error", missing ? "This proxy's admin API has no /routing: it predates routing policies." : error.message));
      return;
    }
    const routing = answer.routing;
    const editable = (answer.writable ?? answer.source === "database") && !ctx.readOnly;
    const startEditing = (data) => {
      clear(flash);
      clear(panel).append(
        editor(
          JSON.stringify(data, null, 2),
          answer.version ?? null,
          (saved) => {
            clear(panel);
            const version = saved?.version ?? saved?.config_version;
            flash.append(notice("ok", version ? `Saved routing (config v${version}).` : "Saved routing."));
            ctx.changed();
            load();
          },
          () => clear(panel),
          () => {
            clear(panel);
            load();
          },
        ),
      );
      const area = panel.querySelector("textarea");
      area.focus();
      area.setSelectionRange(0, 0); // at the top: the chains come first
      area.scrollTop = 0;
    };
    const parts = [];
    if (!editable) {
      parts.push(
        notice(
          "warn",
          h("strong", {}, "Read-only. "),
          "Routing comes from the routing: section of the config file, which is the source: edit the file, then reload (SIGHUP or POST /admin/v1/config/reload). Run the proxy with DB_URL (database mode) to edit it here.",
        ),
      );
    }
    if (editable && answer.source === "file" && !isEmpty(routing)) {
      parts.push(
        notice(
          "warn",
          h("strong", {}, "From the settings file. "),
          "The routing tables are empty, so the settings file's routing: section serves. Saving here writes the tables, which then take over.",
        ),
      );
    }
    if (isEmpty(routing)) {
      parts.push(emptyState(editable, startEditing));
    } else {
      if (editable) parts.push(h("div", { class: "toolbar" }, h("button", { type: "button", class: "primary", onclick: () => startEditing(routing) }, "Edit routing")));
      parts.push(fallbacksSection(routing), defaultsSection(routing), modelsSection(routing), rulesSection(routing));
    }
    append(clear(view), parts);
  }
  await load();
}
