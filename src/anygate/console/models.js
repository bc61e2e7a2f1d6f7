// Models: the aggregated list the caller may use.

import { api, items } from "./api.js";
import { $, h, table } from "./dom.js";
import { formatNumber, t } from "./i18n.js";

let models = [];

export function init() {
  $("#models-filter").addEventListener("input", render);
}

export async function load() {
  models = items(await api("GET", "/v1/models"));
  render();
}

export function render() {
  const needle = $("#models-filter").value.trim().toLowerCase();
  const shown = needle ? models.filter((m) => m.id.toLowerCase().includes(needle)) : models;
  const list = $("#models-list");
  if (!shown.length) {
    list.replaceChildren(h("p", { class: "empty" }, t("models.empty")));
    return;
  }
  const columns = ["id", "provider", "context"].map((c) => t(`models.col.${c}`));
  const rows = shown.map((m) => [
    h("span", { class: "mono break" }, m.id),
    m.owned_by || "",
    typeof m.context_length === "number" ? formatNumber(m.context_length) : "—",
  ]);
  list.replaceChildren(
    h("p", { class: "muted", "aria-live": "polite" }, t("models.count", { count: formatNumber(shown.length) })),
    table(columns, rows, t("models.title")),
  );
}
