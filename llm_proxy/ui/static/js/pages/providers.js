// Providers: list, create, edit (type, key header, weight, model mapping, timeouts, Anthropic's
// settings, the clouds' project/location/credentials and region/AWS credentials),
// enable/disable, delete, and a health probe showing each model's latency. In YAML mode the
// list is read-only.

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
  ["gemini", "gemini (Google AI Studio)"],
  ["vertex", "vertex (Vertex AI)"],
  ["bedrock", "bedrock (Amazon Bedrock)"],
];

// How the key is sent (params.auth); "" leaves it to the type: what the server then uses.
const AUTH_MODES = [
  ["bearer", "Authorization: Bearer"],
  ["api-key", "api-key header (Azure)"],
  ["x-api-key", "x-api-key header (Anthropic)"],
  ["x-goog-api-key", "x-goog-api-key header (Google)"],
  ["none", "not sent"],
];
// The type's own, as the server chooses it when params.auth is not given.
const DEFAULT_AUTH = { openai: "Bearer", azure: "Bearer", anthropic: "x-api-key", gemini: "x-goog-api-key" };

// Settings of anthropic providers, shown (and sent) for that type only; another type keeps
// them, if the API was given any, in "Other settings".
const ANTHROPIC = [
  ["anthropic_version", "Anthropic version", "text", "2023-06-01", "The anthropic-version header sent when the client sends none (an Anthropic client's own is forwarded)."],
  ["default_max_tokens", "Default max tokens", "number", "4096", "max_tokens sent when an OpenAI client gives none (Anthropic requires one)."],
  ["max_output_tokens", "Max output tokens", "number", "no cap", "A cap on every request's max_tokens to this provider; below the default it lowers that too."],
];
const ANTHROPIC_BASE = "https://api.anthropic.com";
const GEMINI_BASE = "https://generativelanguage.googleapis.com";

// The clouds' settings (params), shown (and sent) for their type only, as Anthropic's are.
// A secret is a password input holding the value as the API shows it (masked): sent back
// unchanged, the server keeps the stored secret; cleared, it is removed; typed over, replaced.
const CLOUD = {
  vertex: [
    ["project", "Google Cloud project", "text", "the credentials' project_id", "The project id (my-project-123); may be left empty when the credentials JSON has a project_id."],
    ["location", "Location", "text", "global", "global, or a region such as us-east5 (Claude models) or europe-west4."],
    ["credentials_file", "Credentials file", "text", "application default credentials", "Path of a service-account (or authorized_user) JSON file on the proxy's host. Empty, with no JSON either: application default credentials."],
    ["credentials_json", "Credentials JSON", "secret", "", "The same JSON as a value (not with a file). A secret: shown masked."],
  ],
  bedrock: [
    ["region", "AWS region", "text", "us-east-1", "Required: the region whose Bedrock runtime serves the calls."],
    ["aws_access_key_id", "AWS access key id", "secret", "", "Static keys (with the secret access key). Empty, with no profile: the proxy's environment's credentials."],
    ["aws_secret_access_key", "AWS secret access key", "secret", "", "A secret: shown masked."],
    ["aws_session_token", "AWS session token", "secret", "", "Temporary credentials only, with the static keys."],
    ["aws_profile", "AWS profile", "text", "the default", "A profile of the proxy's shared AWS files (not with static keys)."],
  ],
};
// The types whose calls the cloud's credentials sign: no api_key, no "Key sent as".
const SIGNED = new Set(["vertex", "bedrock"]);

