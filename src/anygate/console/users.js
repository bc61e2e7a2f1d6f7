// Users (admins): the list with their keys and spend, creating and editing one (name, team, budgets, limits),
// one user's keys on a click. Teams (teams.js) share the page when the gateway has them.

import { api, items } from "./api.js";
import { $, badge, h, table, update } from "./dom.js";
import { formatDate, formatMoney, formatNumber, t } from "./i18n.js";
import { spendBy, statusOf } from "./keys.js";
import { addBudgetRow, describeBudgets, fillBudgets, readBudgets, relabelBudgets } from "./budgets.js";
import { describeLimits, fillLimits, readLimits } from "./limits.js";
import { reissue, reissuedCard } from "./reissue.js";
import * as teams from "./teams.js";

let ui;
let users = [];
let keys = [];
let spend = {}; // user id -> USD
let keySpend = {}; // key id -> USD
let editing = null;
let initial = {};
let opened = null; // {user, keys, reissued?} shown in the detail panel (reissued: new secrets, shown once)
let listings = 0; // loads started, and saves answered: a load shows its answers only if it is the last of them

export function init(context) {
  ui = context;
  $("#user-form").addEventListener("submit", submit);
  $("#uf-cancel").addEventListener("click", resetForm);
  $("#uf-add-budget").addEventListener("click", () => addBudgetRow($("#uf-budgets")));
  // A team's change (a roster, a re-issue) may change any member's keys: a user's open panel would be stale.
  teams.init(context, { onChange: () => { opened = null; return load().catch(ui.error); } });
}

export async function load() {
  // Loads overlap (a section opened while the sign-in's load runs, a save while a reload runs) and their
  // answers land in any order: an older one's would put back what a newer one, or a save, has replaced.
  const listing = ++listings;
  const listed = items(await api("GET", "/v1/users"));
  await teams.load(); // sets ui.teamsAvailable (a gateway without teams answers 404)
  const [allKeys, userSpend, perKey] = await Promise.all([
    api("GET", "/v1/keys").then(items).catch(() => []),
    spendBy("user"),
    spendBy("key"),
  ]);
  if (listing !== listings) return;
  users = listed;
  keys = allKeys;
  spend = userSpend;
  keySpend = perKey;
  render();
}

const money = (value) => (typeof value === "number" ? formatMoney(value, "USD") : "—");

export function render() {
  const list = $("#users-list");
  const withTeams = ui.teamsAvailable === true;
  $("#uf-team-field").hidden = !withTeams;
  fillTeamOptions();
  // In place (update): a reload landing under a pressed Edit button must leave that button there to click.
  if (!users.length) update(list, h("p", { class: "empty" }, t("users.empty")));
  else {
    const names = ["name", "id", ...(withTeams ? ["team"] : []), "budget", "limits", "keys", "spend"];
    const columns = names.map((c) => t(`users.col.${c}`));
    const rows = users.map((u) => row(u, withTeams));
    update(list, table([...columns, t("common.actions")], rows, t("users.title"), users.map((u) => u.id)));
  }
  relabelBudgets($("#uf-budgets"));
  $("#user-form-title").textContent = editing ? t("users.form.editTitle", { name: editing.name }) : t("users.form.title");
  renderDetail();
  teams.render();
}

function row(u, withTeams) {
  const own = keys.filter((k) => k.user_id === u.id);
  const active = own.filter((k) => statusOf(k) === "active").length;
  const cells = [
    h("strong", { class: "break" }, u.name || "—"),
    h("span", { class: "mono muted" }, u.id),
  ];
  if (withTeams) cells.push(teams.nameOf(u.team_id));
  cells.push(
    describeBudgets(u),
    describeLimits(u.limits),
    t("users.keyCount", { active: formatNumber(active), total: formatNumber(own.length) }),
    money(spend[u.id]),
    h("div", { class: "row-actions" },
      h("button", { type: "button", onclick: () => open(u), "aria-label": `${t("users.showKeys")} ${u.name}` }, t("users.showKeys")),
      h("button", { type: "button", onclick: () => edit(u), "aria-label": `${t("keys.edit")} ${u.name}` }, t("keys.edit")),
      h("button", { type: "button", onclick: () => reissueKeys(u), "aria-label": `${t("reissue.user")} ${u.name}` }, t("reissue.user")),
      h("button", { type: "button", class: "danger", onclick: () => remove(u), "aria-label": `${t("providers.delete")} ${u.name}` }, t("providers.delete"))),
  );
  return cells;
}

function fillTeamOptions() {
  const select = $("#uf-team");
  const current = select.value;
  select.replaceChildren(h("option", { value: "" }, t("users.noTeam")), ...teams.list().map((team) => h("option", { value: team.id }, team.name || team.id)));
  select.value = current;
}

