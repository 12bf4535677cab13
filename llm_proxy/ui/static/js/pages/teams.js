// Teams: what several master keys share (allowed models, a request rate, tokens per minute, a
// budget with its period, parallel requests, stored objects, metadata). #/teams lists them with
// this period's spend against each budget and their keys; create, edit, delete (a team that
// still has keys is refused: the page says so). #/teams/<id> is one team: its settings, its
// keys (add one by name, remove one) and its spend per day over the last 30 days against its
// budget. In YAML mode the same pages, read-only.

import { api, query } from "../api.js";
import { dayChart } from "../chart.js";
import { append, clear, confirmDialog, field, fmtNumber, fmtTime, fmtUsd, h, notice, show, table } from "../dom.js";
import { readOnlyNotice, writable } from "./shared.js";

const DAYS = 30;
const PERIOD_WORDS = { daily: "today", monthly: "this month" };

// The field an error's `param` names: `max_budget_usd`, `teams[0].max_budget_usd` and
// `rate_limit.burst_size` all name one of the form's fields.
const PARAM_ALIASES = { requests_per_second: "rate_limit_rps", burst_size: "rate_limit_burst", rate_limit: "rate_limit_rps" };

function limits(t) {
  const parts = [];
  if (t.rate_limit_rps !== null && t.rate_limit_rps !== undefined) parts.push(`${t.rate_limit_rps} req/s${t.rate_limit_burst ? ` (burst ${t.rate_limit_burst})` : ""}`);
  if (t.tokens_per_minute) parts.push(`${fmtNumber(t.tokens_per_minute)} tok/min`);
  if (t.max_parallel_requests) parts.push(`${fmtNumber(t.max_parallel_requests)} parallel`);
  if (t.shared_objects) parts.push("shared objects");
  return parts.join(" · ") || "–";
}

function periodWord(period) {
  return PERIOD_WORDS[period] || "this month";
}

// "$0.42 of $10.00 this month", with a <meter> when there is a budget; the spend alone when
// there is none. `usage`: the answer of GET /teams/{id}/usage (null: unknown); its `spent_usd`
// is null when no budget is counted.
function budgetCell(team, usage) {
  const limit = usage ? usage.max_budget_usd : team.max_budget_usd;
  const period = (usage ? usage.budget_period : team.budget_period) || "monthly";
  const spent = usage && typeof usage.spent_usd === "number" ? usage.spent_usd : null;
  if (limit === null || limit === undefined) {
    return h("span", { class: "budget" }, spent === null ? "no budget" : `${fmtUsd(spent)} ${periodWord(period)}, no budget`);
  }
  const text = spent === null ? `${fmtUsd(limit)} ${period}` : `${fmtUsd(spent)} of ${fmtUsd(limit)} ${periodWord(period)}`;
  const over = spent !== null && spent >= limit;
  return h(
    "span",
    { class: "budget" },
    spent === null ? null : h("meter", { min: "0", max: String(limit || 1), value: String(Math.min(spent, limit || 1)), low: String(0.8 * limit), high: String(0.95 * limit), optimum: "0", "aria-label": `Spend of ${team.name} ${periodWord(period)}` }),
    h("span", { class: "budget-text" }, text),
    over ? h("span", { class: "badge bad" }, "exhausted") : null,
  );
}

// A form field with room for its own error: what the page or the server says of it is shown
// under it and read with it (aria-describedby, aria-invalid).
function checkedField(name, label, input, hint) {
  input.name = name;
  const wrap = field(label, input, hint);
  const error = h("small", { class: "field-error", id: `${input.id}-error`, hidden: true });
  wrap.append(error);
  input.setAttribute("aria-describedby", [input.getAttribute("aria-describedby"), error.id].filter(Boolean).join(" "));
  return {
    name,
    input,
    wrap,
    set(message) {
      error.textContent = message || "";
      error.hidden = !message;
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    },
  };
}

function numberOf(input) {
  return input.value === "" ? null : Number(input.value);
}

