// The shell: login, navigation, and the hash router (#/dashboard, #/logs?..., ...). Each page
// module exports `render(root, ctx)` and may return a cleanup function (timers, streams).

import { ADMIN, ApiError, adminKey, api, setAdminKey, whenUnauthorized } from "./api.js";
import { clear, field, h, notice } from "./dom.js";
import * as dashboard from "./pages/dashboard.js";
import * as history from "./pages/history.js";
import * as keys from "./pages/keys.js";
import * as logs from "./pages/logs.js";
import * as playground from "./pages/playground.js";
import * as providers from "./pages/providers.js";
import * as routing from "./pages/routing.js";
import * as teams from "./pages/teams.js";

const PAGES = [
  { path: "dashboard", title: "Dashboard", module: dashboard },
  { path: "providers", title: "Providers", module: providers },
  { path: "keys", title: "Keys", module: keys },
  { path: "teams", title: "Teams", module: teams },
  { path: "routing", title: "Routing", module: routing },
  { path: "logs", title: "Logs", module: logs },
  { path: "history", title: "History", module: history },
  { path: "playground", title: "Playground", module: playground },
];

const app = document.getElementById("app");
let cleanup = null;
const ctx = { source: null, version: null, readOnly: false, admin: null };
let versionBadge = null;

// After a write: the header shows the version now served.
async function changed() {
  await refreshContext();
  if (versionBadge) versionBadge.textContent = `config v${ctx.version}`;
}

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [pathPart, search = ""] = hash.split("?");
  const [page, ...rest] = pathPart.split("/");
  return { page: page || "dashboard", rest: rest.map(decodeURIComponent), params: new URLSearchParams(search) };
}

// Go to a page; the page already shown is rendered again (a Filter click refreshes).
export function navigate(path) {
  const next = `#/${path}`;
  if (location.hash === next) show();
  else location.hash = next;
}

// Leave the page shown: its timers and streams stop.
function leave() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
}

function loginView(message) {
  leave();
  const input = h("input", { type: "password", name: "admin-key", autocomplete: "current-password", required: true, autofocus: true });
  const status = h("div", { class: "login-status", "aria-live": "assertive" }, message ? notice("error", message) : null);
  const form = h(
    "form",
    {
      class: "login card",
      "aria-labelledby": "login-title",
      onsubmit: async (event) => {
        event.preventDefault();
        clear(status);
        const key = input.value.trim();
        try {
          const answer = await api("POST", "/auth/validate", undefined, { key });
          setAdminKey(key);
          ctx.admin = answer.name;
          input.value = "";
          await start();
        } catch (error) {
          const text =
            error instanceof ApiError && error.status === 401
              ? "That admin key was refused."
              : `Could not log in: ${error.message}`;
          status.append(notice("error", text));
          input.select();
        }
      },
    },
    h("h1", { id: "login-title" }, "llm-proxy admin"),
    field("Admin key", input, "The value of ADMIN_KEY (or one of admin_keys). It is kept in this tab only."),
    h("button", { type: "submit", class: "primary" }, "Log in"),
    status,
  );
  clear(app).append(h("main", { class: "login-page" }, form));
  input.focus();
}

function shell(current) {
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    h(
      "ul",
      {},
      PAGES.map((p) =>
        h("li", {}, h("a", { href: `#/${p.path}`, "aria-current": p.path === current ? "page" : null }, p.title)),
      ),
    ),
  );
  const version = h("span", { class: "version", title: "Configuration version served" }, `config v${ctx.version ?? "?"}`);
  versionBadge = version;
  const source = h(
    "span",
    { class: `badge ${ctx.readOnly ? "warn" : "good"}`, title: ctx.readOnly ? "Configuration comes from a YAML file" : "Configuration lives in PostgreSQL" },
    ctx.readOnly ? "YAML (read-only)" : "PostgreSQL",
  );
  const logout = h(
    "button",
    {
      type: "button",
      class: "secondary small",
      onclick: () => {
        setAdminKey(null);
        location.hash = "";
        loginView();
      },
    },
    "Log out",
  );
  const header = h(
    "header",
    { class: "top" },
    h("a", { class: "brand", href: "#/dashboard" }, "llm-proxy"),
    nav,
    h("div", { class: "meta" }, source, version, logout),
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  const skip = h(
    "a",
    { class: "skip", href: "#main", onclick: (event) => (event.preventDefault(), main.focus()) },
    "Skip to content",
  );
  clear(app).append(skip, header, main);
  return main;
}

async function refreshContext() {
  const info = await api("GET", "/config/version");
  ctx.version = info.version;
  ctx.source = info.source;
  ctx.readOnly = info.source !== "database";
}

async function show() {
  leave();
  if (!adminKey()) return loginView();
  const { page, rest, params } = route();
  const entry = PAGES.find((p) => p.path === page) || PAGES[0];
  try {
    await refreshContext();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return loginView("Your admin key is no longer accepted.");
    clear(app).append(notice("error", `The proxy did not answer: ${error.message}`));
    return;
  }
  const main = shell(entry.path);
  document.title = `${entry.title} · llm-proxy`;
  main.append(h("h1", {}, entry.title));
  try {
    cleanup = (await entry.module.render(main, { ...ctx, rest, params, changed, navigate })) || null;
  } catch (error) {
    main.append(notice("error", error.message));
  }
}

async function start() {
  if (!location.hash || location.hash === "#") location.hash = "#/dashboard";
  await show();
}

whenUnauthorized(() => {
  setAdminKey(null);
  loginView("Your admin key is no longer accepted.");
});
window.addEventListener("hashchange", show);
export { ADMIN };
start();
