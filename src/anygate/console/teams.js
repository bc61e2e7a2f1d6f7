// Teams (admins), on the People page when the gateway has them (GET /v1/teams answers 200; 404 hides
// them): the list, creating and editing one (budgets, limits, allowlists), its members, keys and spend,
// and a roster import whose new keys are shown once.

import { ApiError, api, items } from "./api.js";
import { $, h, splitList, table } from "./dom.js";
import { formatMoney, formatNumber, language, t } from "./i18n.js";
import { describeBudget, describeLimits, fillLimits, readLimits } from "./limits.js";
import { reissue, reissuedCard } from "./reissue.js";

const WINDOWS = ["daily", "weekly", "monthly", "none", "hours"];

let ui;
let hooks;
let teams = [];
let editing = null;
let opened = null; // the team detail shown
let roster = null; // {team, created: [...]} the keys a roster import made, shown once
let reissued = null; // {team, rows: [...]} the keys a re-issue made, shown once
let rowsLanguage = null; // the language the budget rows were built in

export function init(context, callbacks) {
  ui = context;
  hooks = callbacks;
  $("#team-form").addEventListener("submit", submit);
  $("#tf-cancel").addEventListener("click", resetForm);
  $("#tf-add-budget").addEventListener("click", () => addBudgetRow({}));
}

export const list = () => teams;

export function nameOf(teamId) {
  if (!teamId) return "—";
  const team = teams.find((x) => x.id === teamId);
  return team && team.name ? team.name : teamId;
}

/** Whether the gateway has teams is known from here on (ui.teamsAvailable); only a 404 hides them. */
export async function load() {
  try {
    teams = items(await api("GET", "/v1/teams"));
    ui.teamsAvailable = true;
  } catch (error) {
    teams = [];
    if (error instanceof ApiError && (error.status === 404 || error.status === 403)) ui.teamsAvailable = false;
    else throw error;
  }
  $("#teams-panel").hidden = ui.teamsAvailable !== true;
}

export function render() {
  if (ui.teamsAvailable !== true) return;
  const view = $("#teams-list");
  if (!teams.length) view.replaceChildren(h("p", { class: "empty" }, t("teams.empty")));
  else {
    const columns = ["name", "id", "budgets", "limits", "allowlists"].map((c) => t(`teams.col.${c}`));
    view.replaceChildren(table([...columns, t("common.actions")], teams.map(row), t("teams.title")));
  }
  $("#team-form-title").textContent = editing ? t("teams.form.editTitle", { name: editing.name }) : t("teams.form.title");
  // Rows are built in the language of their day: after a language change build them again, keeping what was
  // typed (only then: a row rebuilt under a typing hand would lose its focus).
  if (rowsLanguage !== language() || !$("#tf-budgets").children.length) {
    const drafts = budgetDrafts();
    $("#tf-budgets").replaceChildren();
    for (const draft of drafts.length ? drafts : [{}]) addBudgetRow(draft);
  }
  renderDetail();
}

function row(team) {
  const label = team.name || team.id;
  const budgets = Array.isArray(team.budgets) && team.budgets.length ? team.budgets : [];
  return [
    h("strong", { class: "break" }, label),
    h("span", { class: "mono muted" }, team.id),
    budgets.length ? h("div", { class: "provider-name" }, budgets.map((b) => h("span", {}, describeBudget(b)))) : t("common.unlimited"),
    describeLimits(team.limits),
    allowlists(team),
    h("div", { class: "row-actions" },
      h("button", { type: "button", onclick: () => open(team), "aria-label": `${t("teams.open")} ${label}` }, t("teams.open")),
      h("button", { type: "button", onclick: () => edit(team), "aria-label": `${t("keys.edit")} ${label}` }, t("keys.edit")),
      h("button", { type: "button", class: "danger", onclick: () => remove(team), "aria-label": `${t("providers.delete")} ${label}` }, t("providers.delete"))),
  ];
}