// Cheap checks before anything is sent: `{field: message}` (empty: nothing found).
function problems(f) {
  const found = {};
  // Empty is no limit; a value is above zero (a whole number where `integer`).
  const number = (name, integer = false) => {
    const input = f[name].input;
    if (input.validity.badInput) return (found[name] = "Not a number.");
    const value = numberOf(input);
    if (value === null) return;
    if (!Number.isFinite(value) || value <= 0) found[name] = "Above 0 (empty: no limit).";
    else if (integer && !Number.isInteger(value)) found[name] = "A whole number.";
  };
  if (!f.name.input.value.trim()) found.name = "A team needs a name.";
  number("rate_limit_rps");
  number("rate_limit_burst", true);
  number("tokens_per_minute", true);
  number("max_parallel_requests", true);
  number("max_budget_usd");
  if (!found.rate_limit_burst && f.rate_limit_burst.input.value !== "" && f.rate_limit_rps.input.value === "") {
    found.rate_limit_burst = "A burst needs a rate (requests per second).";
  }
  const text = f.metadata.input.value.trim();
  if (text) {
    try {
      const value = JSON.parse(text);
      if (value === null || typeof value !== "object" || Array.isArray(value)) found.metadata = "A JSON object ({\"owner\": \"...\"}).";
    } catch (error) {
      found.metadata = `Not valid JSON (${error.message}).`;
    }
  }
  return found;
}

function teamForm(team, onDone) {
  const editing = Boolean(team);
  const f = {};
  const add = (name, label, input, hint) => (f[name] = checkedField(name, label, input, hint)).wrap;
  const numeric = (value, min, step) => h("input", { type: "number", min, step, value: value ?? "" });
  const metadata = h("textarea", { rows: "3", spellcheck: "false", class: "mono", placeholder: "{}" });
  metadata.value = team && team.metadata && Object.keys(team.metadata).length ? JSON.stringify(team.metadata, null, 2) : "";
  const period = h(
    "select",
    {},
    ["monthly", "daily"].map((p) => h("option", { value: p, selected: (team?.budget_period || "monthly") === p }, p)),
  );
  const objects = h(
    "select",
    {},
    [
      ["false", "Each key its own"],
      ["true", "Shared by the team's keys"],
    ].map(([v, label]) => h("option", { value: v, selected: String(Boolean(team?.shared_objects)) === v }, label)),
  );
  const status = h("div", { "aria-live": "assertive" });
  const form = h(
    "form",
    {
      class: "card form-grid",
      novalidate: true,
      "aria-label": editing ? `Edit team ${team.name}` : "New team",
      onsubmit: async (event) => {
        event.preventDefault();
        clear(status);
        for (const one of Object.values(f)) one.set(null);
        const found = problems(f);
        const names = Object.keys(found);
        if (names.length) {
          for (const name of names) f[name].set(found[name]);
          status.append(notice("error", "Nothing was sent: correct the fields marked."));
          f[names[0]].input.focus();
          return;
        }
        const allowed = f.allowed_models.input.value.split(",").map((m) => m.trim()).filter(Boolean);
        const budget = numberOf(f.max_budget_usd.input);
        const meta = f.metadata.input.value.trim();
        const body = {
          name: f.name.input.value.trim(),
          allowed_models: allowed.length ? allowed : null,
          rate_limit_rps: numberOf(f.rate_limit_rps.input),
          rate_limit_burst: numberOf(f.rate_limit_burst.input),
          tokens_per_minute: numberOf(f.tokens_per_minute.input),
          max_parallel_requests: numberOf(f.max_parallel_requests.input),
          max_budget_usd: budget,
          budget_period: budget === null ? null : f.budget_period.input.value,
          shared_objects: f.shared_objects.input.value === "true",
          metadata: meta ? JSON.parse(meta) : {},
        };
        try {
          const answer = editing ? await api("PATCH", `/teams/${team.id}`, body) : await api("POST", "/teams", body);
          onDone(answer, editing ? "Saved" : "Created");
        } catch (error) {
          const named = fieldOf(f, error.param);
          if (named) {
            named.set(error.message);
            named.input.focus();
            status.append(notice("error", "Nothing was saved: the server refused a field (marked)."));
          } else {
            status.append(notice("error", error.param ? `${error.param}: ${error.message}` : error.message));
          }
        }
      },
    },
    h("h2", {}, editing ? `Edit ${team.name}` : "New team"),
    add("name", "Name", h("input", { required: true, value: team?.name ?? "", autocomplete: "off" }), "Shown in logs, metrics and usage."),
    add("allowed_models", "Allowed models", h("input", { value: (team?.allowed_models || []).join(", "), placeholder: "all models" }), "Comma-separated; patterns like `gpt-4*` work. Its keys' models must be within these. Empty: every model."),
    add("rate_limit_rps", "Requests per second", numeric(team?.rate_limit_rps, "0", "any"), "For the whole team. Empty: no limit."),
    add("rate_limit_burst", "Burst", numeric(team?.rate_limit_burst, "1", "1")),
    add("tokens_per_minute", "Tokens per minute", numeric(team?.tokens_per_minute, "1", "1"), "For the whole team. Empty: no limit."),
    add("max_parallel_requests", "Parallel requests", numeric(team?.max_parallel_requests, "1", "1"), "Requests in flight at once, over all its keys. Empty: no limit."),
    add("max_budget_usd", "Budget (USD)", numeric(team?.max_budget_usd, "0", "any"), "Spent by all its keys together. Empty: no budget."),
    add("budget_period", "Budget period", period),
    add("shared_objects", "Stored objects", objects, "Files, batches, vector stores and responses: never seen by another team."),
    add("metadata", "Metadata (JSON)", metadata, "A JSON object, for your own use. Empty: none."),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => onDone(null) }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, editing ? "Save" : "Create team"),
    ),
    status,
  );
  return form;
}

