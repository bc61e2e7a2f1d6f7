// Providers: the list, the add/edit form (admins), tests and health checks.

import { api, items } from "./api.js";
import { $, badge, h, splitList, table } from "./dom.js";
import { formatDate, formatNumber, t } from "./i18n.js";

const READ_ONLY_ORIGINS = new Set(["file", "env"]);
let ui;
let presets = [];
let providers = [];
let health = {}; // id -> the last health-check result
let lastTest = null; // {id, result} | {id, running: true}
let editing = null; // the id being edited, null when adding
let initial = {}; // the edited provider's values as first shown in the form
let storedOrigin = null; // where the edited provider's stored key goes (scheme, host, port); null: no key

export async function init(context) {
  ui = context;
  const response = await fetch("presets.json");
  presets = response.ok ? await response.json() : [];
  const select = $("#pf-type");
  for (const preset of presets) {
    if (preset.id !== "custom") select.append(h("option", { value: preset.id }, preset.name));
  }
  select.addEventListener("change", applyPreset);
  field("base_url").addEventListener("input", askForKeyWhenMoved);
  $("#provider-form").addEventListener("submit", submit);
  $("#pf-cancel").addEventListener("click", resetForm);
  $("#health-check").addEventListener("click", checkHealth);
  $("#providers-refresh").addEventListener("click", () => { ui.clear(); load().catch(ui.error); });
  applyPreset();
}

export async function load() {
  providers = items(await api("GET", "/v1/providers"));
  ui.providers = providers;
  render();
}

export function render() {
  const list = $("#providers-list");
  if (!providers.length) list.replaceChildren(h("p", { class: "empty" }, t("providers.empty")));
  else list.replaceChildren(table(columns(), providers.map(row), t("providers.title")));
  $("#provider-form-title").textContent = editing
    ? t("providers.form.editTitle", { id: editing })
    : t("providers.form.addTitle");
  renderTest();
}

const mayManage = () => ui.isAdmin !== false;

function columns() {
  const names = ["provider", "type", "baseUrl", "status", "models", "origin"].map((c) => t(`providers.col.${c}`));
  return mayManage() ? [...names, t("common.actions")] : names;
}

function typeLabel(type) {
  if (type === "custom") return t("providers.type.custom");
  const preset = presets.find((p) => p.id === type);
  return preset ? preset.name : type || "";
}

function row(p) {
  const count = Array.isArray(p.models) ? p.models.length : Number(p.models) || 0;
  const readOnly = READ_ONLY_ORIGINS.has(p.origin);
  const cells = [
    h("div", { class: "provider-name" },
      h("strong", {}, p.name || p.id),
      h("span", { class: "mono muted" }, p.id),
      p.default ? badge(t("providers.default"), "info") : null),
    typeLabel(p.type),
    h("span", { class: "mono break" }, p.base_url || ""),
    h("div", { class: "badges" }, statusBadges(p)),
    t("providers.modelCount", { count: formatNumber(count) }),
    h("div", { class: "badges" },
      p.origin ? badge(t(`providers.origin.${p.origin}`)) : null,
      readOnly ? badge(t("providers.readOnly"), "muted", t("providers.readOnlyHint")) : null),
  ];
  if (mayManage()) cells.push(actions(p, readOnly));
  return cells;
}

function statusBadges(p) {
  const checked = health[p.id];
  const healthy = checked ? checked.healthy : p.healthy;
  const out = [
    p.configured ? badge(t("providers.configured"), "ok") : badge(t("providers.notConfigured"), "warn"),
    healthy === true ? badge(t("providers.healthy"), "ok")
      : healthy === false ? badge(t("providers.unhealthy"), "bad", checked && checked.error)
      : badge(t("providers.healthUnknown"), "muted"),
  ];
  if (checked && typeof checked.latency_ms === "number") {
    out.push(h("span", { class: "muted small" }, t("providers.latency", { ms: formatNumber(Math.round(checked.latency_ms)) })));
  }
  if (checked && checked.error) out.push(h("span", { class: "small error-text" }, checked.error));
  if (p.capabilities && typeof p.capabilities === "object") out.push(...capabilityBadges(p.capabilities));
  return out;
}

/** What a provider's live test found, in words: "Streaming: no". */
const CAPABILITIES = ["models", "chat", "streaming", "stream_usage", "embeddings"];

function capabilityName(name) {
  switch (name) {
    case "models": return t("providers.capability.models");
    case "chat": return t("providers.capability.chat");
    case "streaming": return t("providers.capability.streaming");
    case "stream_usage": return t("providers.capability.stream_usage");
    case "embeddings": return t("providers.capability.embeddings");
    case "checked_at": return t("providers.capability.checked_at");
    default: return name;
  }
}

