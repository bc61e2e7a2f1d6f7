// Usage: requests, tokens and spend over time (hour, day or month buckets, UTC) and broken down by key,
// user, team, model or provider, from GET /v1/usage; each chart has its table under it and a CSV export.
// A key holder gets the same page: the API confines the report to its own key and the keys made from it.

import { api, download, items, query } from "./api.js";
import { barChart, columnChart } from "./chart.js";
import { $, h, table } from "./dom.js";
import { formatMoney, formatNumber, t } from "./i18n.js";

const DAY = 86_400_000;
const PERIODS = { "24h": [DAY, "hour"], "7d": [7 * DAY, "day"], "30d": [30 * DAY, "day"], "12m": [365 * DAY, "month"] };
const DIMENSIONS = ["key", "user", "team", "model", "provider"];
const NAME_FIELDS = { key: "key_alias", user: "user_name", team: "team_name" };
const MAX_BUCKETS = 2000;

let ui;
let series = null; // {bucket, points: [{label, row}], unpriced}
let breakdown = null; // {dimension, rows}
let dimension = "model";

export function init(context) {
  ui = context;
  const form = $("#usage-filters");
  form.addEventListener("submit", (event) => { event.preventDefault(); ui.clear(); load().catch(ui.error); });
  form.elements.period.addEventListener("change", applyPeriod);
  $("#usage-dimension").addEventListener("change", (event) => {
    dimension = event.target.value;
    ui.clear();
    loadBreakdown().catch(ui.error);
  });
  $("#usage-time-csv").addEventListener("click", () => exportCsv(series && series.bucket));
  $("#usage-breakdown-csv").addEventListener("click", () => exportCsv(dimension));
  applyPeriod();
}

/** The period chosen: [start, end) as Dates, and the bucket. */
function period() {
  const form = $("#usage-filters");
  const choice = form.elements.period.value;
  if (choice === "custom") {
    const from = form.elements.from.value;
    const until = form.elements.until.value;
    const start = from ? new Date(`${from}T00:00:00Z`) : new Date(Date.now() - 30 * DAY);
    const end = until ? new Date(new Date(`${until}T00:00:00Z`).getTime() + DAY) : new Date();
    return { start, end, bucket: form.elements.bucket.value };
  }
  const [span] = PERIODS[choice];
  const end = new Date();
  return { start: new Date(end.getTime() - span), end, bucket: form.elements.bucket.value };
}

function applyPeriod() {
  const form = $("#usage-filters");
  const choice = form.elements.period.value;
  const custom = choice === "custom";
  for (const name of ["from", "until"]) form.elements[name].closest(".field").hidden = !custom;
  if (!custom) form.elements.bucket.value = PERIODS[choice][1];
}

function filters() {
  const form = $("#usage-filters");
  const { start, end } = period();
  return {
    start: start.toISOString(),
    end: end.toISOString(),
    key: form.elements.key.value.trim(),
    user: form.elements.user.value.trim(),
    provider: form.elements.provider.value.trim(),
    model: form.elements.model.value.trim(),
  };
}

export async function load() {
  const { start, end, bucket } = period();
  const body = await api("GET", `/v1/usage${query({ ...filters(), group_by: bucket })}`);
  const rows = items(body);
  series = { bucket, points: fillBuckets(rows, bucket, start, end), unpriced: (body && body.unpriced_models) || [] };
  await loadBreakdown(false);
  render();
}

async function loadBreakdown(draw = true) {
  if (!dimensionOptions().includes(dimension)) dimension = "model";
  try {
    const body = await api("GET", `/v1/usage${query({ ...filters(), group_by: dimension })}`);
    breakdown = { dimension, rows: items(body) };
  } catch (error) {
    breakdown = { dimension, rows: [] };
    ui.error(error);
  }
  if (draw) render();
}

/** Which breakdowns make sense: a key holder has one user and no team to compare. */
function dimensionOptions() {
  return DIMENSIONS.filter((d) => {
    if (d === "team") return ui.isAdmin !== false && ui.teamsAvailable === true;
    if (d === "user") return ui.isAdmin !== false;
    return true;
  });
}

/** The report's rows on every bucket of the period, empty buckets as zero (a gap is a quiet hour). */
function fillBuckets(rows, bucket, start, end) {
  const byLabel = new Map(rows.map((row) => [row[bucket], row]));
  const labels = bucketLabels(bucket, start, end);
  if (labels === null) return rows.map((row) => ({ label: row[bucket], row }));
  for (const label of byLabel.keys()) if (!labels.includes(label)) labels.push(label);
  labels.sort();
  return labels.map((label) => ({ label, row: byLabel.get(label) || null }));
}

/** "2026-12-03T14:00", "2026-12-03" or "2026-12" for each UTC bucket from start to end; null when too many. */
function bucketLabels(bucket, start, end) {
  const labels = [];
  const at = new Date(start.getTime());
  if (bucket === "hour") at.setUTCMinutes(0, 0, 0);
  else at.setUTCHours(0, 0, 0, 0);
  if (bucket === "month") at.setUTCDate(1);
  while (at < end) {
    const iso = at.toISOString();
    labels.push(bucket === "hour" ? `${iso.slice(0, 13)}:00` : bucket === "day" ? iso.slice(0, 10) : iso.slice(0, 7));
    if (labels.length > MAX_BUCKETS) return null;
    if (bucket === "hour") at.setUTCHours(at.getUTCHours() + 1);
    else if (bucket === "day") at.setUTCDate(at.getUTCDate() + 1);
    else at.setUTCMonth(at.getUTCMonth() + 1);
  }
  return labels;
}

