// My provider keys (bring your own key): masked display, set or remove one key per provider.

import { api } from "./api.js";
import { $, badge, h, table } from "./dom.js";
import { t } from "./i18n.js";

let ui;
let creds = {}; // provider id -> masked key

export function init(context) {
  ui = context;
}

function maskedKeys(body) {
  const providers = (body && body.providers) || {};
  const out = {};
  for (const [id, entry] of Object.entries(providers)) {
    const key = entry && typeof entry === "object" ? entry.apiKey : entry;
    if (key) out[id] = String(key);
  }
  return out;
}

export async function load() {
  creds = maskedKeys(await api("GET", "/auth/creds"));
  render();
}

export function render() {
  const list = $("#creds-list");
  const ids = [...new Set([...ui.providers.map((p) => p.id), ...Object.keys(creds)])];
  if (!ids.length) {
    list.replaceChildren(h("p", { class: "empty" }, t("creds.empty")));
    return;
  }
  const columns = ["provider", "key", "new"].map((c) => t(`creds.col.${c}`));
  list.replaceChildren(table([...columns, t("common.actions")], ids.map(row), t("creds.title")));
}

function row(id) {
  const provider = ui.providers.find((p) => p.id === id);
  const name = provider && provider.name ? provider.name : id;
  const input = h("input", {
    type: "password", autocomplete: "off", spellcheck: "false", "aria-label": t("creds.newLabel", { provider: name }),
  });
  const save = () => put(id, name, { apiKey: input.value.trim() }, "creds.saved");
  input.addEventListener("keydown", (event) => { if (event.key === "Enter") save(); });
  return [
    h("div", { class: "provider-name" }, h("strong", {}, name), h("span", { class: "mono muted" }, id)),
    creds[id] ? h("code", {}, creds[id]) : badge(t("creds.notSet"), "muted"),
    input,
    h("div", { class: "row-actions" },
      h("button", { type: "button", onclick: save }, t("creds.save")),
      creds[id]
        ? h("button", { type: "button", class: "danger", onclick: () => put(id, name, null, "creds.removed") }, t("creds.remove"))
        : null),
  ];
}

async function put(id, name, value, messageKey) {
  ui.clear();
  if (value && !value.apiKey) return;
  try {
    creds = maskedKeys(await api("PUT", "/auth/creds", { providers: { [id]: value } }));
    ui.notice(t(messageKey, { provider: name }));
    render();
  } catch (error) {
    ui.error(error);
  }
}
