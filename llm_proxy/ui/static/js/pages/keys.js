// Master keys: create (the key shown once, with a copy button), rotate, enable/disable,
// limits, allowed models, expiry and metadata, delete, and each key's usage over the last 30
// days, when it was last used and who created it.

import { api } from "../api.js";
import { append, clear, confirmDialog, copyText, field, fmtNumber, fmtUsd, h, notice, show, table } from "../dom.js";
import { readOnlyNotice, writable } from "./shared.js";

function numberOrNull(input) {
  return input.value === "" ? null : Number(input.value);
}

// Times: the API's are ISO-8601 with a timezone (UTC); the page shows them in UTC, and the
// form's expiry (a datetime-local input, which has no timezone) is read as UTC.
function parseTime(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

function utcText(date) {
  return date.toISOString().slice(0, 16).replace("T", " ");
}

// "5 min ago", "in 3 d": how far `date` is from now.
function relative(date) {
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  const s = Math.abs(seconds);
  if (s < 60) return seconds >= 0 ? "just now" : "in under a minute";
  const span = s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400 ? `${Math.floor(s / 3600)} h` : `${Math.floor(s / 86400)} d`;
  return seconds >= 0 ? `${span} ago` : `in ${span}`;
}

// The input's value for a stored expiry: its UTC date and time ("2027-01-31T00:00"; seconds
// only when it has some).
function expiryInputValue(date) {
  if (!date) return "";
  return date.toISOString().slice(0, date.getUTCSeconds() ? 19 : 16);
}

// The input's value as the API takes it: the same wall-clock time, in UTC.
function expiryFromInput(value) {
  return value.length === 16 ? `${value}:00+00:00` : `${value}+00:00`;
}

// Metadata by name: the order it was written in is not kept (PostgreSQL's jsonb has its own).
function sortedMetadata(metadata) {
  return Object.fromEntries(Object.entries(metadata).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// Metadata shown: `k=v` pairs by name (strings bare, anything else as JSON).
function metadataPairs(metadata) {
  return Object.entries(sortedMetadata(metadata))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(", ");
}

const PAIRS_SHOWN = 60; // characters of the pairs shown before the rest is folded away

// A key's metadata under its name: the pairs, folded when long (the whole object unfolded).
function metadataLine(metadata) {
  if (!metadata || typeof metadata !== "object" || !Object.keys(metadata).length) return null;
  const pairs = metadataPairs(metadata);
  const label = h("span", { class: "visually-hidden" }, "Metadata: ");
  if (pairs.length <= PAIRS_SHOWN) return h("div", { class: "key-metadata mono", dataset: { cell: "metadata" } }, label, pairs);
  return h(
    "details",
    { class: "key-metadata", dataset: { cell: "metadata" } },
    h("summary", { class: "mono" }, label, `${pairs.slice(0, PAIRS_SHOWN)}…`),
    h("pre", { class: "pre" }, JSON.stringify(sortedMetadata(metadata), null, 2)),
  );
}

// The expiry (its UTC date and time; the header says UTC), and how far it is: a red
// "expired" once past, amber within a week.
function expiryCell(k) {
  const date = parseTime(k.expires_at);
  if (!date) return h("span", { class: "muted" }, "never");
  const left = date.getTime() - Date.now();
  return [
    h("time", { datetime: k.expires_at }, utcText(date)),
    h("div", {}, left <= 0 ? h("span", { class: "badge bad" }, "expired") : h("span", { class: left < 7 * 86400e3 ? "badge warn" : "muted" }, relative(date))),
  ];
}

const WHO_SHOWN = 40; // characters of created_by shown (YAML may say anything, up to 200)

function createdBy(who) {
  if (!who) return h("span", { class: "muted" }, "—");
  return who.length > WHO_SHOWN ? `${who.slice(0, WHO_SHOWN - 1)}…` : who;
}

function lastUsedCell(k) {
  const date = parseTime(k.last_used_at);
  if (!date) return h("span", { class: "muted" }, "never");
  return h("time", { datetime: k.last_used_at, title: `${utcText(date)} UTC` }, relative(date));
}

function keyForm(key, onDone) {
  const editing = Boolean(key);
  const name = h("input", { name: "name", required: true, value: key?.name ?? "", autocomplete: "off" });
  const models = h("input", { name: "allowed_models", value: (key?.allowed_models || []).join(", "), placeholder: "all models" });
  const rps = h("input", { name: "rate_limit_rps", type: "number", min: "0", step: "any", value: key?.rate_limit_rps ?? "" });
  const burst = h("input", { name: "rate_limit_burst", type: "number", min: "1", step: "1", value: key?.rate_limit_burst ?? "" });
  const tpm = h("input", { name: "tokens_per_minute", type: "number", min: "1", step: "1", value: key?.tokens_per_minute ?? "" });
  const parallel = h("input", { name: "max_parallel_requests", type: "number", min: "1", step: "1", value: key?.max_parallel_requests ?? "" });
  const budget = h("input", { name: "max_budget_usd", type: "number", min: "0", step: "any", value: key?.max_budget_usd ?? "" });
  const period = h(
    "select",
    { name: "budget_period" },
    ["monthly", "daily"].map((p) => h("option", { value: p, selected: (key?.budget_period || "monthly") === p }, p)),
  );
  const objects = h(
    "select",
    { name: "shared_objects" },
    [
      ["false", "Its own only"],
      ["true", "Every key's (account-wide)"],
    ].map(([v, label]) => h("option", { value: v, selected: String(Boolean(key?.shared_objects)) === v }, label)),
  );
  const stored = parseTime(key?.expires_at);
  const expires = h("input", { name: "expires_at", type: "datetime-local", step: stored && stored.getUTCSeconds() ? "1" : undefined, value: expiryInputValue(stored) });
  const expiresField = field("Expires at (UTC)", expires, "A date and time in UTC, not your local time. Empty: never expires.");
  expiresField.classList.add("expiry");
  expires.after(
    h("button", { type: "button", class: "secondary small", "aria-label": "Never expires (clear the expiry)", onclick: () => {
      expires.value = "";
      expires.focus();
    } }, "Never"),
  );
  const shownMetadata = key?.metadata && Object.keys(key.metadata).length ? JSON.stringify(sortedMetadata(key.metadata), null, 2) : "";
  const rows = Math.min(Math.max(shownMetadata.split("\n").length, 3), 12);
  const metadata = h("textarea", { name: "metadata", rows: String(rows), spellcheck: "false", placeholder: '{"team": "ml", "owner": "alice"}' });
  metadata.value = shownMetadata;
  const metadataField = field("Metadata (JSON object)", metadata, "Free-form labels kept with the key, e.g. team or owner. Empty: none.");
  metadataField.classList.add("wide");
  // An edit sends the expiry and the metadata only when their fields were changed: what the
  // user did not touch is kept exactly as stored.
  const untouched = { expires: expires.value, metadata: metadata.value };
  const status = h("div", { "aria-live": "assertive" });
  const refuse = (input, message) => {
    input.setAttribute("aria-invalid", "true");
    status.append(notice("error", message));
    input.focus();
  };
  return h(
    "form",
    {
      class: "card form-grid",
      "aria-label": editing ? `Edit key ${key.name}` : "New key",
      onsubmit: async (event) => {
        event.preventDefault();
        clear(status);
        expires.removeAttribute("aria-invalid");
        metadata.removeAttribute("aria-invalid");
        if (expires.validity.badInput) {
          refuse(expires, "Expires at: an incomplete date and time (clear it with Never for a key that never expires). Nothing was saved.");
          return;
        }
        let meta = {};
        if (metadata.value.trim()) {
          try {
            meta = JSON.parse(metadata.value);
          } catch (error) {
            refuse(metadata, `Metadata: not valid JSON (${error.message}). Nothing was saved.`);
            return;
          }
        }
        if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
          refuse(metadata, 'Metadata must be a JSON object, e.g. {"team": "ml"} (empty: none). Nothing was saved.');
          return;
        }
        const allowed = models.value.split(",").map((m) => m.trim()).filter(Boolean);
        const body = {
          name: name.value.trim(),
          allowed_models: allowed.length ? allowed : null,
          rate_limit_rps: numberOrNull(rps),
          rate_limit_burst: numberOrNull(burst),
          tokens_per_minute: numberOrNull(tpm),
          max_parallel_requests: numberOrNull(parallel),
          max_budget_usd: numberOrNull(budget),
          budget_period: budget.value === "" ? null : period.value,
          shared_objects: objects.value === "true",
        };
        // A new key: only what differs from the defaults (never expires, no metadata).
        if (editing ? expires.value !== untouched.expires : expires.value) body.expires_at = expires.value ? expiryFromInput(expires.value) : null;
        if (editing ? metadata.value !== untouched.metadata : Object.keys(meta).length) body.metadata = meta;
        try {
          const answer = editing ? await api("PATCH", `/credentials/${key.id}`, body) : await api("POST", "/credentials", body);
          onDone(answer, editing ? "Saved" : "Created");
        } catch (error) {
          status.append(notice("error", error.param ? `${error.param}: ${error.message}` : error.message));
        }
      },
    },
    h("h2", {}, editing ? `Edit ${key.name}` : "New key"),
    field("Name", name, "Shown in logs, metrics and usage."),
    field("Allowed models", models, "Comma-separated; patterns like `gpt-4*` work. Empty: every model."),
    field("Requests per second", rps, "Empty: no limit."),
    field("Burst", burst),
    field("Tokens per minute", tpm, "Empty: no limit."),
    field("Parallel requests", parallel, "Requests in flight at once. Empty: no limit."),
    field("Budget (USD)", budget, "Empty: no budget."),
    field("Budget period", period),
    field("Stored objects", objects, "Files, batches, vector stores and responses this key may see."),
    expiresField,
    metadataField,
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => onDone(null) }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Create key"),
    ),
    status,
  );
}