// The api_base the server gives a type when none is written (the clouds': of the location
// or region); null when it must be given.
function defaultBase(kind, settings) {
  if (kind === "anthropic") return ANTHROPIC_BASE;
  if (kind === "gemini") return GEMINI_BASE;
  if (kind === "vertex") {
    const location = settings.location || "global";
    return location === "global" ? "https://aiplatform.googleapis.com" : `https://${location}-aiplatform.googleapis.com`;
  }
  if (kind === "bedrock" && settings.region) return `https://bedrock-runtime.${settings.region}.amazonaws.com`;
  return null;
}

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
  // A cloud provider's base URL that is its type's default is shown empty: it then follows
  // the location or region when they change.
  const storedBase = provider?.api_base ?? "";
  const shownBase = storedType in CLOUD || storedType === "gemini" ? (storedBase === defaultBase(storedType, params) ? "" : storedBase) : storedBase;
  const base = h("input", { name: "api_base", type: "url", value: shownBase });
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
  const cloudInputs = Object.entries(CLOUD).flatMap(([kind, settings]) =>
    settings.map(([param, label, kindOfInput, placeholder, hint]) => {
      const value = storedType === kind ? params[param] ?? "" : "";
      const attributes = kindOfInput === "secret" ? { type: "password", autocomplete: "new-password" } : { type: "text", spellcheck: "false" };
      const input = h("input", { name: param, ...attributes, value: typeof value === "string" ? value : JSON.stringify(value), placeholder });
      const stored = kindOfInput === "secret" && value ? ` Stored: ${value} (clear to remove, type to replace).` : "";
      return { kind, param, input, label, hint: hint + stored };
    }),
  );
  const cloudSettings = Object.fromEntries(
    Object.keys(CLOUD).map((kind) => [
      kind,
      h(
        "fieldset",
        { class: `cloud ${kind}` },
        h("legend", {}, kind === "vertex" ? "Vertex AI" : "Amazon Bedrock"),
        cloudInputs.filter((c) => c.kind === kind).map(({ input, label, hint }) => field(label, input, hint)),
      ),
    ]),
  );
  // The fields above own their settings; every other one is edited as JSON.
  const owned = new Set([
    ...TIMEOUTS.map(([t]) => t),
    "auth",
    ...(storedType === "anthropic" ? ANTHROPIC.map(([a]) => a) : []),
    ...(CLOUD[storedType] || []).map(([c]) => c),
  ]);
  const other = Object.fromEntries(Object.entries(params).filter(([k]) => !owned.has(k)));
  const extra = h("textarea", { name: "params", rows: "3", spellcheck: "false" });
  extra.value = Object.keys(other).length ? JSON.stringify(other, null, 2) : "";
  const isAnthropic = () => type.value === "anthropic";
  const shownCloud = () => cloudInputs.filter((c) => c.kind === type.value);
  const cloudValues = () => Object.fromEntries(shownCloud().map(({ param, input }) => [param, input.value.trim()]));
  const BASE_HINTS = {
    anthropic: `The base the Anthropic SDK takes; the proxy appends /v1/messages (a trailing /v1 is dropped). Empty: ${ANTHROPIC_BASE}.`,
    gemini: `Google AI Studio's root URL; the proxy appends /v1beta/models/... (a trailing /v1beta is dropped). Empty: ${GEMINI_BASE}.`,
    vertex: "Empty: Vertex AI's endpoint of the location (https://LOCATION-aiplatform.googleapis.com, global: https://aiplatform.googleapis.com).",
    bedrock: "Empty: the Bedrock runtime endpoint of the region (https://bedrock-runtime.REGION.amazonaws.com).",
  };
  // What the type decides: whose base URL may be left empty, where the key goes (and whether
  // there is one: the clouds' credentials sign their calls), which settings are shown.
  const followType = () => {
    const kind = type.value;
    const known = kind in BASE_HINTS;
    base.required = !known;
    base.placeholder = defaultBase(kind, cloudValues()) || (known ? "" : "https://api.openai.com/v1");
    baseHint.textContent = BASE_HINTS[kind] || "Every path is appended to it (Azure: the resource endpoint, https://NAME.openai.azure.com).";
    typeDefault.textContent = `Type default: ${DEFAULT_AUTH[kind] || "none"}`;
    anthropicSettings.hidden = !isAnthropic();
    for (const [cloud, fieldset] of Object.entries(cloudSettings)) fieldset.hidden = cloud !== kind;
    keyField.hidden = SIGNED.has(kind);
    authField.hidden = SIGNED.has(kind);
  };
  type.addEventListener("change", followType);
  for (const { input } of cloudInputs) input.addEventListener("input", followType);
  const keyField = field("API key", key, editing ? "Leave empty to keep the stored key." : "Sent to the provider; never shown again.");
  const authField = field("Key sent as", auth);
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
    [
      extra.value,
      auth.value,
      ...timeoutInputs.map(({ input }) => input.value),
      ...shownAnthropic(),
      ...shownCloud().map(({ input }) => input.value),
    ].join("\n");
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
        if (auth.value && !SIGNED.has(type.value)) merged.auth = auth.value;
        if (isAnthropic()) {
          for (const { param, input, kind } of anthropicInputs) {
            const value = input.value.trim();
            if (value !== "") merged[param] = kind === "number" ? Number(value) : value;
          }
        }
        for (const [param, value] of Object.entries(cloudValues())) if (value !== "") merged[param] = value;
        const body = {
          name: name.value.trim(),
          provider_type: type.value,
          api_base: base.value.trim(),
          weight: Number(weight.value || 1),
        };
        // Empty: the type's own, as the hint says (left out when the server must say why not).
        if (!body.api_base) {
          const fallback = defaultBase(type.value, cloudValues());
          if (fallback) body.api_base = fallback;
          else delete body.api_base;
        }
        if (!editing || mapping.value !== untouched.mapping) {
          try {
            body.model_mapping = parseMapping(mapping.value);
          } catch (error) {
            status.append(notice("error", error.message));
            return;
          }
        }
        if (!editing || paramsText() !== untouched.params) body.params = merged;
        if (key.value && !SIGNED.has(type.value)) body.api_key = key.value;
        // A key kept from another type would be refused: the cloud's credentials replace it.
        if (SIGNED.has(type.value) && provider?.api_key) body.api_key = "";
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
    keyField,
    authField,
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
    Object.values(cloudSettings),
    field(
      "Other settings (JSON)",
      extra,
      'More provider settings, e.g. {"query_params": {"api-version": "2024-10-21"}} (Azure), headers (e.g. {"anthropic-beta": "..."}), health_check, pricing, proxy, verify_ssl, organization, project (OpenAI), inject_stream_usage.',
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
