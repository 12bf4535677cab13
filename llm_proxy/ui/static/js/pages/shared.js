// What several pages share: the read-only state of YAML mode.

import { h, notice } from "../dom.js";

export function writable(ctx) {
  return !ctx.readOnly;
}

export function readOnlyNotice(ctx) {
  if (!ctx.readOnly) return null;
  return notice(
    "warn",
    h("strong", {}, "Read-only. "),
    "This proxy's configuration comes from a YAML file, so it cannot be changed here: edit the file, then reload (SIGHUP or POST /admin/v1/config/reload). Run the proxy with DB_URL (database mode) to edit from this page.",
  );
}

// "← Newer" / "Older →" over cursor pages: `pages` holds the cursor of each page shown so far
// ("" for the first); `next` is the answer's cursor for the next page (null: the last page).
export function pager(pages, next, load) {
  const newer = h("button", { type: "button", class: "secondary", disabled: pages.length < 2, onclick: () => {
    pages.pop();
    load(pages[pages.length - 1]);
  } }, "← Newer");
  const older = h("button", { type: "button", class: "secondary", disabled: !next, onclick: () => {
    pages.push(next);
    load(next);
  } }, "Older →");
  return h("div", { class: "pager" }, newer, h("span", { class: "muted" }, `Page ${pages.length}`), older);
}