async function open(u, reissued = null) {
  if (!reissued) ui.clear();
  try {
    const detail = await api("GET", `/v1/users/${encodeURIComponent(u.id)}`);
    opened = { user: detail, keys: Array.isArray(detail.keys) ? detail.keys : [], reissued };
  } catch (error) {
    opened = null;
    ui.error(error);
  }
  renderDetail();
  if (opened) $("#user-detail").focus();
}

function renderDetail() {
  const panel = $("#user-detail");
  panel.hidden = opened === null;
  if (!opened) return;
  const close = h("button", { type: "button", class: "icon", "aria-label": t("common.close"), onclick: () => { opened = null; renderDetail(); } }, "×");
  const columns = ["alias", "id", "status", "expires", "spend"].map((c) => t(`keys.col.${c}`));
  panel.replaceChildren(
    h("div", { class: "panel-head" }, h("h2", {}, t("users.keysOf", { name: opened.user.name || opened.user.id })), close),
    opened.keys.length
      ? table(columns, opened.keys.map((k) => {
        const status = statusOf(k);
        return [
          h("span", { class: "break" }, k.alias || "—"),
          h("span", { class: "mono muted" }, k.id),
          badge(t(`keys.status.${status}`), status === "active" ? "ok" : status === "revoked" ? "bad" : "warn"),
          k.expires_at ? formatDate(k.expires_at) : t("keys.never"),
          money(keySpend[k.id]),
        ];
      }), t("users.keysOf", { name: opened.user.name || "" }))
      : h("p", { class: "empty" }, t("users.noKeys")),
    opened.reissued ? reissuedCard(opened.reissued) : "",
  );
}

/** Re-issue the user's keys (after a confirmation) and show the new ones in its panel, once. */
async function reissueKeys(u) {
  const name = u.name || u.id;
  try {
    const rows = await reissue(ui, `/v1/users/${encodeURIComponent(u.id)}/keys/reissue`, t("reissue.confirmUser", { name }));
    if (rows === null) return;
    await load();
    await open(u, rows);
  } catch (error) {
    ui.error(error);
  }
}

// --------------------------------------------------------------------------------------------- form

function formValues(form) {
  const values = { name: form.elements.name.value.trim(), budgets: readBudgets($("#uf-budgets")), limits: readLimits(form) };
  if (ui.teamsAvailable === true) values.team_id = form.elements.team_id.value || null;
  return values;
}

async function submit(event) {
  event.preventDefault();
  ui.clear();
  const form = event.target;
  if (!form.reportValidity()) return;
  let values;
  try {
    values = formValues(form);
  } catch (error) {
    ui.error(error);
    return;
  }
  try {
    if (editing) {
      const body = {};
      for (const [name, value] of Object.entries(values)) {
        if (JSON.stringify(value) !== JSON.stringify(initial[name])) body[name] = value;
      }
      remember(await api("PATCH", `/v1/users/${encodeURIComponent(editing.id)}`, body));
    } else {
      await api("POST", "/v1/users", Object.fromEntries(Object.entries(values).filter(([, v]) => v !== null && !(Array.isArray(v) && !v.length))));
    }
    ui.notice(t("users.saved", { name: values.name }));
    resetForm();
    await load();
  } catch (error) {
    ui.error(error);
  }
}

/** The saved user (the PATCH's answer, as the list has it) in the list at once: until the reload lands, the
 * list is from before the save, and an Edit clicked on it would fill the form with what was there before
 * (the budgets a save added or removed back in the form, and saved again with the next change). */
function remember(saved) {
  if (!saved || !saved.id) return;
  users = users.map((u) => (u.id === saved.id ? saved : u));
  listings += 1; // a load started before the save answers from before it: it must not put that back
}

function edit(u) {
  ui.clear();
  editing = u;
  const form = $("#user-form");
  form.reset();
  form.elements.name.value = u.name || "";
  form.elements.team_id.value = u.team_id || "";
  fillBudgets($("#uf-budgets"), u.budgets);
  fillLimits(form, u.limits);
  initial = formValues(form);
  $("#uf-cancel").hidden = false;
  $("#uf-submit").textContent = t("providers.form.submitEdit");
  $("#uf-submit").dataset.i18n = "providers.form.submitEdit";
  render();
  form.scrollIntoView({ block: "start" });
  form.elements.name.focus();
}

function resetForm() {
  editing = null;
  initial = {};
  $("#user-form").reset();
  $("#uf-budgets").replaceChildren();
  $("#uf-cancel").hidden = true;
  $("#uf-submit").textContent = t("users.form.submit");
  $("#uf-submit").dataset.i18n = "users.form.submit";
  render();
}

async function remove(u) {
  ui.clear();
  if (!window.confirm(t("users.deleteConfirm", { name: u.name || u.id }))) return;
  try {
    await api("DELETE", `/v1/users/${encodeURIComponent(u.id)}`);
    ui.notice(t("users.deleted", { name: u.name || u.id }));
    if (opened && opened.user.id === u.id) opened = null;
    await load();
  } catch (error) {
    ui.error(error);
  }
}
