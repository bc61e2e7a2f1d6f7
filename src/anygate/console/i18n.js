// Translations: i18n/<lang>.json catalogs with the same keys; "{name}" placeholders.

export const LANGUAGES = ["en", "vi", "zh"];
const STORAGE_KEY = "anygate.lang";
let catalog = {};
let fallback = {};
let current = "en";

export function preferredLanguage() {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (LANGUAGES.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

async function fetchCatalog(lang) {
  const response = await fetch(`i18n/${lang}.json`);
  if (!response.ok) throw new Error(`i18n/${lang}.json: HTTP ${response.status}`);
  return response.json();
}

export async function setLanguage(lang) {
  if (!LANGUAGES.includes(lang)) lang = "en";
  localStorage.setItem(STORAGE_KEY, lang);
  if (!Object.keys(fallback).length) fallback = await fetchCatalog("en");
  catalog = lang === "en" ? fallback : await fetchCatalog(lang);
  current = lang;
  document.documentElement.lang = lang === "zh" ? "zh-CN" : lang;
  translate(document);
}

export const language = () => current;

/** Whether a catalog has the key (error codes the console can say in words). */
export function has(key) {
  return key in catalog || key in fallback;
}

/** t("providers.modelCount", {count: 3}) → "3 models". */
export function t(key, params = {}) {
  const text = catalog[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

/** Fill elements marked data-i18n (text), data-i18n-placeholder and data-i18n-aria-label. */
export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of root.querySelectorAll("[data-i18n-aria-label]")) el.setAttribute("aria-label", t(el.dataset.i18nAriaLabel));
}

export function formatNumber(value, options = {}) {
  return new Intl.NumberFormat(current, options).format(value);
}

export function formatMoney(value, currency = "USD") {
  try {
    return formatNumber(value, { style: "currency", currency, maximumFractionDigits: 4 });
  } catch {
    return `${formatNumber(value)} ${currency}`;
  }
}

export function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return new Intl.DateTimeFormat(current, { dateStyle: "medium", timeStyle: "short" }).format(date);
}
