// Keys: the keys the caller manages (an admin: every key; a team admin: its team's; a key holder: its own key
// and the keys it made), active ones apart from revoked and expired ones, creating a key (its secret shown
// once), editing one (PATCH sends only what changed; the API refuses what the caller may not give: a key
// holder only narrows) and revoking one (never the key signed in with: that would lock the caller out).

import { ApiError, api, items } from "./api.js";
import { $, badge, h, splitList, table, update } from "./dom.js";
import { formatDate, formatMoney, t } from "./i18n.js";
import { addBudgetRow, describeBudgets, fillBudgets, readBudgets, relabelBudgets } from "./budgets.js";
import { describeLimits, fillLimits, readLimits } from "./limits.js";

let ui;
let keys = [];
let spend = {}; // key id -> USD, all time
let secret = null; // {alias, key} of the key just created
let editing = null; // the key being edited
let initial = {}; // its fields as first shown in the form
let listings = 0; // loads started, and saves answered: a load shows its answers only if it is the last of them

export function init(context) {
  ui = context;
  $("#key-form").addEventListener("submit", submit);
  $("#kf-cancel").addEventListener("click", resetForm);
  $("#kf-add-budget").addEventListener("click", () => addBudgetRow($("#kf-budgets")));
  $("#key-secret-copy").addEventListener("click", copySecret);
}

/** Also tells the console who the caller is: the answer's `caller.role` (admin, team_admin or user); a
 * gateway without the keys API (404) leaves it unknown. */
export async function load() {
  // Loads overlap (the section opened while the sign-in's load runs, a save while a reload runs) and their
  // answers land in any order: an older one's would put back what a newer one, or a save, has replaced.
  const listing = ++listings;
  let answer;
  try {
    answer = await api("GET", "/v1/keys");
  } catch (error) {
    if (error instanceof ApiError) ui.setRole(error.status === 403 ? "user" : error.status === 404 ? null : ui.role);
    throw error;
  }
  ui.caller = answer && answer.caller ? answer.caller : null; // the same in every answer of a session
  ui.setRole(ui.caller ? ui.caller.role : null);
  const perKey = await spendBy("key");
  if (listing !== listings) return;
  keys = items(answer);
  ui.keys = keys;
  spend = perKey;
  render();
}

/** USD spent per key (or user, team) over all time, from the usage report; {} when it cannot be read. */
export async function spendBy(group) {
  try {
    const rows = items(await api("GET", `/v1/usage?group_by=${group}`));
    return Object.fromEntries(rows.map((row) => [row[group], row.cost_usd]));
  } catch {
    return {};
  }
}

/** "active", "expired" or "revoked": the API's word, else worked out from the key's own fields. */
export function statusOf(k) {
  if (k.status) return k.status;
  if (k.revoked_at) return "revoked";
  if (k.expires_at && new Date(k.expires_at) <= new Date()) return "expired";
  return "active";
}

export function render() {
  const active = keys.filter((k) => statusOf(k) === "active");
  const inactive = keys.filter((k) => statusOf(k) !== "active");
  const ids = (list) => list.map((k) => k.id);
  const activeView = h("div", { id: "keys-active" }, h("h2", {}, t("keys.active")));
  if (!active.length) activeView.append(h("p", { class: "empty" }, t("keys.empty")));
  else {
    const columns = ["alias", "id", "user", "models", "budget", "limits", "expires", "spend", "createdBy"].map((c) => t(`keys.col.${c}`));
    activeView.append(table([...columns, t("common.actions")], active.map(activeRow), t("keys.active"), ids(active)));
  }
  const inactiveView = h("div", { id: "keys-inactive", class: "section-gap" }, h("h2", {}, t("keys.inactive")));
  const columns = ["alias", "id", "user", "status", "when", "spend", "createdBy"].map((c) => t(`keys.col.${c}`));
  inactiveView.append(table([...columns, t("common.actions")], inactive.map(inactiveRow), t("keys.inactive"), ids(inactive)));
  inactiveView.hidden = !inactive.length;
  // In place (update): a reload landing under a pressed Edit button must leave that button there to click.
  update($("#keys-list"), activeView, inactiveView);
  relabelBudgets($("#kf-budgets"));
  $("#key-form-title").textContent = editing ? t("keys.form.editTitle", { alias: editing.alias || editing.id }) : t("keys.form.title");
  const panel = $("#key-secret");
  panel.hidden = secret === null;
  if (secret) {
    $("#key-secret-title").textContent = t("keys.secret.title", { alias: secret.alias });
    $("#key-secret-value").value = secret.key;
  }
}

const mono = (text) => h("span", { class: "mono muted break" }, text || "—");
const money = (value) => (typeof value === "number" ? formatMoney(value, "USD") : "—");

/** Whether `k` is the key the console is signed in with. */
const isOwn = (k) => Boolean(ui.caller && ui.caller.key_id === k.id);

function activeRow(k) {
  const label = k.alias || k.id;
  return [
    h("strong", { class: "break" }, k.alias || "—", isOwn(k) ? [" ", badge(t("keys.thisKey"), "muted")] : null),
    mono(k.id),
    mono(k.user_id),
    allowlist(k),
    describeBudgets(k),
    describeLimits(k.limits),
    k.expires_at ? formatDate(k.expires_at) : t("keys.never"),
    money(spend[k.id]),
    createdBy(k.created_by),
    h("div", { class: "row-actions" },
      h("button", { type: "button", onclick: () => edit(k), "aria-label": `${t("keys.edit")} ${label}` }, t("keys.edit")),
      isOwn(k) ? null : h("button", { type: "button", class: "danger", onclick: () => revoke(k), "aria-label": `${t("keys.revoke")} ${label}` }, t("keys.revoke"))),
  ];
}