// The new secret, shown once with a copy button.
function secretPanel(title, key) {
  const output = h("input", { type: "text", readonly: true, value: key, class: "secret", "aria-label": "Key (shown once)", id: "new-key" });
  const copied = h("span", { class: "muted", "aria-live": "polite" });
  return h(
    "section",
    { class: "card secret-panel", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, title),
    h("p", {}, "Copy it now: it is not stored in a form that can be shown again."),
    h(
      "div",
      { class: "copy-row" },
      output,
      h(
        "button",
        {
          type: "button",
          class: "primary",
          onclick: async () => {
            copied.textContent = (await copyText(key)) ? "Copied." : "Copy failed: select the key and copy it.";
            output.select();
          },
        },
        "Copy",
      ),
      copied,
    ),
  );
}

function limits(k) {
  const parts = [];
  if (k.rate_limit_rps !== null && k.rate_limit_rps !== undefined) parts.push(`${k.rate_limit_rps} req/s${k.rate_limit_burst ? ` (burst ${k.rate_limit_burst})` : ""}`);
  if (k.tokens_per_minute) parts.push(`${fmtNumber(k.tokens_per_minute)} tok/min`);
  if (k.max_parallel_requests) parts.push(`${fmtNumber(k.max_parallel_requests)} parallel`);
  if (k.max_budget_usd !== null && k.max_budget_usd !== undefined) parts.push(`${fmtUsd(k.max_budget_usd)} ${k.budget_period || "monthly"}`);
  if (k.shared_objects) parts.push("all objects");
  return parts.join(" · ") || "–";
}