const tokensOf = (row) => (row ? (row.input_tokens || 0) + (row.output_tokens || 0) : 0);
const costOf = (row) => (row && typeof row.cost_usd === "number" ? row.cost_usd : 0);
const money = (value) => formatMoney(value, "USD");
const count = (value) => formatNumber(value);

export function render() {
  renderDimensions();
  if (!series) return;
  const rows = series.points.map((p) => p.row).filter(Boolean);
  const totals = {
    requests: rows.reduce((sum, r) => sum + (r.requests || 0), 0),
    tokens: rows.reduce((sum, r) => sum + tokensOf(r), 0),
    cost: rows.reduce((sum, r) => sum + costOf(r), 0),
  };
  $("#usage-summary").replaceChildren(
    h("div", { class: "stats" },
      stat(t("usage.requests"), count(totals.requests)),
      stat(t("usage.tokens"), count(totals.tokens)),
      stat(t("usage.cost"), money(totals.cost))),
    series.unpriced.length
      ? h("p", { class: "hint warning-text" }, t("usage.unpriced", {
        models: series.unpriced.map((m) => `${m.provider_id}/${m.model}`).join(", "),
      }))
      : "",
  );
  renderTime();
  renderBreakdown();
}

function stat(name, value) {
  return h("div", { class: "stat card" }, h("span", { class: "muted" }, name), h("strong", {}, value));
}

function renderTime() {
  const bucketName = t(`usage.bucket.${series.bucket}`);
  const charts = [
    ["requests", (r) => (r ? r.requests || 0 : 0), count],
    ["tokens", tokensOf, count],
    ["cost", costOf, money],
  ].map(([metric, value, format]) => {
    const title = t("usage.chartOverTime", { metric: t(`usage.${metric}`), bucket: bucketName });
    return h("figure", { class: "chart-card card", dataset: { metric } },
      h("figcaption", {}, title),
      columnChart(series.points.map((p) => ({ label: p.label, value: value(p.row) })), { title, format }));
  });
  const shown = series.points.filter((p) => p.row);
  const columns = [bucketName, t("usage.requests"), t("usage.inputTokens"), t("usage.outputTokens"), t("usage.cost")];
  $("#usage-time-view").replaceChildren(
    h("div", { class: "chart-grid" }, charts),
    shown.length
      ? table(columns, shown.map((p) => [
        h("span", { class: "mono" }, p.label),
        count(p.row.requests || 0),
        count(p.row.input_tokens || 0),
        count(p.row.output_tokens || 0),
        costCell(p.row),
      ]), t("usage.overTime"))
      : h("p", { class: "empty" }, t("usage.empty")),
  );
}

function costCell(row) {
  if (row.cost_usd === null || row.cost_usd === undefined) return h("span", { class: "muted" }, t("usage.costUnknown"));
  const text = money(row.cost_usd);
  return row.unpriced_requests ? `${text} (${t("usage.partlyUnpriced", { n: count(row.unpriced_requests) })})` : text;
}

function renderDimensions() {
  const select = $("#usage-dimension");
  const options = dimensionOptions();
  select.replaceChildren(...options.map((d) => h("option", { value: d }, t(`usage.by.${d}`))));
  select.value = options.includes(dimension) ? dimension : "model";
}

function nameOf(row, d) {
  const field = NAME_FIELDS[d];
  const id = row[d];
  if (id === null || id === undefined) return t("usage.none");
  return field && row[field] ? `${row[field]} (${id})` : String(id);
}

function renderBreakdown() {
  const view = $("#usage-breakdown-view");
  if (!breakdown) return view.replaceChildren();
  const d = breakdown.dimension;
  const title = t("usage.spendBy", { dimension: t(`usage.by.${d}`) });
  if (!breakdown.rows.length) return view.replaceChildren(h("p", { class: "empty" }, t("usage.empty")));
  const rows = [...breakdown.rows].sort((a, b) => costOf(b) - costOf(a) || (b.requests || 0) - (a.requests || 0));
  const columns = [t(`usage.by.${d}`), t("usage.requests"), t("usage.inputTokens"), t("usage.outputTokens"), t("usage.cost")];
  view.replaceChildren(
    h("figure", { class: "chart-card card" },
      h("figcaption", {}, title),
      barChart(rows.map((r) => ({ label: nameOf(r, d), value: costOf(r) })), { title, format: money, width: chartWidth(view) })),
    table(columns, rows.map((r) => [
      h("span", { class: "break" }, nameOf(r, d)),
      count(r.requests || 0),
      count(r.input_tokens || 0),
      count(r.output_tokens || 0),
      costCell(r),
    ]), title),
  );
}

/** The width a chart in `view` is shown at (its card's padding off), within reason. */
function chartWidth(view) {
  return Math.max(300, Math.min(960, (view.clientWidth || 640) - 42));
}

async function exportCsv(groupBy) {
  if (!groupBy) return;
  ui.clear();
  try {
    await download(`/v1/usage${query({ ...filters(), group_by: groupBy, format: "csv" })}`, `anygate-usage-${groupBy}.csv`);
  } catch (error) {
    ui.error(error);
  }
}
