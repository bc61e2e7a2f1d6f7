// Keys (admins): the list, creating a key (its secret shown once) and revoking one.

import { ApiError, api, items } from "./api.js";
import { $, badge, h, splitList, table } from "./dom.js";
import { formatMoney, formatNumber, t } from "./i18n.js";

let ui;
let keys = [];
let secret = null; // {alias, key} of the key just created

export function init(context) {
  ui = context;
  $("#key-form").addEventListener("submit", submit);
  $("#key-secret-copy").addEventListener("click", copySecret);
}

/** Also tells the console whether the caller is an admin: 200 yes, 403 no, 404 unknown. */
export async function load() {
  try {
    keys = items(await api("GET", "/v1/keys"));
  } catch (error) {
    if (error instanceof ApiError) ui.setAdmin(error.status === 403 ? false : error.status === 404 ? null : ui.isAdmin);
    throw error;
  }
  ui.setAdmin(true);
  render();
}

export function render() {
  const list = $("#keys-list");
  if (!keys.length) list.replaceChildren(h("p", { class: "empty" }, t("keys.empty")));
  else {
    const columns = ["alias", "id", "models", "budget", "limits"].map((c) => t(`keys.col.${c}`));
    list.replaceChildren(table([...columns, t("common.actions")], keys.map(row), t("keys.title")));
  }
  const panel = $("#key-secret");
  panel.hidden = secret === null;
  if (secret) {
    $("#key-secret-title").textContent = t("keys.secret.title", { alias: secret.alias });
    $("#key-secret-value").value = secret.key;
  }
}

function row(k) {
  const label = k.alias || k.id;
  return [
    h("strong", {}, k.alias || "—"),
    h("span", { class: "mono muted" }, k.id || ""),
    Array.isArray(k.models) && k.models.length
      ? h("span", { class: "mono break" }, k.models.join(", "))
      : badge(t("keys.allModels"), "muted"),
    describeBudget(k.budget),
    describeLimits(k.limits),
    h("button", { type: "button", class: "danger", onclick: () => revoke(k), "aria-label": `${t("keys.revoke")} ${label}` }, t("keys.revoke")),
  ];
}

function describeBudget(budget) {
  if (!budget || (budget.tokens == null && budget.usd == null)) return t("common.unlimited");
  const parts = [];
  if (budget.tokens != null) parts.push(t("keys.budget.tokens", { n: formatNumber(budget.tokens) }));
  if (budget.usd != null) parts.push(formatMoney(budget.usd, "USD"));
  parts.push(t(`period.${budget.period || "none"}`));
  parts.push(t(`mode.${budget.mode || "hard"}`));
  return parts.join(" · ");
}

function describeLimits(limits) {
  if (!limits) return "—";
  const parts = ["rpm", "tpm", "concurrency"]
    .filter((name) => limits[name] != null)
    .map((name) => t(`keys.limits.${name}`, { n: formatNumber(limits[name]) }));
  return parts.length ? parts.join(" · ") : "—";
}

function numberField(form, name, labelKey) {
  const raw = form.elements[name].value.trim();
  if (!raw) return null;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(t("error.number", { field: t(labelKey) }));
  return value;
}

function requestBody(form) {
  const body = { alias: form.elements.alias.value.trim() };
  const models = splitList(form.elements.models.value);
  if (models.length) body.models = models;
  const tokens = numberField(form, "tokens", "keys.form.tokens");
  const usd = numberField(form, "usd", "keys.form.usd");
  if (tokens !== null || usd !== null) {
    body.budget = { period: form.elements.period.value, mode: form.elements.mode.value };
    if (tokens !== null) body.budget.tokens = Math.round(tokens);
    if (usd !== null) body.budget.usd = usd;
  }
  const limits = {};
  for (const [name, labelKey] of [["rpm", "keys.form.rpm"], ["tpm", "keys.form.tpm"], ["concurrency", "keys.form.concurrency"]]) {
    const value = numberField(form, name, labelKey);
    if (value !== null) limits[name] = Math.round(value);
  }
  if (Object.keys(limits).length) body.limits = limits;
  return body;
}

async function submit(event) {
  event.preventDefault();
  ui.clear();
  const form = event.target;
  if (!form.reportValidity()) return;
  try {
    const created = await api("POST", "/v1/keys", requestBody(form));
    secret = { alias: created.alias || form.elements.alias.value, key: created.key };
    form.reset();
    await load();
    $("#key-secret-copy").focus();
  } catch (error) {
    ui.error(error);
  }
}

async function copySecret() {
  const input = $("#key-secret-value");
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select(); // plain-HTTP origins have no clipboard API: select for a manual copy
    document.execCommand("copy");
  }
  ui.notice(t("common.copied"));
}

async function revoke(k) {
  ui.clear();
  const alias = k.alias || k.id;
  if (!window.confirm(t("keys.revokeConfirm", { alias }))) return;
  try {
    await api("DELETE", `/v1/keys/${encodeURIComponent(k.id)}`);
    ui.notice(t("keys.revoked", { alias }));
    await load();
  } catch (error) {
    ui.error(error);
  }
}