function allowlists(team) {
  const parts = [];
  if (Array.isArray(team.models) && team.models.length) parts.push(h("span", { class: "mono break" }, team.models.join(", ")));
  if (Array.isArray(team.providers) && team.providers.length) {
    parts.push(h("span", { class: "mono break muted" }, t("keys.providersList", { providers: team.providers.join(", ") })));
  }
  return parts.length ? h("div", { class: "provider-name" }, parts) : t("keys.allModels");
}

// ------------------------------------------------------------------------------------------- detail

async function open(team) {
  ui.clear();
  roster = null;
  reissued = null;
  try {
    opened = await api("GET", `/v1/teams/${encodeURIComponent(team.id)}`);
  } catch (error) {
    opened = null;
    ui.error(error);
  }
  renderDetail();
  if (opened) $("#team-detail").focus();
}

function renderDetail() {
  const panel = $("#team-detail");
  panel.hidden = opened === null;
  if (!opened) return;
  // TeamDetail (api/views.py): members are users, key_count the team's live keys, spend all time
  const members = Array.isArray(opened.members) ? opened.members : [];
  const spend = opened.spend && typeof opened.spend.usd === "number" ? opened.spend.usd : null;
  const keyCount = typeof opened.key_count === "number" ? opened.key_count : null;
  const close = h("button", { type: "button", class: "icon", "aria-label": t("common.close"), onclick: () => { opened = null; roster = null; reissued = null; renderDetail(); } }, "×");
  const file = h("input", { type: "file", accept: ".csv,text/csv", id: "roster-file", "aria-label": t("teams.roster.file") });
  const typed = $("#roster-text"); // a re-render (a language change, a reload) keeps what was typed
  const text = h("textarea", { id: "roster-text", rows: 4, spellcheck: "false", placeholder: "name,email\nAda Lovelace,ada@example.edu", "aria-label": t("teams.roster.text") });
  text.value = typed ? typed.value : "";
  panel.replaceChildren(
    h("div", { class: "panel-head" }, h("h2", {}, opened.name || opened.id), close),
    h("div", { class: "stats" },
      stat(t("teams.members"), formatNumber(members.length)),
      stat(t("teams.keys"), keyCount === null ? "—" : formatNumber(keyCount)),
      stat(t("usage.cost"), spend === null ? "—" : formatMoney(spend, "USD"))),
    members.length
      ? table([t("users.col.name"), t("users.col.id")], members.map((m) => [
        h("span", { class: "break" }, m.name || "—"), h("span", { class: "mono muted" }, m.id),
      ]), t("teams.members"))
      : h("p", { class: "empty" }, t("teams.noMembers")),
    h("div", { class: "actions" }, h("button", { type: "button", id: "team-reissue", onclick: () => reissueKeys() }, t("reissue.team"))),
    reissued && reissued.team === opened.id ? reissuedCard(reissued.rows) : "",
    h("h3", {}, t("teams.roster.title")),
    h("p", { class: "hint" }, t("teams.roster.help")),
    h("div", { class: "grid" }, h("div", { class: "field wide" }, text), h("div", { class: "field wide" }, file)),
    h("div", { class: "actions" }, h("button", { type: "button", class: "primary", id: "roster-import", onclick: () => importRoster(text, file) }, t("teams.roster.import"))),
    rosterResult() || "",
  );
}

function stat(name, value) {
  return h("div", { class: "stat card" }, h("span", { class: "muted" }, name), h("strong", {}, value));
}

/** Re-issue every member's keys (after a confirmation); the new ones are shown in the panel, once. */
async function reissueKeys() {
  const team = opened;
  try {
    const rows = await reissue(ui, `/v1/teams/${encodeURIComponent(team.id)}/keys/reissue`, t("reissue.confirmTeam", { name: team.name || team.id }));
    if (rows === null) return;
    reissued = { team: team.id, rows };
    roster = null;
    opened = await api("GET", `/v1/teams/${encodeURIComponent(team.id)}`);
    renderDetail();
    hooks.onChange();
  } catch (error) {
    ui.error(error);
  }
}

