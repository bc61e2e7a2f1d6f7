// Providers: the list, the add/edit form (admins), tests and health checks.

import { api, items } from "./api.js";
import { $, badge, h, splitList, table } from "./dom.js";
import { formatDate, formatMoney, formatNumber, t } from "./i18n.js";

const READ_ONLY_ORIGINS = new Set(["file", "env"]);
let ui;
let presets = [];
let providers = [];
let health = {}; // id -> the last health-check result
let lastTest = null; // {id, result} | {id, running: true}
let editing = null; // the id being edited, null when adding
let initial = {}; // the edited provider's values as first shown in the form
let storedOrigin = null; // where the edited provider's stored key goes (scheme, host, port); null: no key
let priced = null; // {id, models: [...], error?} the price list shown

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
  field("auth").addEventListener("change", showKeyField);
  $("#pf-add-price").addEventListener("click", () => addPriceRow());
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
  renderPrices();
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

/** Whether a key goes with the provider's requests: "Key set" only when one does (a keyless backend
 * needs none; a provider that is "configured" without a key is not one with a key). */
function keyBadge(p) {
  if (p.auth === "none") return badge(t("providers.keyless"), "info", t("providers.keylessHint"));
  const hasKey = typeof p.key_set === "boolean" ? p.key_set : p.configured;
  return hasKey ? badge(t("providers.configured"), "ok") : badge(t("providers.notConfigured"), "warn");
}

function statusBadges(p) {
  const checked = health[p.id];
  const healthy = checked ? checked.healthy : p.healthy;
  const out = [
    keyBadge(p),
    healthy === true ? badge(t("providers.healthy"), "ok")
      : healthy === false ? badge(t("providers.unhealthy"), "bad", checked && checked.error)
      : badge(t("providers.healthUnknown"), "muted"),
  ];
  if (checked) out.push(h("span", { class: "muted small" }, healthCheckSaid(checked)));
  if (checked && checked.error) out.push(h("span", { class: "small error-text" }, checked.error));
  if (p.capabilities && typeof p.capabilities === "object") out.push(...capabilityBadges(p.capabilities));
  return out;
}

/** What a health check did, in words: "Model list answered in 40 ms, without a key". */
function healthCheckSaid(checked) {
  const ms = typeof checked.latency_ms === "number" ? formatNumber(Math.round(checked.latency_ms)) : "?";
  const what = checked.healthy ? t("providers.health.answered", { ms }) : t("providers.health.failed", { ms });
  if (typeof checked.key_sent !== "boolean") return what;
  return `${what} · ${checked.key_sent ? t("providers.health.withKey") : t("providers.health.withoutKey")}`;
}

/** What a provider's live test found, in words: "Streaming: no". */
const CAPABILITIES = ["models", "chat", "streaming", "stream_usage", "embeddings", "responses"];

