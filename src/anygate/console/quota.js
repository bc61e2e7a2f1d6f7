// My usage: the neutral quota of the signed-in key (GET /v1/quota) as progress bars.

import { api } from "./api.js";
import { $, h } from "./dom.js";
import { formatDate, formatMoney, formatNumber, t } from "./i18n.js";

let ui;
let quota = null;
let bars = 0; // ids that tie each bar to its heading

export function init(context) {
  ui = context;
  $("#quota-refresh").addEventListener("click", () => { ui.clear(); load().catch(ui.error); });
}

export async function load() {
  quota = await api("GET", "/v1/quota");
  render();
}

export function render() {
  const view = $("#quota-view");
  if (!quota) return;
  const cards = [];
  if (quota.tokens) cards.push(bucket(t("quota.tokens"), quota.tokens, (n) => formatNumber(n)));
  if (quota.cost) cards.push(bucket(t("quota.cost"), quota.cost, (n) => formatMoney(n, quota.cost.currency || "USD")));
  view.replaceChildren(
    quota.key ? h("p", { class: "muted" }, t("quota.key", { key: quota.key })) : "",
    cards.length ? h("div", { class: "quota-grid" }, cards) : h("p", { class: "empty" }, t("quota.none")),
  );
}

/** One budget: a bar filled with what remains, the numbers, and when it resets. */
function bucket(title, b, format) {
  const limited = typeof b.limit === "number";
  const used = Number(b.used) || 0;
  const remaining = typeof b.remaining === "number" ? b.remaining : limited ? b.limit - used : null;
  const share = limited && b.limit > 0 ? Math.max(0, Math.min(1, remaining / b.limit)) : limited ? 0 : 1;
  const percent = Math.round(share * 100);
  const level = !limited ? "ok" : share <= 0.1 ? "bad" : share <= 0.25 ? "warn" : "ok";
  const id = `quota-bar-${(bars += 1)}`;
  const headline = !limited
    ? t("common.unlimited")
    : remaining < 0
      ? t("quota.over", { value: format(-remaining) })
      : t("quota.remaining", { value: format(remaining) });
  return h("article", { class: "card quota" },
    h("h2", { id }, title),
    h("p", { class: `quota-headline level-${level}` }, headline),
    h("div", {
      class: `bar level-${level}`, role: "progressbar", "aria-labelledby": id,
      "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": percent, "aria-valuetext": headline,
    }, barFill(percent)),
    h("p", { class: "muted" }, limited
      ? t("quota.used", { used: format(used), limit: format(b.limit) })
      : t("quota.usedUnlimited", { used: format(used) })),
    "resets_at" in b
      ? h("p", { class: "muted" }, b.resets_at ? t("quota.resets", { when: formatDate(b.resets_at) }) : t("quota.noReset"))
      : null,
  );
}

/** The filled part of a bar, sized through the CSSOM (the Content-Security-Policy refuses style attributes). */
function barFill(percent) {
  const fill = h("span");
  fill.style.width = `${percent}%`;
  return fill;
}