async function importRoster(text, file) {
  ui.clear();
  const csv = file.files && file.files[0] ? await file.files[0].text() : text.value;
  const names = rosterNames(csv);
  if (!names.length) {
    ui.error(new Error(t("teams.roster.emptyInput")));
    return;
  }
  try {
    // RosterImport: {users: [{name}]}; the answer (RosterResult) has a row per name, "created" with its
    // key's secret or "kept" (already in the team, no new key)
    const answer = await api("POST", `/v1/teams/${encodeURIComponent(opened.id)}/roster`, { users: names.map((name) => ({ name })) });
    const created = items(answer).filter((entry) => entry.status === "created");
    roster = { team: opened.id, created };
    reissued = null;
    text.value = "";
    file.value = "";
    ui.notice(t("teams.roster.done", { n: formatNumber(created.length), kept: formatNumber(answer.kept) }));
    opened = await api("GET", `/v1/teams/${encodeURIComponent(opened.id)}`);
    renderDetail();
    hooks.onChange();
  } catch (error) {
    ui.error(error);
  }
}

/** The names of a roster CSV, as `anygate users import` reads them (cli/roster.py): its `name` column,
 * else its first column; blank lines skipped. Cells may be quoted ("Lovelace, Ada"). */
export function rosterNames(text) {
  const rows = parseCsv(text).filter((cells) => cells.some((cell) => cell.trim()));
  if (!rows.length) return [];
  const header = rows[0].map((cell) => cell.trim().toLowerCase());
  const column = header.indexOf("name");
  const names = column >= 0 ? rows.slice(1).map((cells) => cells[column] || "") : rows.map((cells) => cells[0]);
  return names.map((name) => name.trim()).filter(Boolean);
}

/** RFC 4180 rows: quoted cells may hold commas, newlines and doubled quotes. */
function parseCsv(text) {
  const rows = [];
  let cells = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { cells.push(cell); cell = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i += 1;
      cells.push(cell); rows.push(cells); cells = []; cell = "";
    } else cell += c;
  }
  if (cell || cells.length) { cells.push(cell); rows.push(cells); }
  return rows;
}

/** The keys the import made: their secrets are in this answer only. */
function rosterResult() {
  if (!roster || roster.team !== opened.id) return null;
  const columns = [t("users.col.name"), t("keys.col.id"), t("teams.roster.secret")];
  return h("div", { class: "card secret", id: "roster-result" },
    h("h3", {}, t("teams.roster.created")),
    h("p", { class: "hint" }, t("keys.secret.help")),
    table(columns, roster.created.map((entry) => [
      h("span", { class: "break" }, entry.name),
      h("span", { class: "mono muted" }, entry.key_id),
      h("input", { readonly: true, value: entry.key || "", class: "mono", spellcheck: "false", "aria-label": t("teams.roster.secret") }),
    ]), t("teams.roster.created")));
}

// --------------------------------------------------------------------------------------------- form

/** The budget rows as typed (text, unchecked). */
function budgetDrafts() {
  return [...$("#tf-budgets").querySelectorAll(".budget-row")].map((rowEl) => {
    const value = (name) => rowEl.querySelector(`[name=${name}]`).value;
    return { tokens: value("tokens"), usd: value("usd"), requests: value("requests"), window: value("window"), hours: value("hours"), mode: value("mode") };
  });
}

function addBudgetRow(budget) {
  const rolling = /^\d+h$/.exec(String(budget.window || ""));
  const windowValue = rolling ? "hours" : budget.window || "monthly";
  const hours = rolling ? String(budget.window).slice(0, -1) : budget.hours || "";
  const number = (name, labelKey, value, step = "1") => h("div", { class: "field" },
    h("label", {}, t(labelKey), h("input", { name, type: "number", min: "0", step, value: value ?? "" })));
  const select = h("select", { name: "window" }, WINDOWS.map((w) => h("option", { value: w }, w === "hours" ? t("teams.window.hours") : t(`period.${w}`))));
  select.value = windowValue;
  const hoursField = h("div", { class: "field" }, h("label", {}, t("teams.window.count"), h("input", { name: "hours", type: "number", min: "1", step: "1", value: hours })));
  hoursField.hidden = windowValue !== "hours";
  select.addEventListener("change", () => { hoursField.hidden = select.value !== "hours"; });
  const mode = h("select", { name: "mode" }, ["hard", "soft"].map((m) => h("option", { value: m }, t(`mode.${m}`))));
  mode.value = budget.mode || "hard";
  const rowEl = h("fieldset", { class: "budget-row" },
    h("legend", {}, t("keys.form.budget")),
    h("div", { class: "grid grid-4" },
      number("tokens", "keys.form.tokens", budget.tokens),
      number("usd", "keys.form.usd", budget.usd, "0.01"),
      number("requests", "teams.form.requests", budget.requests),
      h("div", { class: "field" }, h("label", {}, t("keys.form.period"), select)),
      hoursField,
      h("div", { class: "field" }, h("label", {}, t("keys.form.mode"), mode))),
    h("button", { type: "button", class: "danger", onclick: () => rowEl.remove() }, t("teams.form.removeBudget")));
  $("#tf-budgets").append(rowEl);
  rowsLanguage = language();
}

