// History: every config change (who, when, what), each with a field-by-field diff and a
// rollback to the configuration just before it (with confirmation).

import { api, query } from "../api.js";
import { clear, confirmDialog, fmtTime, h, notice, show } from "../dom.js";
import { pager, writable } from "./shared.js";

const TABLE_NAMES = { providers: "provider", credentials: "master key", teams: "team" };

function diff(change) {
  const op = change.operation.toLowerCase();
  const before = change.before || {};
  const after = change.after || {};
  const names =
    op === "update" ? change.fields_changed : Object.keys(op === "insert" ? after : before);
  const hidden = new Set(["id", "created_at", "updated_at"]);
  const rows = names
    .filter((n) => !hidden.has(n))
    .map((name) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, name),
        h("td", { class: "before wrap" }, op === "insert" ? "" : show(before[name])),
        h("td", { class: "after wrap" }, op === "delete" ? "" : show(after[name])),
      ),
    );
  return h(
    "table",
    { class: "diff" },
    h("caption", { class: "visually-hidden" }, `Changes to ${change.name}`),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Field"), h("th", { scope: "col" }, "Before"), h("th", { scope: "col" }, "After"))),
    h("tbody", {}, rows),
  );
}

function summary(change) {
  const what = TABLE_NAMES[change.table] || change.table;
  const op = change.operation.toLowerCase();
  const verb = { insert: "created", update: "changed", delete: "deleted" }[op] || op;
  return `${what} ${change.name ?? `#${change.row_id}`} ${verb}`;
}

export async function render(root, ctx) {
  const flash = h("div", { "aria-live": "polite" });
  const list = h("div");
  root.append(flash, list);
  const pages = [""];

  async function load(before) {
    let answer;
    try {
      answer = await api("GET", `/config/history${query({ before, limit: 30 })}`);
    } catch (error) {
      clear(list).append(notice(error.status === 409 ? "warn" : "error", error.message));
      return;
    }
    const versions = new Map();
    for (const change of answer.data) {
      if (!versions.has(change.version)) versions.set(change.version, []);
      versions.get(change.version).push(change);
    }
    const items = [...versions.entries()].map(([version, changes]) => {
      const first = changes[0];
      const target = version - 1;
      const canRollBack = writable(ctx) && target >= 1;
      const rollback = h(
        "button",
        {
          type: "button",
          class: "danger small",
          disabled: !canRollBack,
          "aria-label": `Roll back version ${version}`,
          onclick: async () => {
            const ok = await confirmDialog(
              `Roll back to version ${target}?`,
              `Providers, master keys, teams and routing go back to exactly what they were at version ${target}, undoing version ${version} and everything after it; master keys rotated or deleted since stay revoked. The rollback is itself recorded as a new version.`,
              "Roll back",
            );
            if (!ok) return;
            try {
              const result = await api("POST", "/config/rollback", { version: target });
              const kept = (result.keys_left_out || []).map((k) => `${k.name} (${k.reason})`);
              const revoked = kept.length ? ` Master keys kept revoked: ${kept.join(", ")}.` : "";
              clear(flash).append(notice("ok", `Rolled back to version ${target}: now serving version ${result.version}.${revoked}`));
              pages.length = 1;
              ctx.changed();
              load("");
            } catch (error) {
              clear(flash).append(notice("error", error.message));
            }
          },
        },
        "Roll back",
      );
      return h(
        "li",
        { class: "card change", dataset: { version: String(version) } },
        h(
          "div",
          { class: "change-head" },
          h("h2", {}, `v${version}`, version === answer.current_version ? h("span", { class: "badge good" }, "current") : null),
          h("span", { class: "muted" }, `${fmtTime(first.changed_at)} · by ${show(first.changed_by)}`),
          rollback,
        ),
        changes.map((change) => h("div", { class: "change-row" }, h("p", { class: "change-summary" }, summary(change)), diff(change))),
      );
    });
    clear(list).append(
      h("p", { class: "muted" }, `Serving version ${answer.current_version}; history from version ${answer.first_version}.`),
      items.length ? h("ol", { class: "changes" }, items) : h("p", { class: "muted" }, "No changes recorded yet."),
      pager(pages, answer.next_before, load),
    );
  }
  await load("");
}
