// The gateway's API on the same origin, with the signed-in key as a Bearer token.

const KEY_STORAGE = "anygate.key";

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY_STORAGE); },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  },
  csrf: null, // a console session's CSRF token (signed in with the organisation's identity: signin.js)
  get active() { return Boolean(this.key || this.csrf); },
};

/** Call the API; resolve to the parsed JSON body (null when empty), reject with ApiError.
 * `contentType`: send `body` as that text instead of JSON. */
export async function api(method, path, body = undefined, contentType = null) {
  const headers = { Accept: "application/json" };
  if (session.key) headers.Authorization = `Bearer ${session.key}`;
  else if (session.csrf && method !== "GET") headers["X-CSRF-Token"] = session.csrf;
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const payload = body === undefined ? undefined : contentType ? body : JSON.stringify(body);
  const response = await send(path, { method, headers, body: payload });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, errorMessage(parsed), parsed);
  return parsed;
}

async function send(path, options) {
  try {
    return await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, error.message || String(error));
  }
}

/** Fetch a file the API makes (a CSV export) with the signed-in key, and hand it to the browser as a
 * download: a link to the URL would not carry the key. */
export async function download(path, filename) {
  const headers = {};
  if (session.key) headers.Authorization = `Bearer ${session.key}`;
  const response = await send(path, { method: "GET", headers });
  if (!response.ok) {
    let parsed = null;
    try { parsed = await response.json(); } catch { parsed = null; }
    throw new ApiError(response.status, errorMessage(parsed), parsed);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** "?a=1&b=2" from the entries whose value is not empty. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** The message of an OpenAI-style error body {"error": {"message": ...}}, else "". */
function errorMessage(body) {
  const error = body && body.error;
  if (error && typeof error.message === "string") return error.message;
  if (typeof error === "string") return error;
  if (body && typeof body.detail === "string") return body.detail;
  return "";
}

/** A list endpoint's items, whether it answers {"data": [...]} or a bare array. */
export function items(body) {
  if (Array.isArray(body)) return body;
  return Array.isArray(body && body.data) ? body.data : [];
}