function capabilityBadges(found) {
  return CAPABILITIES.filter((name) => typeof found[name] === "boolean").map((name) => found[name]
    ? badge(t("providers.capabilityYes", { name: capabilityName(name) }), "ok")
    : badge(t("providers.capabilityNo", { name: capabilityName(name) }), "bad", t("providers.capabilityNoHint")));
}

function actions(p, readOnly) {
  const label = p.name || p.id;
  return h("div", { class: "row-actions" },
    h("button", { type: "button", onclick: () => test(p.id), "aria-label": `${t("providers.test")} ${label}` }, t("providers.test")),
    readOnly ? null : h("button", { type: "button", onclick: () => edit(p), "aria-label": `${t("providers.edit")} ${label}` }, t("providers.edit")),
    readOnly ? null : h("button", { type: "button", class: "danger", onclick: () => remove(p.id), "aria-label": `${t("providers.delete")} ${label}` }, t("providers.delete")));
}

// ------------------------------------------------------------------------------------------ actions

async function checkHealth() {
  ui.clear();
  const button = $("#health-check");
  button.disabled = true;
  try {
    const result = await api("POST", "/v1/providers/health-check");
    const checked = (result && result.providers) || [];
    health = Object.fromEntries(checked.map((r) => [r.id, r]));
    ui.notice(t("providers.healthDone", { healthy: checked.filter((r) => r.healthy).length, total: checked.length }));
    await load();
  } catch (error) {
    ui.error(error);
  } finally {
    button.disabled = false;
  }
}

async function test(id) {
  ui.clear();
  lastTest = { id, running: true };
  renderTest();
  try {
    lastTest = { id, result: await api("POST", `/v1/providers/${encodeURIComponent(id)}/test`) };
  } catch (error) {
    lastTest = null;
    ui.error(error);
  }
  renderTest();
}

function renderTest() {
  const panel = $("#provider-test");
  panel.hidden = lastTest === null;
  if (lastTest === null) return;
  const close = h("button", { type: "button", class: "icon", "aria-label": t("common.close"),
    onclick: () => { lastTest = null; renderTest(); } }, "×");
  const title = h("h2", {}, t("providers.testTitle", { id: lastTest.id }));
  if (lastTest.running) {
    panel.replaceChildren(h("div", { class: "panel-head" }, title), h("p", {}, t("providers.testRunning", { id: lastTest.id })));
    return;
  }
  const result = lastTest.result || {};
  const shown = result.capabilities && typeof result.capabilities === "object" ? result.capabilities : result;
  panel.replaceChildren(
    h("div", { class: "panel-head" }, title, close),
    h("h3", {}, t("providers.capabilities")),
    h("dl", { class: "facts" }, Object.entries(shown).map(([name, value]) => [h("dt", {}, capabilityName(name)), h("dd", {}, describe(name, value))])),
  );
}

function describe(name, value) {
  if (name === "checked_at" && typeof value === "number") return formatDate(new Date(value * 1000).toISOString());
  if (value === true) return badge(t("common.yes"), "ok");
  if (value === false) return badge(t("common.no"), "bad");
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return h("code", { class: "break" }, JSON.stringify(value));
  return String(value);
}

async function remove(id) {
  ui.clear();
  if (!window.confirm(t("providers.deleteConfirm", { id }))) return;
  try {
    await api("DELETE", `/v1/providers/${encodeURIComponent(id)}`);
    if (editing === id) resetForm();
    ui.notice(t("providers.deleted", { id }));
    await load();
  } catch (error) {
    ui.error(error);
  }
}

// --------------------------------------------------------------------------------------------- form

function field(name) {
  return $("#provider-form").elements[name];
}

function applyPreset() {
  const preset = presets.find((p) => p.id === field("type").value) || {};
  field("base_url").placeholder = preset.base_url || "https://llm.example.edu/v1";
  field("base_url").required = !preset.base_url;
  field("name").placeholder = preset.id === "custom" ? "" : preset.name || "";
  if (!editing) field("allow_private_network").checked = Boolean(preset.allow_private_network);
  if (!editing) field("api").value = presetApi(preset.id);
  askForKeyWhenMoved();
}

/** The API a preset's upstream speaks ("openai" unless it says otherwise). */
function presetApi(type) {
  const preset = presets.find((p) => p.id === type) || {};
  return preset.api || "openai";
}

/** The scheme, host and port of a URL ("" when it does not parse). */
function originOf(url) {
  try {
    return new URL(url).origin;
  } catch {
    return "";
  }
}

/** The URL the form would save: the one typed, else the chosen preset's. */
function effectiveBaseUrl() {
  const preset = presets.find((p) => p.id === field("type").value) || {};
  return field("base_url").value.trim() || preset.base_url || "";
}

