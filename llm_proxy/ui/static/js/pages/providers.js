// Providers: list, create, edit (type, key header, weight, model mapping, timeouts, Anthropic's
// settings), enable/disable, delete, and a health probe showing each model's latency. In YAML
// mode the list is read-only.

import { api } from "../api.js";
import { append, clear, confirmDialog, field, fmtMs, h, notice, show, table } from "../dom.js";
import { readOnlyNotice, writable } from "./shared.js";

const TIMEOUTS = [
  ["connect_timeout_secs", "Connect timeout (s)"],
  ["ttft_timeout_secs", "First-token timeout (s)"],
  ["stream_idle_timeout_secs", "Stream idle timeout (s)"],
  ["request_timeout_secs", "Request timeout (s)"],
];

const TYPES = [
  ["openai", "openai"],
  ["azure", "azure"],
  ["anthropic", "anthropic (Messages API)"],
];

// How the key is sent (params.auth); "" leaves it to the type: what the server then uses.
const AUTH_MODES = [
  ["bearer", "Authorization: Bearer"],
  ["api-key", "api-key header (Azure)"],
  ["x-api-key", "x-api-key header (Anthropic)"],
  ["none", "not sent"],
];
// The type's own, as the server chooses it when params.auth is not given.
const DEFAULT_AUTH = { openai: "Bearer", azure: "Bearer", anthropic: "x-api-key" };

// Settings of anthropic providers, shown (and sent) for that type only; another type keeps
// them, if the API was given any, in "Other settings".
const ANTHROPIC = [
  ["anthropic_version", "Anthropic version", "text", "2023-06-01", "The anthropic-version header sent when the client sends none (an Anthropic client's own is forwarded)."],
  ["default_max_tokens", "Default max tokens", "number", "4096", "max_tokens sent when an OpenAI client gives none (Anthropic requires one)."],
  ["max_output_tokens", "Max output tokens", "number", "no cap", "A cap on every request's max_tokens to this provider; below the default it lowers that too."],
];
const ANTHROPIC_BASE = "https://api.anthropic.com";

// The Models field, one line per model_mapping entry. Every shape the API accepts reads back
// as it was: `name` alone is a null target (the upstream gets the name the client asked for,
// which is what a wildcard or regex key usually wants), `name = target` renames, even to the
// same name. A null target is never shown as the text `null`: saved back, that would be an
// upstream model named "null".
export function mappingText(mapping) {
  return Object.entries(mapping || {})
    .map(([from, to]) => (to === null || to === undefined ? from : `${from} = ${to}`))
    .join("\n");
}

