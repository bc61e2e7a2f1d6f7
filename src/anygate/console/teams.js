// Teams (admins), on the People page when the gateway has them (GET /v1/teams answers 200; 404 hides
// them): the list, creating and editing one (budgets, limits, allowlists), its members, keys and spend,
// and a roster import whose new keys are shown once.

import { ApiError, api, items } from "./api.js";
import { addBudgetRow, describeBudgets, fillBudgets, readBudgets, relabelBudgets } from "./budgets.js";
import { $, h, splitList, table, update } from "./dom.js";
import { formatMoney, formatNumber, t } from "./i18n.js";
import { describeLimits, fillLimits, readLimits, readLimitsIn } from "./limits.js";
import { reissue, reissuedCard } from "./reissue.js";

let ui;
let hooks;
let teams = [];
let editing = null;
let opened = null; // the team detail shown
let roster = null; // {team, created: [...]} the keys a roster import made, shown once
let reissued = null; // {team, rows: [...]} the keys a re-issue made, shown once
let rosterOptions = null; // the roster import's options (index.html): one element, moved into the open team's panel
let listings = 0; // loads started, and saves answered: a load shows its answers only if it is the last of them

export function init(context, callbacks) {
  ui = context;
  hooks = callbacks;
  $("#team-form").addEventListener("submit", submit);
  $("#tf-cancel").addEventListener("click", resetForm);
  $("#tf-add-budget").addEventListener("click", () => addBudgetRow($("#tf-budgets")));
  $("#ro-add-user-budget").addEventListener("click", () => addBudgetRow($("#ro-user-budgets")));
  $("#ro-add-key-budget").addEventListener("click", () => addBudgetRow($("#ro-key-budgets")));
  rosterOptions = $("#roster-options");
}

export const list = () => teams;

export function nameOf(teamId) {
  if (!teamId) return "—";
  const team = teams.find((x) => x.id === teamId);
  return team && team.name ? team.name : teamId;
}

/** Whether the gateway has teams is known from here on (ui.teamsAvailable); only a 404 hides them. */
export async function load() {
  // Loads overlap (users.js loads on each save and section opening) and their answers land in any order: an
  // older one's would put back what a newer one, or a save, has replaced.
  const listing = ++listings;
  try {
    const listed = items(await api("GET", "/v1/teams"));
    if (listing !== listings) return;
    teams = listed;
    ui.teamsAvailable = true;
  } catch (error) {
    if (listing !== listings) return;
    teams = [];
    if (error instanceof ApiError && (error.status === 404 || error.status === 403)) ui.teamsAvailable = false;
    else throw error;
  }
  $("#teams-panel").hidden = ui.teamsAvailable !== true;
}

export function render() {
  if (ui.teamsAvailable !== true) return;
  const view = $("#teams-list");
  // In place (update): a reload landing under a pressed Edit button must leave that button there to click.
  if (!teams.length) update(view, h("p", { class: "empty" }, t("teams.empty")));
  else {
    const columns = ["name", "id", "budgets", "limits", "allowlists"].map((c) => t(`teams.col.${c}`));
    update(view, table([...columns, t("common.actions")], teams.map(row), t("teams.title"), teams.map((team) => team.id)));
  }
  $("#team-form-title").textContent = editing ? t("teams.form.editTitle", { name: editing.name }) : t("teams.form.title");
  relabelBudgets($("#tf-budgets"));
  renderDetail();
}

function row(team) {
  const label = team.name || team.id;
  return [
    h("strong", { class: "break" }, label),
    h("span", { class: "mono muted" }, team.id),
    describeBudgets(team),
    describeLimits(team.limits),
    allowlists(team),
    h("div", { class: "row-actions" },
      h("button", { type: "button", onclick: () => open(team), "aria-label": `${t("teams.open")} ${label}` }, t("teams.open")),
      // Only an admin changes or deletes a team: a team admin manages its members and their keys.
      h("button", { type: "button", "data-admin": "", onclick: () => edit(team), "aria-label": `${t("keys.edit")} ${label}` }, t("keys.edit")),
      h("button", { type: "button", "data-admin": "", class: "danger", onclick: () => remove(team), "aria-label": `${t("providers.delete")} ${label}` }, t("providers.delete"))),
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
    rosterOptions,
    h("div", { class: "actions" }, h("button", { type: "button", class: "primary", id: "roster-import", onclick: () => importRoster(text, file) }, t("teams.roster.import"))),
    rosterResult() || "",
  );
  relabelBudgets($("#ro-user-budgets"));
  relabelBudgets($("#ro-key-budgets"));
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
    // RosterImport: {users: [{name}], budgets?, limits?, key?}; the answer (RosterResult) has a row per
    // name, "created" with its key's secret or "kept" (already in the team, no new key)
    const body = { users: names.map((name) => ({ name })), ...rosterSettings() };
    const answer = await api("POST", `/v1/teams/${encodeURIComponent(opened.id)}/roster`, body);
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

/** What each new user (budgets, limits) and key (budgets, limits, expiry, allowlists) gets: only what was
 * filled in, so an empty form sends {}. Throws an Error naming a field that is not a number. */
function rosterSettings() {
  const settings = {};
  const userBudgets = readBudgets($("#ro-user-budgets"));
  const userLimits = readLimitsIn($("#ro-user-limits"));
  if (userBudgets.length) settings.budgets = userBudgets;
  if (userLimits) settings.limits = userLimits;
  const expires = $("#ro-expires").value;
  const models = splitList($("#ro-models").value);
  const providers = splitList($("#ro-providers").value);
  const key = {
    budgets: readBudgets($("#ro-key-budgets")),
    limits: readLimitsIn($("#ro-key-limits")),
    expires_at: expires ? new Date(expires).toISOString() : null,
    models: models.length ? models : null,
    providers: providers.length ? providers : null,
  };
  const given = Object.entries(key).filter(([, value]) => value !== null && !(Array.isArray(value) && !value.length));
  if (given.length) settings.key = Object.fromEntries(given);
  return settings;
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

function formValues(form) {
  const models = splitList(form.elements.models.value);
  const providers = splitList(form.elements.providers.value);
  return {
    name: form.elements.name.value.trim(),
    models: models.length ? models : null,
    providers: providers.length ? providers : null,
    limits: readLimits(form),
    budgets: readBudgets($("#tf-budgets")),
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
    if (editing) remember(await api("PATCH", `/v1/teams/${encodeURIComponent(editing.id)}`, body));
    else await api("POST", "/v1/teams", body);
    ui.notice(t("teams.saved", { name: body.name }));
    resetForm();
    hooks.onChange();
  } catch (error) {
    ui.error(error);
  }
}

/** The saved team (the PATCH's answer, as the list has it) in the list at once: until the reload lands, the
 * list is from before the save, and an Edit clicked on it would fill the form with what was there before
 * (the budgets a save added or removed back in the form, and saved again with the next change). */
function remember(saved) {
  if (!saved || !saved.id) return;
  teams = teams.map((team) => (team.id === saved.id ? saved : team));
  listings += 1; // a load started before the save answers from before it: it must not put that back
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
  fillBudgets($("#tf-budgets"), team.budgets);
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
