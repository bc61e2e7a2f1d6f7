// Re-issuing keys per user or per team (People page): after a confirmation, the user's or the team's live keys
// are revoked and a key with the same settings made in place of each; the new secrets are shown once.

import { api, items } from "./api.js";
import { h, table } from "./dom.js";
import { formatNumber, t } from "./i18n.js";

/** Ask, then POST `path`; the new keys ({name, alias, key_id, key} each), or null when not confirmed. */
export async function reissue(ui, path, question) {
  ui.clear();
  if (!window.confirm(question)) return null;
  const answer = await api("POST", path);
  const rows = items(answer);
  ui.notice(t("reissue.done", { n: formatNumber(rows.length) }));
  return rows;
}

/** The re-issued keys with their secrets: in this answer only, so shown once. */
export function reissuedCard(rows) {
  const columns = [t("users.col.name"), t("keys.col.alias"), t("keys.col.id"), t("teams.roster.secret")];
  return h("div", { class: "card secret reissued" },
    h("h3", {}, t("reissue.title")),
    h("p", { class: "hint" }, t("keys.secret.help")),
    rows.length
      ? table(columns, rows.map((row) => [
        h("span", { class: "break" }, row.name || "—"),
        h("span", { class: "break" }, row.alias || "—"),
        h("span", { class: "mono muted" }, row.key_id),
        h("input", { readonly: true, value: row.key || "", class: "mono", spellcheck: "false", "aria-label": `${t("teams.roster.secret")} ${row.alias || ""}` }),
      ]), t("reissue.title"))
      : h("p", { class: "empty" }, t("reissue.none")));
}
