// Rate limits, shared by the key, user and team forms: reading them from a form, filling a form from them,
// and saying them and budgets in words (budgets.js edits the lists of budgets).

import { formatMoney, formatNumber, t } from "./i18n.js";

const LIMIT_NAMES = ["rpm", "tpm", "concurrency"];

/** A number field's value: null when empty; an Error naming the field when not a number of 0 or more. */
export function numberField(form, name, labelKey) {
  const raw = form.elements[name].value.trim();
  if (!raw) return null;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(t("error.number", { field: t(labelKey) }));
  return value;
}

/** {rpm?, tpm?, concurrency?} from the form; null: no limit. */
export function readLimits(form) {
  const limits = {};
  for (const name of LIMIT_NAMES) {
    const value = numberField(form, name, `keys.form.${name}`);
    if (value !== null) limits[name] = Math.round(value);
  }
  return Object.keys(limits).length ? limits : null;
}

/** {rpm?, tpm?, concurrency?} from the fields named so inside `root` (any element); null: no limit. */
export function readLimitsIn(root) {
  const limits = {};
  for (const name of LIMIT_NAMES) {
    const raw = root.querySelector(`[name=${name}]`).value.trim();
    if (!raw) continue;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) throw new Error(t("error.number", { field: t(`keys.form.${name}`) }));
    limits[name] = Math.round(value);
  }
  return Object.keys(limits).length ? limits : null;
}

export function fillLimits(form, limits) {
  for (const name of LIMIT_NAMES) form.elements[name].value = limits && limits[name] != null ? limits[name] : "";
}

export function describeBudget(budget) {
  if (!budget || (budget.tokens == null && budget.usd == null && budget.requests == null)) return t("common.unlimited");
  const parts = [];
  if (budget.tokens != null) parts.push(t("keys.budget.tokens", { n: formatNumber(budget.tokens) }));
  if (budget.usd != null) parts.push(formatMoney(budget.usd, "USD"));
  if (budget.requests != null) parts.push(t("teams.budget.requests", { n: formatNumber(budget.requests) }));
  parts.push(describeWindow(budget.window || budget.period || "none"));
  parts.push(t(`mode.${budget.mode || "hard"}`));
  return parts.join(" · ");
}

/** daily | weekly | monthly | none, or "<N>h" (a rolling window of N hours). */
export function describeWindow(window) {
  const hours = /^(\d+)h$/.exec(String(window));
  if (hours) return t("period.hours", { n: formatNumber(Number(hours[1])) });
  return t(`period.${["daily", "weekly", "monthly", "none"].includes(window) ? window : "none"}`);
}

export function describeLimits(limits) {
  if (!limits) return "—";
  const parts = LIMIT_NAMES
    .filter((name) => limits[name] != null)
    .map((name) => t(`keys.limits.${name}`, { n: formatNumber(limits[name]) }));
  return parts.length ? parts.join(" · ") : "—";
}
