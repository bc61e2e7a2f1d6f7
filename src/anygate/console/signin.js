// Sign-in with the organisation's identity (OpenID Connect): the "Sign in with <issuer>" button, the
// session the gateway keeps in an HttpOnly cookie (this script never sees it, only the CSRF token that
// api.js sends back on every state-changing call), signing out, and why a sign-in was refused.

import { session } from "./api.js";
import { $, h } from "./dom.js";
import { t } from "./i18n.js";

// Reasons the gateway gives in ?signin_error=, by the message that explains them.
const REFUSALS = {
  not_allowed: "signin.error.notAllowed",
  denied: "signin.error.denied",
  flow: "signin.error.again",
  state: "signin.error.again",
  replayed: "signin.error.again",
  incomplete: "signin.error.again",
};
const CHECKS = ["nonce", "audience", "issuer", "expired", "signature", "algorithm", "malformed", "id_token"];

let shared = null;
let issuer = null; // {display_name, login_url} when sign-in with an issuer is on
let person = null; // {name, role} when this browser holds a console session

async function getJson(path) {
  try {
    const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    return response.ok ? await response.json() : null;
  } catch {
    return null; // a gateway without these routes: the key form alone
  }
}

/** Ask the gateway whether sign-in is on and whether this browser is signed in; show the button. */
export async function init(ui) {
  shared = ui;
  const [info, current] = await Promise.all([getJson("/auth/oidc"), getJson("/auth/session")]);
  if (current && current.signed_in) {
    session.csrf = current.csrf_token;
    person = { name: current.name, role: current.role };
  }
  if (info && info.enabled) issuer = info;
  render();
  showRefusal();
  // The language changes after its catalog has loaded (i18n.js sets <html lang>): translate again.
  new MutationObserver(render).observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
}

export function render() {
  renderButton();
  renderPerson();
}

function renderButton() {
  let box = $("#oidc-sign-in");
  if (!issuer) {
    if (box) box.remove();
    return;
  }
  if (!box) {
    box = h("div", { id: "oidc-sign-in", class: "oidc-sign-in" });
    $("#sign-in").append(box);
  }
  const back = location.pathname.startsWith("/ui") ? location.pathname + location.hash : "/ui/";
  const href = `${issuer.login_url}?return_to=${encodeURIComponent(back)}`;
  box.replaceChildren(
    h("p", { class: "hint" }, t("signin.or")),
    h(
      "button",
      { id: "oidc-sign-in-button", type: "button", class: "primary", onclick: () => location.assign(href) },
      t("signin.with", { issuer: issuer.display_name }),
    ),
  );
}

function renderPerson() {
  let label = $("#signed-in-as");
  if (!person) {
    if (label) label.remove();
    return;
  }
  if (!label) {
    label = h("span", { id: "signed-in-as", class: "hint" });
    $("#sign-out").before(label);
  }
  label.textContent = t("signin.as", { name: person.name });
}

/** A sign-in the gateway refused comes back as /ui/?signin_error=<reason>: say why, then tidy the URL. */
function showRefusal() {
  const params = new URLSearchParams(location.search);
  const reason = params.get("signin_error");
  if (!reason) return;
  let message;
  if (reason in REFUSALS) message = t(REFUSALS[reason]);
  else if (CHECKS.includes(reason)) message = t("signin.error.check", { reason });
  else if (reason.startsWith("issuer_")) message = t("signin.error.issuer");
  else message = t("signin.error.failed", { reason });
  shared.error(new Error(message));
  params.delete("signin_error");
  const query = params.toString();
  history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
}

/** End the console session (the gateway clears its cookie); nothing to do for a pasted key. */
export async function signOut() {
  if (!session.csrf) return;
  try {
    await fetch("/auth/session/logout", { method: "POST", headers: { "X-CSRF-Token": session.csrf } });
  } finally {
    session.csrf = null;
    person = null;
  }
}
