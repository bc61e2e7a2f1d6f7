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

/** Call the API; resolve to the parsed JSON body (null when empty), reject with ApiError. */
export async function api(method, path, body = undefined) {
  const headers = { Accept: "application/json" };
  if (session.key) headers.Authorization = `Bearer ${session.key}`;
  else if (session.csrf && method !== "GET") headers["X-CSRF-Token"] = session.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (error) {
    throw new ApiError(0, error.message || String(error));
  }
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