// The `=` separating name and target: the last one that is not regex syntax (`(?=`, `(?<=`,
// `(?P=`), so a lookahead in a regex key does not split it.
function separator(line) {
  for (let i = line.lastIndexOf("="); i >= 0; i = line.lastIndexOf("=", i - 1)) {
    if (!/\(\?(<|P)?$/.test(line.slice(0, i))) return i;
    if (i === 0) break;
  }
  return -1;
}

// The field's text as a model_mapping object; throws an Error naming the line it cannot read.
export function parseMapping(text) {
  const mapping = {};
  const lines = text.split("\n");
  lines.forEach((raw, index) => {
    const line = raw.trim();
    if (!line) return;
    const fail = (why) => {
      throw new Error(`Models, line ${index + 1} (${line}): ${why}`);
    };
    const at = separator(line);
    const from = (at < 0 ? line : line.slice(0, at)).trim();
    const to = at < 0 ? null : line.slice(at + 1).trim();
    if (!from) fail("a model name is needed before `=`.");
    if (to === "") fail("an upstream model name is needed after `=` (or none: write the name alone, or `= ~`).");
    if (to === "null") fail("write the name alone (or `= ~`) to send the model name as asked; `null` is not a model.");
    if (Object.hasOwn(mapping, from)) fail(`${from} is already listed.`);
    mapping[from] = to === "~" ? null : to;
  });
  return mapping;
}

function providerForm(ctx, provider, onDone) {
  const editing = Boolean(provider);
  const params = (provider && provider.params) || {};
  const storedType = provider?.provider_type || "openai";
  const name = h("input", { name: "name", required: true, value: provider?.name ?? "", autocomplete: "off" });
  const type = h(
    "select",
    { name: "provider_type" },
    TYPES.map(([value, label]) => h("option", { value, selected: storedType === value }, label)),
  );
  const base = h("input", { name: "api_base", type: "url", value: provider?.api_base ?? "" });
  const baseHint = h("small", { class: "hint" });
  const key = h("input", { name: "api_key", type: "password", autocomplete: "new-password", placeholder: editing ? "unchanged" : "" });
  const typeDefault = h("option", { value: "" });
  const auth = h(
    "select",
    { name: "auth" },
    typeDefault,
    AUTH_MODES.map(([value, label]) => h("option", { value, selected: params.auth === value }, label)),
  );
  const weight = h("input", { name: "weight", type: "number", min: "1", step: "1", value: String(provider?.weight ?? 1) });
  const mapping = h("textarea", { name: "model_mapping", rows: "4", placeholder: "gpt-4o-mini\nfast = gpt-4o-mini" });
  mapping.value = mappingText(provider?.model_mapping);
  const timeoutInputs = TIMEOUTS.map(([param, label]) => {
    const input = h("input", { name: param, type: "number", min: "0", step: "any", value: params[param] ?? "", placeholder: "global" });
    return { param, input, label };
  });
  const anthropicInputs = ANTHROPIC.map(([param, label, kind, placeholder, hint]) => {
    const value = storedType === "anthropic" ? params[param] ?? "" : "";
    const attributes = kind === "number" ? { type: "number", min: "1", step: "1" } : { type: "text", spellcheck: "false" };
    const input = h("input", { name: param, ...attributes, value, placeholder });
    return { param, input, label, kind, hint };
  });
  const anthropicSettings = h(
    "fieldset",
    { class: "anthropic" },
    h("legend", {}, "Anthropic (empty: the default)"),
    anthropicInputs.map(({ input, label, hint }) => field(label, input, hint)),
  );
  // The fields above own their settings; every other one is edited as JSON.
  const owned = new Set([...TIMEOUTS.map(([t]) => t), "auth", ...(storedType === "anthropic" ? ANTHROPIC.map(([a]) => a) : [])]);
  const other = Object.fromEntries(Object.entries(params).filter(([k]) => !owned.has(k)));
  const extra = h("textarea", { name: "params", rows: "3", spellcheck: "false" });
  extra.value = Object.keys(other).length ? JSON.stringify(other, null, 2) : "";
  const isAnthropic = () => type.value === "anthropic";
  // What the type decides: Anthropic's base URL may be left empty, its key goes in x-api-key.
  const followType = () => {
    const anthropic = isAnthropic();
    base.required = !anthropic;
    base.placeholder = anthropic ? ANTHROPIC_BASE : "https://api.openai.com/v1";
    baseHint.textContent = anthropic
      ? `The base the Anthropic SDK takes; the proxy appends /v1/messages (a trailing /v1 is dropped). Empty: ${ANTHROPIC_BASE}.`
      : "Every path is appended to it (Azure: the resource endpoint, https://NAME.openai.azure.com).";
    typeDefault.textContent = `Type default: ${DEFAULT_AUTH[type.value]}`;
    anthropicSettings.hidden = !anthropic;
  };
  type.addEventListener("change", followType);
  const baseField = field("API base URL", base);
  baseHint.id = `${base.id}-hint`;
  base.setAttribute("aria-describedby", baseHint.id);
  baseField.append(baseHint);
  followType();
  const status = h("div", { "aria-live": "assertive" });
  // An edit sends model_mapping and params only when their fields were changed: what the user
  // did not touch is stored exactly as it was, whatever the text form can or cannot say.
  // (Anthropic's settings count while shown: hiding them by a change of type drops them.)
  const shownAnthropic = () => (isAnthropic() ? anthropicInputs.map(({ input }) => input.value) : []);
  const paramsText = () =>
    [extra.value, auth.value, ...timeoutInputs.map(({ input }) => input.value), ...shownAnthropic()].join("\n");
  const untouched = { mapping: mapping.value, params: paramsText() };

  const form = h(
    "form",
    {
      class: "card form-grid",
      "aria-label": editing ? `Edit provider ${provider.name}` : "New provider",
      onsubmit: async (event) => {
        event.preventDefault();
        clear(status);
        let extraParams = {};
        try {
          extraParams = extra.value.trim() ? JSON.parse(extra.value) : {};
        } catch (error) {
          status.append(notice("error", `Other settings: not valid JSON (${error.message}).`));
          return;
        }
        const merged = { ...extraParams };
        for (const { param, input } of timeoutInputs) if (input.value !== "") merged[param] = Number(input.value);
        if (auth.value) merged.auth = auth.value;
        if (isAnthropic()) {
          for (const { param, input, kind } of anthropicInputs) {
            const value = input.value.trim();
            if (value !== "") merged[param] = kind === "number" ? Number(value) : value;
          }
        }
        const body = {
          name: name.value.trim(),
          provider_type: type.value,
          api_base: base.value.trim(),
          weight: Number(weight.value || 1),
        };
        if (isAnthropic() && !body.api_base) body.api_base = ANTHROPIC_BASE; // as the hint says
        if (!editing || mapping.value !== untouched.mapping) {
          try {
            body.model_mapping = parseMapping(mapping.value);
          } catch (error) {
            status.append(notice("error", error.message));
            return;
          }
        }
        if (!editing || paramsText() !== untouched.params) body.params = merged;
        if (key.value) body.api_key = key.value;
        try {
          const answer = editing
            ? await api("PATCH", `/providers/${provider.id}`, body)
            : await api("POST", "/providers", body);
          onDone(`${editing ? "Saved" : "Created"} provider ${answer.name} (config v${answer.config_version}).`);
        } catch (error) {
          status.append(notice("error", error.param ? `${error.param}: ${error.message}` : error.message));
        }
      },
    },
    h("h2", {}, editing ? `Edit ${provider.name}` : "New provider"),
    field("Name", name),
    field("Type", type),
    baseField,
    field("API key", key, editing ? "Leave empty to keep the stored key." : "Sent to the provider; never shown again."),
    field("Key sent as", auth),
    field("Weight", weight, "This provider's share of a model's traffic among the providers serving it (1 or more)."),
    field(
      "Models",
      mapping,
      "One per line. `model` alone (or `model = ~`): sent upstream under the name the client asked for; `model = upstream-model`: renamed. A name with `*` is a wildcard (`gpt-4.1*`); one with any of ^$+?()[]{}|\\ is a regex (`claude-(opus|sonnet)-4.*`); both match the whole name.",
    ),
    h(
      "fieldset",
      { class: "timeouts" },
      h("legend", {}, "Timeouts (empty: the global value)"),
      timeoutInputs.map(({ input, label }) => field(label, input)),
    ),
    anthropicSettings,
    field(
      "Other settings (JSON)",
      extra,
      'More provider settings, e.g. {"query_params": {"api-version": "2024-10-21"}} (Azure), headers (e.g. {"anthropic-beta": "..."}), health_check, pricing, proxy, verify_ssl, organization, project, inject_stream_usage.',
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => onDone(null) }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Create provider"),
    ),
    status,
  );
  return form;
}