function fieldOf(f, param) {
  if (!param) return null;
  const words = String(param).split(/[.[\]'"]+/).filter(Boolean).reverse();
  for (const word of words) {
    const name = PARAM_ALIASES[word] || word;
    if (f[name]) return f[name];
  }
  return null;
}

async function teamUsage(team) {
  try {
    return await api("GET", `/teams/${team.id}/usage`);
  } catch {
    return null;
  }
}

// The list: every team, this period's spend against its budget, its keys.
async function renderList(root, ctx) {
  const flash = h("div", { "aria-live": "polite" });
  const panel = h("div");
  const list = h("div");
  const add = h("button", { type: "button", class: "primary", disabled: !writable(ctx) }, "Create team");
  append(root, [readOnlyNotice(ctx), h("div", { class: "toolbar" }, add), flash, panel, list]);

  function done(answer, verb) {
    clear(panel);
    clear(flash);
    if (answer) {
      ctx.changed();
      const version = answer.config_version ? ` (config v${answer.config_version})` : "";
      flash.append(notice("ok", `${verb} team ${answer.name}${version}.`));
    }
    load();
  }

  function openForm(team) {
    clear(flash);
    clear(panel).append(teamForm(team, done));
    panel.querySelector("input").focus();
  }
  add.addEventListener("click", () => openForm(null));

  async function remove(team) {
    const sure = await confirmDialog(
      `Delete team ${team.name}?`,
      "Its limits, budget and shared objects stop applying at once on every instance. A team that still has keys cannot be deleted: remove them first.",
      "Delete",
    );
    if (!sure) return;
    clear(flash);
    try {
      const answer = await api("DELETE", `/teams/${team.id}`);
      const version = answer && answer.config_version ? ` (config v${answer.config_version})` : "";
      flash.append(notice("ok", `Deleted team ${team.name}${version}.`));
      ctx.changed();
      load();
    } catch (error) {
      const open = h("a", { href: `#/teams/${team.id}` }, `Open ${team.name} to remove its keys`);
      flash.append(notice("error", `Team ${team.name} was not deleted: ${error.message}`, error.code === "team_has_members" ? [" ", open, "."] : null));
    }
  }

  async function load() {
    let teams;
    try {
      teams = (await api("GET", "/teams")).data;
    } catch (error) {
      const missing = error.status === 404 || error.status === 405;
      clear(list).append(notice("error", missing ? "This proxy's admin API has no /teams: it predates teams." : error.message));
      return;
    }
    // This period's spend: counted only where there is a budget to count it against.
    const usages = await Promise.all(teams.map((t) => (t.max_budget_usd === null ? null : teamUsage(t))));
    const rows = teams.map((t, i) => {
      const actions = writable(ctx)
        ? h(
            "td",
            { class: "actions-cell" },
            h("button", { type: "button", class: "secondary small", "aria-label": `Edit ${t.name}`, onclick: () => openForm(t) }, "Edit"),
            h("button", { type: "button", class: "danger small", "aria-label": `Delete ${t.name}`, onclick: () => remove(t) }, "Delete"),
          )
        : null;
      return h(
        "tr",
        { dataset: { team: t.name } },
        h("th", { scope: "row" }, h("a", { href: `#/teams/${t.id}` }, t.name)),
        h("td", { class: "wrap" }, t.allowed_models ? t.allowed_models.join(", ") : "all"),
        h("td", {}, limits(t)),
        h("td", { class: "budget-cell" }, budgetCell(t, usages[i])),
        h("td", { class: "num" }, typeof t.members === "number" ? fmtNumber(t.members) : "–"),
        actions,
      );
    });
    append(clear(list), [
      teams.length
        ? table(["Name", "Models", "Limits", "Budget", "Keys", ...(writable(ctx) ? ["Actions"] : [])], rows, "Teams")
        : h("p", { class: "muted" }, "No teams yet. A team gives several keys one budget, shared limits and the same models."),
    ]);
  }
  await load();
}

// The last DAYS UTC days (today last), and the first day to read from so that each month's
// running total starts at its first day.
function window30() {
  const today = new Date();
  const days = [];
  for (let i = DAYS - 1; i >= 0; i -= 1) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    days.push(d.toISOString().slice(0, 10));
  }
  return { days, since: `${days[0].slice(0, 7)}-01`, until: days[days.length - 1] };
}

function nextDay(day) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

// Spend per day over the last 30 days, against the budget: a bar a day; with a monthly budget,
// the spend so far in each month as a line; the budget as a dashed rule. And the same as a
// table, for reading the numbers.
async function spendSection(team) {
  const section = h("section", { "aria-labelledby": "team-spend" }, h("h2", { id: "team-spend" }, `Spend per day (last ${DAYS} days)`));
  const { days, since, until } = window30();
  let answer;
  try {
    answer = await api("GET", `/usage${query({ group_by: "day", team: team.name, since, until })}`);
  } catch (error) {
    section.append(notice(error.status === 409 ? "warn" : "error", `Spend unavailable: ${error.message}`));
    return section;
  }
  const byDay = new Map(answer.data.map((row) => [row.day, row]));
  const period = team.budget_period || "monthly";
  const monthly = period === "monthly";
  const budget = team.max_budget_usd;
  const budgeted = budget !== null && budget !== undefined;
  // The spend so far in each calendar month, day by day from the first of the first month.
  const soFar = new Map();
  let running = 0;
  for (let day = since; day <= until; day = nextDay(day)) {
    if (day.endsWith("-01")) running = 0;
    running += byDay.get(day)?.cost_usd || 0;
    soFar.set(day, running);
  }
  const line = days.map((day, i) => ({ value: soFar.get(day), restart: i > 0 && day.endsWith("-01") }));
  const spent = days.reduce((sum, day) => sum + (byDay.get(day)?.cost_usd || 0), 0);
  const words = [`${fmtUsd(spent)} in ${DAYS} days`];
  if (budgeted) words.push(`budget ${fmtUsd(budget)} ${period}`);
  if (budgeted && monthly) words.push(`${fmtUsd(line[line.length - 1].value)} so far this month`);
  const usd = (v) => (!v ? "$0" : v < 0.01 ? `$${Number(v.toPrecision(2))}` : `$${v.toFixed(2)}`);
  section.append(
    dayChart({
      title: `Spend of ${team.name}`,
      summary: words.join("; "),
      bars: { name: "Spend per day", days: days.map((day) => ({ day, value: byDay.get(day)?.cost_usd || 0 })) },
      line: budgeted && monthly ? { name: "Month to date", points: line } : null,
      limit: budgeted ? { name: `Budget (${period})`, value: budget } : null,
      format: usd,
    }),
  );
  const rows = [...days]
    .reverse()
    .filter((day) => byDay.has(day))
    .map((day) => {
      const row = byDay.get(day);
      return h(
        "tr",
        { dataset: { day } },
        h("th", { scope: "row", class: "nowrap" }, day),
        h("td", { class: "num" }, fmtNumber(row.requests)),
        h("td", { class: "num" }, fmtNumber(row.total_tokens)),
        h("td", { class: "num" }, fmtUsd(row.cost_usd)),
        monthly ? h("td", { class: "num" }, fmtUsd(soFar.get(day))) : null,
      );
    });
  section.append(
    rows.length
      ? h(
          "details",
          { class: "spend-days" },
          h("summary", {}, `Spend per day as a table (${rows.length} ${rows.length === 1 ? "day" : "days"} with requests)`),
          table(["Day (UTC)", "Requests", "Tokens", "Cost", ...(monthly ? ["Month so far"] : [])], rows, `Spend per day of ${team.name}`),
        )
      : h("p", { class: "muted" }, "No requests in the last 30 days."),
    h("p", {}, h("a", { href: `#/logs${query({ team: team.name })}` }, `Requests of ${team.name} in the log`)),
  );
  return section;
}

function settings(team, usage) {
  const row = (label, value) => [h("dt", {}, label), h("dd", { dataset: { setting: label } }, value)];
  const resets = usage && usage.resets_at ? ` (resets ${fmtTime(usage.resets_at)})` : "";
  return h(
    "dl",
    { class: "detail" },
    row("Models", team.allowed_models ? team.allowed_models.join(", ") : "all"),
    row("Limits", limits(team)),
    row("Budget", [budgetCell(team, usage), resets]),
    row("Stored objects", team.shared_objects ? "shared by the team's keys" : "each key its own"),
    row("Metadata", team.metadata && Object.keys(team.metadata).length ? show(team.metadata) : "–"),
    row("Created", fmtTime(team.created_at)),
  );
}

// One team: its settings, its keys (add one from the existing keys, remove one), its spend.
async function renderTeam(root, ctx, id) {
  const flash = h("div", { "aria-live": "polite" });
  const panel = h("div");
  const view = h("div");
  append(root, [h("p", {}, h("a", { href: "#/teams" }, "← All teams")), readOnlyNotice(ctx), flash, panel, view]);

  async function load() {
    let team;
    try {
      team = await api("GET", `/teams/${encodeURIComponent(id)}`);
    } catch (error) {
      clear(view).append(notice("error", error.status === 404 ? `No team with id ${id}.` : error.message));
      return;
    }
    const [usage, members, keys, costs] = await Promise.all([
      teamUsage(team),
      api("GET", `/teams/${team.id}/members`).then((a) => a.data, (error) => error),
      writable(ctx) ? api("GET", "/credentials").then((a) => a.data, () => []) : Promise.resolve([]),
      // Each key's spend in this team over 30 days (null: no request log to read it from).
      api("GET", `/usage${query({ group_by: "key", team: team.name })}`).then((a) => new Map(a.data.map((r) => [r.key, r])), () => null),
    ]);
    const edit = writable(ctx)
      ? h("div", { class: "toolbar" }, h("button", { type: "button", class: "secondary", onclick: () => {
          clear(flash);
          clear(panel).append(teamForm(team, (answer, verb) => {
            clear(panel);
            if (answer) {
              ctx.changed();
              flash.append(notice("ok", `${verb} team ${answer.name}${answer.config_version ? ` (config v${answer.config_version})` : ""}.`));
            }
            load();
          }));
          panel.querySelector("input").focus();
        } }, "Edit team"))
      : null;
    append(clear(view), [
      h("section", { class: "card team", "aria-labelledby": "team-title" }, h("h2", { id: "team-title" }, `Team ${team.name}`), settings(team, usage), edit),
      membersSection(team, members, keys, costs),
      await spendSection(team),
    ]);
  }

  function membersSection(team, members, keys, costs) {
    const section = h("section", { "aria-labelledby": "team-keys" }, h("h2", { id: "team-keys" }, "Keys"));
    if (members instanceof Error) {
      section.append(notice("error", `Keys unavailable: ${members.message}`));
      return section;
    }
    const rows = members.map((k) => {
      const enabled = k.enabled === undefined ? true : k.enabled;
      return h(
        "tr",
        { dataset: { key: k.name } },
        h("th", { scope: "row" }, k.name),
        h("td", { class: "mono" }, k.key_prefix || "–"),
        h("td", {}, h("span", { class: `badge ${enabled ? "good" : "muted"}` }, enabled ? "enabled" : "disabled")),
        costs ? h("td", { class: "num" }, fmtUsd(costs.get(k.name)?.cost_usd ?? 0)) : null,
        writable(ctx)
          ? h("td", { class: "actions-cell" }, h("button", { type: "button", class: "secondary small", "aria-label": `Remove ${k.name} from ${team.name}`, onclick: async () => {
              clear(flash);
              try {
                await api("DELETE", `/teams/${team.id}/members/${k.id}`);
                flash.append(notice("ok", `Removed ${k.name} from ${team.name}: its own limits alone apply to it now.`));
                ctx.changed();
                load();
              } catch (error) {
                flash.append(notice("error", `${k.name} was not removed: ${error.message}`));
              }
            } }, "Remove"))
          : null,
      );
    });
    section.append(
      rows.length
        ? table(["Name", "Key", "Status", ...(costs ? ["Cost in team (30 d)"] : []), ...(writable(ctx) ? ["Actions"] : [])], rows, `Keys of ${team.name}`)
        : h("p", { class: "muted" }, "No keys in this team yet."),
    );
    if (!writable(ctx)) return section;
    const inTeam = new Set(members.map((k) => k.name));
    const candidates = keys.filter((k) => !inTeam.has(k.name));
    if (!candidates.length) {
      section.append(h("p", { class: "muted" }, keys.length ? "Every key is in this team." : ["No keys to add: create one on the ", h("a", { href: "#/keys" }, "Keys page"), "."]));
      return section;
    }
    const select = h(
      "select",
      { name: "key" },
      candidates.map((k) => h("option", { value: k.name }, k.team ? `${k.name} (now in ${k.team})` : k.name)),
    );
    const status = h("div", { "aria-live": "assertive" });
    section.append(
      h(
        "form",
        {
          class: "card add-member",
          "aria-label": `Add a key to ${team.name}`,
          onsubmit: async (event) => {
            event.preventDefault();
            clear(status);
            clear(flash);
            const name = select.value;
            try {
              await api("POST", `/teams/${team.id}/members`, { key: name });
              flash.append(notice("ok", `Added ${name} to ${team.name}.`));
              ctx.changed();
              load();
            } catch (error) {
              status.append(notice("error", `${name} was not added: ${error.message}`));
            }
          },
        },
        h("div", { class: "field-with-button" }, field("Key to add", select, "A key belongs to one team at most: adding one moves it here."), h("button", { type: "submit", class: "primary" }, "Add to team")),
        status,
      ),
    );
    return section;
  }

  await load();
}

export async function render(root, ctx) {
  const id = ctx.rest && ctx.rest[0];
  if (id) await renderTeam(root, ctx, id);
  else await renderList(root, ctx);
}
