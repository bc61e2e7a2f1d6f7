// A holder's list of budgets, edited in place: the user, team, key and roster forms each hold one list
// (a container of .budget-row fieldsets). Each budget is tokens and/or US dollars and/or requests over one
// window (daily, weekly, monthly, none, or every N hours), hard or soft. Every budget the holder has is
// shown, so saving never drops one the form did not show.

import { h } from "./dom.js";
import { language, t } from "./i18n.js";
import { describeBudget } from "./limits.js";

const WINDOWS = ["daily", "weekly", "monthly", "none", "hours"];
const AMOUNTS = ["tokens", "usd", "requests"];

/** Show `budgets` (the API's list; [] or null: one empty row to fill in). */
export function fillBudgets(container, budgets) {
  container.replaceChildren();
  for (const budget of Array.isArray(budgets) && budgets.length ? budgets : [{}]) addBudgetRow(container, budget);
}

/** Rows are built in the language of their day: after a language change build them again, keeping what was
 * typed (only then: a row rebuilt under a typing hand would lose its focus). */
export function relabelBudgets(container) {
  if (container.dataset.lang === language() && container.children.length) return;
  const drafts = budgetDrafts(container);
  container.replaceChildren();
  for (const draft of drafts.length ? drafts : [{}]) addBudgetRow(container, draft);
}

/** The rows as typed (text, unchecked). */
function budgetDrafts(container) {
  return [...container.querySelectorAll(".budget-row")].map((row) => {
    const value = (name) => row.querySelector(`[name=${name}]`).value;
    return { tokens: value("tokens"), usd: value("usd"), requests: value("requests"), window: value("window"), hours: value("hours"), mode: value("mode") };
  });
}

export function addBudgetRow(container, budget = {}) {
  const rolling = /^(\d+)h$/.exec(String(budget.window || budget.period || ""));
  const windowValue = rolling ? "hours" : budget.window || budget.period || "monthly";
  const hours = rolling ? rolling[1] : budget.hours || "";
  const number = (name, labelKey, value, step = "1") => h("div", { class: "field" },
    h("label", {}, t(labelKey), h("input", { name, type: "number", min: "0", step, value: value ?? "" })));
  const select = h("select", { name: "window" }, WINDOWS.map((w) => h("option", { value: w }, w === "hours" ? t("teams.window.hours") : t(`period.${w}`))));
  select.value = windowValue;
  const hoursField = h("div", { class: "field" }, h("label", {}, t("teams.window.count"), h("input", { name: "hours", type: "number", min: "1", step: "1", value: hours })));
  hoursField.hidden = windowValue !== "hours";
  select.addEventListener("change", () => { hoursField.hidden = select.value !== "hours"; });
  const mode = h("select", { name: "mode" }, ["hard", "soft"].map((m) => h("option", { value: m }, t(`mode.${m}`))));
  mode.value = budget.mode || "hard";
  const row = h("fieldset", { class: "budget-row" },
    h("legend", {}, t("keys.form.budget")),
    h("div", { class: "grid grid-4" },
      number("tokens", "keys.form.tokens", budget.tokens),
      number("usd", "keys.form.usd", budget.usd, "0.01"),
      number("requests", "teams.form.requests", budget.requests),
      h("div", { class: "field" }, h("label", {}, t("keys.form.period"), select)),
      hoursField,
      h("div", { class: "field" }, h("label", {}, t("keys.form.mode"), mode))),
    h("button", { type: "button", class: "danger", onclick: () => row.remove() }, t("teams.form.removeBudget")));
  container.append(row);
  container.dataset.lang = language();
  return row;
}

/** The budgets as the API takes them ([{tokens?, usd?, requests?, window, mode}]); rows with no amount are
 * left out. Throws an Error naming the field when a number is not one of 0 or more. */
export function readBudgets(container) {
  const budgets = [];
  for (const row of container.querySelectorAll(".budget-row")) {
    const value = (name) => {
      const raw = row.querySelector(`[name=${name}]`).value.trim();
      if (!raw) return null;
      const n = Number(raw);
      if (!Number.isFinite(n) || n < 0) throw new Error(t("error.number", { field: t(`teams.field.${name}`) }));
      return n;
    };
    const budget = {};
    for (const name of AMOUNTS) {
      const n = value(name);
      if (n !== null) budget[name] = name === "usd" ? n : Math.round(n);
    }
    if (!Object.keys(budget).length) continue;
    const window = row.querySelector("[name=window]").value;
    const hours = value("hours");
    if (window === "hours" && !hours) throw new Error(t("error.number", { field: t("teams.window.count") }));
    budget.window = window === "hours" ? `${Math.round(hours)}h` : window;
    budget.mode = row.querySelector("[name=mode]").value;
    budgets.push(budget);
  }
  return budgets;
}

/** A holder's budgets in words, one a line ("Unlimited" when there are none). */
export function describeBudgets(holder) {
  const list = Array.isArray(holder.budgets) ? holder.budgets : holder.budget ? [holder.budget] : [];
  if (!list.length) return t("common.unlimited");
  return h("div", { class: "provider-name" }, list.map((b) => h("span", {}, describeBudget(b))));
}
