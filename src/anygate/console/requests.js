// Requests: the request log (GET /v1/requests), filtered and paged by cursor; one request's detail
// (GET /v1/requests/{id}) on a click. A key holder's log holds only its own requests (the API's rule).

import { api, items, query } from "./api.js";
import { $, badge, h, table } from "./dom.js";
import { formatDate, formatMoney, formatNumber, t } from "./i18n.js";

const PAGE_SIZE = 50;
const FILTERS = ["key_id", "user_id", "provider", "model", "status", "since", "until"];
// The detail's fields in order, each with how to show it.
const DETAIL_FIELDS = [
  "request_id", "created_at", "route", "key_id", "user_id", "provider", "model", "status", "input_tokens",
  "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "audio_tokens", "image_tokens",
  "usage_source", "cost_usd", "cost_source", "latency_ms", "ttft_ms", "byok", "error",
];

let ui;
let records = [];
let cursors = [null]; // the cursor of each page seen so far; the last one is the page shown
let nextCursor = null;
let detail = null; // the record shown in full

export function init(context) {
  ui = context;
  $("#requests-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    ui.clear();
    cursors = [null];
    load().catch(ui.error);
  });
  $("#requests-next").addEventListener("click", () => page(+1));
  $("#requests-prev").addEventListener("click", () => page(-1));
}

function filterValues() {
  const form = $("#requests-filters");
  const values = {};
  for (const name of FILTERS) {
    const raw = form.elements[name].value.trim();
    if (!raw) continue;
    // datetime-local is the viewer's local time: the API takes ISO 8601 with the offset made explicit
    values[name] = name === "since" || name === "until" ? new Date(raw).toISOString() : raw;
  }
  return values;
}

export async function load() {
  const cursor = cursors[cursors.length - 1];
  const body = await api("GET", `/v1/requests${query({ ...filterValues(), limit: PAGE_SIZE, cursor })}`);
  records = items(body);
  nextCursor = (body && body.next_cursor) || null;
  render();
}

async function page(direction) {
  ui.clear();
  if (direction > 0 && nextCursor) cursors.push(nextCursor);
  else if (direction < 0 && cursors.length > 1) cursors.pop();
  else return;
  try {
    await load();
  } catch (error) {
    ui.error(error);
  }
}

export function render() {
  const list = $("#requests-list");
  $("#requests-prev").disabled = cursors.length <= 1;
  $("#requests-next").disabled = !nextCursor;
  $("#requests-page").textContent = t("requests.page", { n: formatNumber(cursors.length) });
  if (!records.length) list.replaceChildren(h("p", { class: "empty" }, t("requests.empty")));
  else {
    const columns = ["time", "route", "key", "model", "status", "tokens", "cost", "latency", "ttft", "usage"].map((c) => t(`requests.col.${c}`));
    list.replaceChildren(table(columns, records.map(row), t("requests.title")));
  }
  renderDetail();
}

function row(r) {
  return [
    h("button", { type: "button", class: "link", onclick: () => show(r.request_id), "aria-label": t("requests.open", { id: r.request_id }) },
      formatDate(r.created_at)),
    h("span", { class: "mono" }, r.route || ""),
    h("span", { class: "mono break" }, r.key_id || ""),
    h("div", { class: "provider-name" }, h("span", { class: "mono break" }, r.model || "—"), h("span", { class: "muted small" }, r.provider || "")),
    statusBadge(r),
    `${formatNumber(r.input_tokens || 0)} / ${formatNumber(r.output_tokens || 0)}`,
    cost(r.cost_usd),
    ms(r.latency_ms),
    ms(r.ttft_ms),
    usageBadge(r.usage_source),
  ];
}

function statusBadge(r) {
  const ok = r.status < 400;
  return h("div", { class: "badges" },
    badge(String(r.status), ok ? "ok" : "bad", r.error || null),
    r.byok ? badge(t("requests.byok"), "info") : null);
}

function usageBadge(source) {
  if (source === "estimated") return badge(t("requests.usage.estimated"), "warn", t("requests.usage.estimatedHint"));
  if (source === "reported") return badge(t("requests.usage.reported"), "ok");
  return "—";
}

const cost = (value) => (typeof value === "number" ? formatMoney(value, "USD") : h("span", { class: "muted" }, t("usage.costUnknown")));
const ms = (value) => (typeof value === "number" ? t("providers.latency", { ms: formatNumber(Math.round(value)) }) : "—");

async function show(id) {
  ui.clear();
  try {
    detail = await api("GET", `/v1/requests/${encodeURIComponent(id)}`);
  } catch (error) {
    detail = null;
    ui.error(error);
  }
  renderDetail();
  if (detail) $("#request-detail").focus();
}

function renderDetail() {
  const panel = $("#request-detail");
  panel.hidden = detail === null;
  if (!detail) return;
  const close = h("button", { type: "button", class: "icon", "aria-label": t("common.close"), onclick: () => { detail = null; renderDetail(); } }, "×");
  panel.replaceChildren(
    h("div", { class: "panel-head" }, h("h2", {}, t("requests.detailTitle", { id: detail.request_id })), close),
    h("dl", { class: "facts" }, DETAIL_FIELDS.filter((name) => name in detail).map((name) => [
      h("dt", {}, t(`requests.field.${name}`)),
      h("dd", {}, describe(name, detail[name])),
    ])),
  );
}

function describe(name, value) {
  if (name === "cost_usd") return cost(value); // null: the price is unknown, never $0
  if (value === null || value === undefined || value === "") return "—";
  if (name === "created_at") return formatDate(value);
  if (name === "latency_ms" || name === "ttft_ms") return ms(value);
  if (name === "usage_source") return usageBadge(value);
  if (name === "byok") return value ? t("common.yes") : t("common.no");
  if (name === "status") return statusBadge(detail);
  if (typeof value === "number") return formatNumber(value);
  if (typeof value === "object") return h("code", { class: "break" }, JSON.stringify(value));
  return h("span", { class: name.endsWith("_id") || name === "route" ? "mono break" : "break" }, String(value));
}