/** Editing a provider with a stored key and pointing it at another scheme, host or port: the gateway
 * will not send the stored key (or masked headers) there, so the key is asked for again. */
function askForKeyWhenMoved() {
  const moved = Boolean(editing && storedOrigin !== null && originOf(effectiveBaseUrl()) !== storedOrigin);
  field("api_key").required = moved;
  $("#pf-api-key-moved").hidden = !moved;
  $("#pf-api-key-hint").hidden = !editing || moved;
}

/** The form's values in the API's shape (headers parsed, models split). */
function formValues() {
  const text = field("headers").value.trim();
  let headers = {};
  if (text) {
    try {
      headers = JSON.parse(text);
    } catch {
      throw new Error(t("error.headersJson"));
    }
    const isStringMap = headers && typeof headers === "object" && !Array.isArray(headers)
      && Object.values(headers).every((v) => typeof v === "string");
    if (!isStringMap) throw new Error(t("error.headersJson"));
  }
  return {
    type: field("type").value,
    id: field("id").value.trim(),
    name: field("name").value.trim(),
    base_url: field("base_url").value.trim(),
    api_key: field("api_key").value,
    headers,
    models: splitList(field("models").value),
    api: field("api").value,
    allow_private_network: field("allow_private_network").checked,
  };
}

/** Adding sends what was filled in; editing sends only what changed (PUT merges). */
function requestBody(values) {
  if (!editing) {
    const body = { id: values.id, type: values.type, allow_private_network: values.allow_private_network };
    for (const name of ["name", "base_url", "api_key"]) if (values[name]) body[name] = values[name];
    if (values.api !== presetApi(values.type)) body.api = values.api;
    if (Object.keys(values.headers).length) body.headers = values.headers;
    if (values.models.length) body.models = values.models;
    return body;
  }
  const body = {};
  for (const [name, value] of Object.entries(values)) {
    if (name === "id" || name === "api_key") continue;
    if (JSON.stringify(value) !== JSON.stringify(initial[name])) body[name] = value;
  }
  if (values.api_key) body.api_key = values.api_key; // empty keeps the stored key
  return body;
}

async function submit(event) {
  event.preventDefault();
  ui.clear();
  const form = event.target;
  if (!form.reportValidity()) return;
  let values;
  try {
    values = formValues();
  } catch (error) {
    ui.error(error);
    return;
  }
  const body = requestBody(values);
  try {
    const saved = editing
      ? await api("PUT", `/v1/providers/${encodeURIComponent(editing)}`, body)
      : await api("POST", "/v1/providers", body);
    ui.notice(t("providers.saved", { id: (saved && saved.id) || editing || values.id }));
    resetForm();
    await load();
  } catch (error) {
    ui.error(error);
    const refused = error.body && error.body.error;
    if (refused && refused.code === "api_key_required") focusRefusedSecret(refused.param);
  }
}

/** After a refused move, put the cursor where the secret is to be given again. */
function focusRefusedSecret(param) {
  const target = param === "api_key" ? field("api_key") : param && param.startsWith("headers.") ? field("headers") : null;
  if (target) target.focus();
}

async function edit(p) {
  ui.clear();
  let detail = p;
  try {
    detail = { ...p, ...(await api("GET", `/v1/providers/${encodeURIComponent(p.id)}`)) };
  } catch {
    detail = { ...p, models: undefined, headers: undefined }; // only the list's view: leave those alone
  }
  editing = p.id;
  const form = $("#provider-form");
  form.reset();
  field("type").value = detail.type || "custom";
  applyPreset();
  field("id").value = p.id;
  field("id").readOnly = true;
  field("name").value = detail.name || "";
  field("base_url").value = detail.base_url || "";
  field("headers").value = detail.headers && Object.keys(detail.headers).length ? JSON.stringify(detail.headers) : "";
  field("models").value = Array.isArray(detail.models) ? detail.models.join(", ") : "";
  if (detail.api) field("api").value = detail.api;
  field("allow_private_network").checked = Boolean(detail.allow_private_network);
  initial = formValues();
  storedOrigin = detail.api_key ? originOf(detail.base_url || effectiveBaseUrl()) : null;
  askForKeyWhenMoved();
  $("#pf-cancel").hidden = false;
  $("#pf-submit").dataset.i18n = "providers.form.submitEdit";
  $("#pf-submit").textContent = t("providers.form.submitEdit");
  render();
  form.scrollIntoView({ block: "start" });
  field("name").focus();
}

function resetForm() {
  editing = null;
  initial = {};
  storedOrigin = null;
  $("#provider-form").reset();
  field("id").readOnly = false;
  $("#pf-cancel").hidden = true;
  $("#pf-submit").dataset.i18n = "providers.form.submitAdd";
  $("#pf-submit").textContent = t("providers.form.submitAdd");
  applyPreset();
  render();
}