function readBudgets() {
  const budgets = [];
  for (const rowEl of $("#tf-budgets").querySelectorAll(".budget-row")) {
    const value = (name) => {
      const raw = rowEl.querySelector(`[name=${name}]`).value.trim();
      if (!raw) return null;
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0) throw new Error(t("error.number", { field: t(`teams.field.${name}`) }));
      return n;
    };
    const budget = {};
    for (const name of ["tokens", "usd", "requests"]) {
      const n = value(name);
      if (n !== null) budget[name] = name === "usd" ? n : Math.round(n);
    }
    if (!Object.keys(budget).length) continue;
    const window = rowEl.querySelector("[name=window]").value;
    const hours = value("hours");
    if (window === "hours" && !hours) throw new Error(t("error.number", { field: t("teams.window.count") }));
    budget.window = window === "hours" ? `${Math.round(hours)}h` : window;
    budget.mode = rowEl.querySelector("[name=mode]").value;
    budgets.push(budget);
  }
  return budgets;
}

function formValues(form) {
  const models = splitList(form.elements.models.value);
  const providers = splitList(form.elements.providers.value);
  return {
    name: form.elements.name.value.trim(),
    models: models.length ? models : null,
    providers: providers.length ? providers : null,
    limits: readLimits(form),
    budgets: readBudgets(),
  };
}

async function submit(event) {
  event.preventDefault();
  ui.clear();
  const form = event.target;
  if (!form.reportValidity()) return;
  let body;
  try {
    body = formValues(form);
  } catch (error) {
    ui.error(error);
    return;
  }
  try {
    if (editing) await api("PATCH", `/v1/teams/${encodeURIComponent(editing.id)}`, body);
    else await api("POST", "/v1/teams", body);
    ui.notice(t("teams.saved", { name: body.name }));
    resetForm();
    hooks.onChange();
  } catch (error) {
    ui.error(error);
  }
}

function edit(team) {
  ui.clear();
  editing = team;
  const form = $("#team-form");
  form.reset();
  form.elements.name.value = team.name || "";
  form.elements.models.value = Array.isArray(team.models) ? team.models.join(", ") : "";
  form.elements.providers.value = Array.isArray(team.providers) ? team.providers.join(", ") : "";
  fillLimits(form, team.limits);
  $("#tf-budgets").replaceChildren();
  for (const budget of Array.isArray(team.budgets) && team.budgets.length ? team.budgets : [{}]) addBudgetRow(budget);
  $("#tf-cancel").hidden = false;
  render();
  form.scrollIntoView({ block: "start" });
  form.elements.name.focus();
}

function resetForm() {
  editing = null;
  $("#team-form").reset();
  $("#tf-budgets").replaceChildren();
  $("#tf-cancel").hidden = true;
  render();
}

async function remove(team) {
  ui.clear();
  if (!window.confirm(t("teams.deleteConfirm", { name: team.name || team.id }))) return;
  try {
    await api("DELETE", `/v1/teams/${encodeURIComponent(team.id)}`);
    ui.notice(t("teams.deleted", { name: team.name || team.id }));
    if (opened && opened.id === team.id) opened = null;
    hooks.onChange();
  } catch (error) {
    ui.error(error);
  }
}