export async function render(root, ctx) {
  const flash = h("div", { "aria-live": "polite" });
  const panel = h("div");
  const list = h("div");
  const add = h("button", { type: "button", class: "primary", disabled: !writable(ctx) }, "Create key");
  append(root, [readOnlyNotice(ctx), h("div", { class: "toolbar" }, add), flash, panel, list]);

  function done(answer, verb) {
    clear(panel);
    clear(flash);
    ctx.changed();
    if (answer && answer.key) panel.append(secretPanel(`${verb} key ${answer.name}`, answer.key));
    else if (answer) flash.append(notice("ok", `${verb} ${answer.name} (config v${answer.config_version}).`));
    load();
  }

  add.addEventListener("click", () => {
    clear(panel).append(keyForm(null, done));
    panel.querySelector("input").focus();
  });

  async function load() {
    let keys;
    try {
      keys = (await api("GET", "/credentials")).data;
    } catch (error) {
      clear(list).append(notice("error", error.message));
      return;
    }
    const usage = new Map();
    let usageNote = null;
    try {
      for (const row of (await api("GET", "/usage?group_by=key")).data) usage.set(row.key, row);
    } catch (error) {
      usageNote = h("p", { class: "muted" }, `Usage unavailable: ${error.message}`);
    }
    const rows = keys.map((k) => {
      const used = usage.get(k.name);
      const enabled = k.enabled === undefined ? true : k.enabled;
      const actions = [];
      if (writable(ctx)) {
        actions.push(
          h("button", { type: "button", class: "secondary small", "aria-label": `Edit ${k.name}`, onclick: () => {
            clear(panel).append(keyForm(k, done));
            panel.querySelector("input").focus();
          } }, "Edit"),
          h("button", { type: "button", class: "secondary small", "aria-label": `Rotate ${k.name}`, onclick: async () => {
            if (!(await confirmDialog(`Rotate ${k.name}?`, "A new key is made and shown once; the old one stops working at once on every instance.", "Rotate"))) return;
            try {
              done(await api("POST", `/credentials/${k.id}/rotate`, {}), "Rotated");
            } catch (error) {
              clear(flash).append(notice("error", error.message));
            }
          } }, "Rotate"),
          h("button", { type: "button", class: "secondary small", "aria-label": `${enabled ? "Disable" : "Enable"} ${k.name}`, onclick: async () => {
            try {
              const answer = await api("PATCH", `/credentials/${k.id}/status`, { enabled: !enabled });
              done(answer, answer.enabled ? "Enabled" : "Disabled");
            } catch (error) {
              clear(flash).append(notice("error", error.message));
            }
          } }, enabled ? "Disable" : "Enable"),
          h("button", { type: "button", class: "danger small", "aria-label": `Delete ${k.name}`, onclick: async () => {
            if (!(await confirmDialog(`Delete ${k.name}?`, "Requests with this key are refused at once on every instance.", "Delete"))) return;
            try {
              const answer = await api("DELETE", `/credentials/${k.id}`);
              clear(flash).append(notice("ok", `Deleted ${k.name} (config v${answer.config_version}).`));
              ctx.changed();
              load();
            } catch (error) {
              clear(flash).append(notice("error", error.message));
            }
          } }, "Delete"),
        );
      }
      return h(
        "tr",
        { dataset: { key: k.name } },
        h("th", { scope: "row" }, k.name, metadataLine(k.metadata)),
        h("td", { class: "mono nowrap" }, k.key_prefix || "–"),
        h("td", {}, h("span", { class: `badge ${enabled ? "good" : "muted"}` }, enabled ? "enabled" : "disabled")),
        h("td", { class: "nowrap", dataset: { cell: "expires" } }, expiryCell(k)),
        h("td", { class: "wrap" }, k.allowed_models ? k.allowed_models.join(", ") : "all"),
        h("td", {}, limits(k)),
        h("td", { class: "num" }, used ? fmtNumber(used.requests) : "0"),
        h("td", { class: "num" }, used ? fmtNumber(used.total_tokens) : "0"),
        h("td", { class: "num" }, used ? fmtUsd(used.cost_usd) : show(null)),
        h("td", { class: "nowrap", dataset: { cell: "last-used" } }, lastUsedCell(k)),
        h("td", { dataset: { cell: "created-by" }, title: k.created_by && k.created_by.length > WHO_SHOWN ? k.created_by : null }, createdBy(k.created_by)),
        h("td", { class: "actions-cell" }, actions),
      );
    });
    append(clear(list), [
      keys.length
        ? table(
            ["Name", "Key", "Status", "Expires (UTC)", "Models", "Limits", "Requests (30 d)", "Tokens (30 d)", "Cost (30 d)", "Last used", "Created by", "Actions"],
            rows,
            "Master keys",
          )
        : h("p", { class: "muted" }, "No master keys: the proxy accepts requests without a key."),
      usageNote,
    ]);
  }
  await load();
}
