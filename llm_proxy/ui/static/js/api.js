// The admin API client: the admin key lives in this tab's session storage only (gone when the
// tab closes) and goes out as a bearer token. No cookie is involved, so no other site can make
// the browser send it.

const STORAGE = "llm-proxy.admin-key";
export const ADMIN = "/admin/v1";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || null;
    this.param = error.param || null;
  }
}

export function adminKey() {
  return sessionStorage.getItem(STORAGE);
}

export function setAdminKey(key) {
  if (key) sessionStorage.setItem(STORAGE, key);
  else sessionStorage.removeItem(STORAGE);
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

async function parse(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      return null;
    }
  }
  return await response.text();
}

// `api("GET", "/stats?window=900")`: the parsed JSON answer, or throws ApiError. `headers`:
// more request headers (`If-Match` for a conditional write).
export async function api(method, path, body, { key = adminKey(), signal, headers: extra = {} } = {}) {
  const headers = { ...extra, Accept: "application/json" };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(ADMIN + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  const data = await parse(response);
  if (!response.ok) {
    if (response.status === 401 && key && key === adminKey()) onUnauthorized();
    throw new ApiError(response.status, data);
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
