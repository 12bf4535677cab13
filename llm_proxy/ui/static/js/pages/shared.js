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
    "This proxy's configuration comes from a YAML file, so it cannot be changed here: edit the file, then reload (SIGHUP or POST /admin/v1/config/reload). Run the proxy with DATABASE_URL to edit from this page.",
  );
}