/** A revoked or expired key: never a Revoke button; an expired one may get a later expiry. */
function inactiveRow(k) {
  const status = statusOf(k);
  const label = k.alias || k.id;
  return [
    h("span", { class: "break" }, k.alias || "—"),
    mono(k.id),
    mono(k.user_id),
    badge(t(`keys.status.${status}`), status === "revoked" ? "bad" : "warn"),
    formatDate(status === "revoked" && k.revoked_at ? k.revoked_at : k.expires_at || k.revoked_at || ""),
    money(spend[k.id]),
    createdBy(k.created_by),
    status === "expired"
      ? h("button", { type: "button", onclick: () => edit(k), "aria-label": `${t("keys.edit")} ${label}` }, t("keys.edit"))
      : "—",
  ];
}

function allowlist(k) {
  const parts = [];
  if (Array.isArray(k.models) && k.models.length) parts.push(h("span", { class: "mono break" }, k.models.join(", ")));
  if (Array.isArray(k.providers) && k.providers.length) {
    parts.push(h("span", { class: "mono break muted" }, t("keys.providersList", { providers: k.providers.join(", ") })));
  }
  return parts.length ? h("div", { class: "provider-name" }, parts) : badge(t("keys.allModels"), "muted");
}

/** Who made the key: the admin key, the CLI, or another key (by alias when it is listed). */
function createdBy(value) {
  if (!value) return "—";
  if (value === "admin") return t("keys.createdBy.admin");
  if (value === "cli") return t("keys.createdBy.cli");
  const maker = keys.find((k) => k.id === value);
  return h("span", { class: "mono break" }, maker && maker.alias ? `${maker.alias} (${value})` : value);
}

// --------------------------------------------------------------------------------------------- form

function field(name) {
  return $("#key-form").elements[name];
}

/** datetime-local text (the viewer's local time) for an ISO time, and back. */
function localInput(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

function formValues(form) {
  const expires = form.elements.expires_at.value;
  const models = splitList(form.elements.models.value);
  const providers = splitList(form.elements.providers.value);
  return {
    alias: form.elements.alias.value.trim(),
    user_id: form.elements.user_id.value.trim() || null,
    models: models.length ? models : null,
    providers: providers.length ? providers : null,
    expires_at: expires ? new Date(expires).toISOString() : null,
    budgets: readBudgets($("#kf-budgets")),
    limits: readLimits(form),
  };
}

/** Creating sends what was filled in; editing sends only what changed. */
function requestBody(values) {
  if (!editing) return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== null && !(Array.isArray(value) && !value.length)));
  const body = {};
  for (const [name, value] of Object.entries(values)) {
    if (JSON.stringify(value) !== JSON.stringify(initial[name])) body[name] = value;
  }
  return body;
}

async function submit(event) {
  event.preventDefault();
  ui.clear();
  const form = event.target;
  if (!form.reportValidity()) return;
  let body;
  try {
    body = requestBody(formValues(form));
  } catch (error) {
    ui.error(error);
    return;
  }
  try {
    if (editing) {
      const saved = await api("PATCH", `/v1/keys/${encodeURIComponent(editing.id)}`, body);
      remember(saved);
      ui.notice(t("keys.saved", { alias: (saved && saved.alias) || editing.alias || editing.id }));
      resetForm();
    } else {
      const created = await api("POST", "/v1/keys", body);
      secret = { alias: created.alias || body.alias, key: created.key };
      form.reset();
      fillBudgets($("#kf-budgets"), []);
    }
    await load();
    if (secret && !editing) $("#key-secret-copy").focus();
  } catch (error) {
    ui.error(error);
  }
}

/** The saved key (the PATCH's answer, as the list has it) in the list at once: until the reload lands, the
 * list is from before the save, and an Edit clicked on it would fill the form with what was there before
 * (the budgets a save added or removed back in the form, and saved again with the next change). */
function remember(saved) {
  if (!saved || !saved.id) return;
  keys = keys.map((k) => (k.id === saved.id ? saved : k));
  ui.keys = keys;
  listings += 1; // a load started before the save answers from before it: it must not put that back
}

function edit(k) {
  ui.clear();
  secret = null;
  editing = k;
  const form = $("#key-form");
  form.reset();
  field("alias").value = k.alias || "";
  field("user_id").value = k.user_id || "";
  field("models").value = Array.isArray(k.models) ? k.models.join(", ") : "";
  field("providers").value = Array.isArray(k.providers) ? k.providers.join(", ") : "";
  field("expires_at").value = localInput(k.expires_at);
  fillBudgets($("#kf-budgets"), k.budgets);
  fillLimits(form, k.limits);
  initial = formValues(form);
  $("#kf-cancel").hidden = false;
  $("#kf-submit").textContent = t("providers.form.submitEdit");
  $("#kf-submit").dataset.i18n = "providers.form.submitEdit";
  render();
  form.scrollIntoView({ block: "start" });
  field("alias").focus();
}

function resetForm() {
  editing = null;
  initial = {};
  $("#key-form").reset();
  $("#kf-budgets").replaceChildren();
  $("#kf-cancel").hidden = true;
  $("#kf-submit").textContent = t("keys.form.submit");
  $("#kf-submit").dataset.i18n = "keys.form.submit";
  render();
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
    if (editing && editing.id === k.id) resetForm();
    await load();
  } catch (error) {
    ui.error(error);
  }
}