function capabilityName(name) {
  switch (name) {
    case "models": return t("providers.capability.models");
    case "chat": return t("providers.capability.chat");
    case "streaming": return t("providers.capability.streaming");
    case "stream_usage": return t("providers.capability.stream_usage");
    case "embeddings": return t("providers.capability.embeddings");
    case "responses": return t("providers.capability.responses");
    case "checked_at": return t("providers.capability.checked_at");
    case "model": return t("providers.capability.model");
    case "key_sent": return t("providers.capability.key_sent");
    case "auth": return t("providers.capability.auth");
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
    h("button", { type: "button", onclick: () => showPrices(p.id), "aria-label": `${t("providers.prices")} ${label}` }, t("providers.prices")),
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
  const found = result.capabilities && typeof result.capabilities === "object" ? result.capabilities : {};
  const facts = [];
  if (typeof result.key_sent === "boolean") {
    facts.push([capabilityName("key_sent"), result.key_sent
      ? badge(t("common.yes"), "ok")
      : h("span", {}, badge(t("common.no"), "warn"), " ", h("span", { class: "small muted" }, t("providers.testWithoutKey")))]);
  }
  if (result.auth) facts.push([capabilityName("auth"), t(`providers.auth.${result.auth}`)]);
  if (result.model) facts.push([capabilityName("model"), h("code", { class: "break" }, String(result.model))]);
  for (const name of CAPABILITIES) {
    const outcome = result[name];
    const ok = outcome && typeof outcome === "object" ? outcome.ok : found[name];
    if (typeof ok !== "boolean") continue;
    facts.push([capabilityName(name), checkOutcome(ok, outcome)]);
  }
  if (typeof result.checked_at === "number") {
    facts.push([capabilityName("checked_at"), formatDate(new Date(result.checked_at * 1000).toISOString())]);
  }
  panel.replaceChildren(
    h("div", { class: "panel-head" }, title, close),
    h("h3", {}, t("providers.capabilities")),
    h("dl", { class: "facts" }, facts.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
  );
}

/** One check's outcome: yes or no, then what it saw (models listed, time taken, the error). */
function checkOutcome(ok, outcome) {
  const shown = badge(ok ? t("common.yes") : t("common.no"), ok ? "ok" : "bad");
  if (!outcome || typeof outcome !== "object") return shown;
  const notes = [];
  if (typeof outcome.count === "number") notes.push(t("providers.modelCount", { count: formatNumber(outcome.count) }));
  if (typeof outcome.latency_ms === "number") notes.push(t("providers.latency", { ms: formatNumber(Math.round(outcome.latency_ms)) }));
  if (outcome.error) notes.push(String(outcome.error));
  return notes.length ? h("span", {}, shown, " ", h("span", { class: "small muted break" }, notes.join(" · "))) : shown;
}

// ------------------------------------------------------------------------------------------- prices

async function showPrices(id) {
  ui.clear();
  priced = { id, models: null };
  renderPrices();
  try {
    const body = await api("GET", `/v1/providers/${encodeURIComponent(id)}/models`);
    priced = { id, models: items(body), error: body && body.error };
  } catch (error) {
    priced = null;
    ui.error(error);
  }
  renderPrices();
}

function renderPrices() {
  const panel = $("#provider-prices");
  panel.hidden = priced === null;
  if (priced === null) return;
  const close = h("button", { type: "button", class: "icon", "aria-label": t("common.close"), onclick: () => { priced = null; renderPrices(); } }, "×");
  const head = h("div", { class: "panel-head" }, h("h2", {}, t("providers.pricesTitle", { id: priced.id })), close);
  if (priced.models === null) return panel.replaceChildren(head, h("p", {}, t("common.loading")));
  const columns = [t("models.col.id"), t("providers.price.input"), t("providers.price.output"), t("providers.price.origin")];
  const perMillion = (value) => formatMoney(value, "USD");
  panel.replaceChildren(
    head,
    h("p", { class: "hint" }, t("providers.pricesHelp")),
    priced.models.length
      ? table(columns, priced.models.map((m) => m.price
        ? [h("span", { class: "mono break" }, m.id), perMillion(m.price.input), perMillion(m.price.output), t(`providers.price.from.${m.price.origin}`)]
        : [h("span", { class: "mono break" }, m.id), "—", "—", badge(t("providers.price.unknown"), "warn")]), t("providers.pricesTitle", { id: priced.id }))
      : h("p", { class: "empty" }, t("models.empty")),
  );
}

function addPriceRow(model = "", price = null) {
  const input = (name, labelKey, value, attrs = {}) => h("div", { class: "field" },
    h("label", {}, t(labelKey), h("input", { name, value: value ?? "", spellcheck: "false", autocomplete: "off", ...attrs })));
  const rowEl = h("div", { class: "price-row grid grid-4" },
    input("price_model", "providers.price.model", model),
    input("price_input", "providers.price.input", price ? price.input : "", { type: "number", min: "0", step: "any", inputmode: "decimal" }),
    input("price_output", "providers.price.output", price ? price.output : "", { type: "number", min: "0", step: "any", inputmode: "decimal" }),
    h("div", { class: "field field-end" }, h("button", { type: "button", class: "danger", onclick: () => rowEl.remove() }, t("providers.price.remove"))));
  $("#pf-prices").append(rowEl);
}

/** {model: {input, output}} from the price rows (USD per million tokens); a row without a model is skipped. */
function readPrices() {
  const prices = {};
  for (const rowEl of $("#pf-prices").querySelectorAll(".price-row")) {
    const model = rowEl.querySelector("[name=price_model]").value.trim();
    if (!model) continue;
    const read = (name, labelKey) => {
      const value = Number(rowEl.querySelector(`[name=${name}]`).value);
      const raw = rowEl.querySelector(`[name=${name}]`).value.trim();
      if (!raw || !Number.isFinite(value) || value < 0) throw new Error(t("error.number", { field: `${model}: ${t(labelKey)}` }));
      return value;
    };
    prices[model] = { input: read("price_input", "providers.price.input"), output: read("price_output", "providers.price.output") };
  }
  return prices;
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
  if (!editing) field("auth").value = preset.auth || "bearer";
  askForKeyWhenMoved();
  showKeyField();
}

/** With "no key" chosen, the key field has nothing to do. */
function showKeyField() {
  const keyless = field("auth").value === "none";
  field("api_key").disabled = keyless;
  $("#pf-auth-none").hidden = !keyless;
}

/** How a preset's upstream takes its key ("bearer" unless it says otherwise). */
function presetAuth(type) {
  const preset = presets.find((p) => p.id === type) || {};
  return preset.auth || "bearer";
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
    auth: field("auth").value,
    prices: readPrices(),
    allow_private_network: field("allow_private_network").checked,
  };
}

/** Adding sends what was filled in; editing sends only what changed (PUT merges). */
function requestBody(values) {
  if (!editing) {
    const body = { id: values.id, type: values.type, allow_private_network: values.allow_private_network };
    for (const name of ["name", "base_url", "api_key"]) if (values[name]) body[name] = values[name];
    if (values.api !== presetApi(values.type)) body.api = values.api;
    if (values.auth !== presetAuth(values.type)) body.auth = values.auth;
    if (Object.keys(values.prices).length) body.prices = values.prices;
    if (Object.keys(values.headers).length) body.headers = values.headers;
    if (values.models.length) body.models = values.models;
    return body;
  }
  const body = {};
  for (const [name, value] of Object.entries(values)) {
    if (name === "id" || name === "api_key") continue;
    if (JSON.stringify(value) !== JSON.stringify(initial[name])) body[name] = value;
  }
  if (values.api_key && values.auth !== "none") body.api_key = values.api_key; // empty keeps the stored key
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
  field("auth").value = detail.auth || presetAuth(detail.type);
  $("#pf-prices").replaceChildren();
  for (const [model, price] of Object.entries(detail.prices || {})) addPriceRow(model, price);
  showKeyField();
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
  $("#pf-prices").replaceChildren();
  field("id").readOnly = false;
  $("#pf-cancel").hidden = true;
  $("#pf-submit").dataset.i18n = "providers.form.submitAdd";
  $("#pf-submit").textContent = t("providers.form.submitAdd");
  applyPreset();
  render();
}