function probeResults(answer) {
  return h(
    "div",
    { class: "probe", role: "status" },
    h("p", {}, `${answer.provider}: `, h("span", { class: `badge ${answer.healthy ? "good" : "bad"}` }, answer.healthy ? "healthy" : "unhealthy")),
    table(
      ["Model", "Upstream model", "Result", "Status", "Latency"],
      answer.results.map((r) =>
        h(
          "tr",
          {},
          h("td", {}, r.model),
          h("td", {}, show(r.upstream_model)),
          h("td", {}, h("span", { class: `badge ${r.ok ? "good" : "bad"}` }, r.ok ? "ok" : r.error || "failed")),
          h("td", {}, show(r.status)),
          h("td", {}, fmtMs(r.latency_ms)),
        ),
      ),
      `Probe of ${answer.provider}`,
    ),
  );
}

export async function render(root, ctx) {
  const flash = h("div", { "aria-live": "polite" });
  const panel = h("div");
  const list = h("div");
  const addButton = h("button", { type: "button", class: "primary", disabled: !writable(ctx) }, "Add provider");
  append(root, [readOnlyNotice(ctx), h("div", { class: "toolbar" }, addButton), flash, panel, list]);

  function done(message) {
    clear(panel);
    clear(flash);
    ctx.changed();
    if (message) flash.append(notice("ok", message));
    load();
  }

  addButton.addEventListener("click", () => {
    clear(panel).append(providerForm(ctx, null, done));
    panel.querySelector("input").focus();
  });

  async function load() {
    let answer;
    try {
      answer = await api("GET", "/providers");
    } catch (error) {
      clear(list).append(notice("error", error.message));
      return;
    }
    const rows = answer.data.map((p) => {
      const probeOut = h("div");
      const probe = h(
        "button",
        {
          type: "button",
          class: "secondary small",
          "aria-label": `Probe ${p.name}`,
          onclick: async () => {
            probe.disabled = true;
            clear(probeOut).append(h("p", { class: "muted" }, "Probing…"));
            try {
              clear(probeOut).append(probeResults(await api("POST", `/providers/${p.id}/health`, {})));
            } catch (error) {
              clear(probeOut).append(notice("error", error.message));
            }
            probe.disabled = false;
          },
        },
        "Probe",
      );
      const actions = [probe];
      if (writable(ctx)) {
        actions.push(
          h("button", { type: "button", class: "secondary small", "aria-label": `Edit ${p.name}`, onclick: () => {
            clear(panel).append(providerForm(ctx, p, done));
            panel.querySelector("input").focus();
          } }, "Edit"),
          h("button", { type: "button", class: "secondary small", "aria-label": `${p.enabled ? "Disable" : "Enable"} ${p.name}`, onclick: async () => {
            try {
              const answer = await api("PATCH", `/providers/${p.id}/status`, { enabled: !p.enabled });
              done(`${answer.enabled ? "Enabled" : "Disabled"} ${p.name} (config v${answer.config_version}).`);
            } catch (error) {
              clear(flash).append(notice("error", error.message));
            }
          } }, p.enabled ? "Disable" : "Enable"),
          h("button", { type: "button", class: "danger small", "aria-label": `Delete ${p.name}`, onclick: async () => {
            if (!(await confirmDialog(`Delete ${p.name}?`, "Traffic stops going to this provider at once on every instance. The config history keeps it, so it can be rolled back.", "Delete"))) return;
            try {
              const answer = await api("DELETE", `/providers/${p.id}`);
              done(`Deleted ${p.name} (config v${answer.config_version}).`);
            } catch (error) {
              clear(flash).append(notice("error", error.message));
            }
          } }, "Delete"),
        );
      }
      const enabled = p.enabled === undefined ? true : p.enabled;
      return [
        h(
          "tr",
          { dataset: { provider: p.name } },
          h("th", { scope: "row" }, p.name),
          h("td", {}, p.provider_type || "openai"),
          h("td", { class: "wrap" }, p.api_base),
          h("td", { class: "wrap" }, Object.keys(p.model_mapping || {}).join(", ") || "–"),
          h("td", { class: "num" }, show(p.weight)),
          h("td", {}, h("span", { class: `badge ${enabled ? "good" : "muted"}` }, enabled ? "enabled" : "disabled")),
          h("td", { class: "actions-cell" }, actions),
        ),
        h("tr", { class: "probe-row" }, h("td", { colspan: "7" }, probeOut)),
      ];
    });
    clear(list).append(
      answer.data.length
        ? table(["Name", "Type", "API base", "Models", "Weight", "Status", "Actions"], rows, "Providers")
        : h("p", { class: "muted" }, "No providers yet."),
    );
  }
  await load();
}
