// The anygate web console: sign-in, navigation, the error area, and the sections in their own modules.

import { ApiError, session } from "./api.js";
import { $ } from "./dom.js";
import { has, preferredLanguage, setLanguage, t } from "./i18n.js";
import * as creds from "./creds.js";
import * as keys from "./keys.js";
import * as models from "./models.js";
import * as people from "./users.js";
import * as providers from "./providers.js";
import * as quota from "./quota.js";
import * as requests from "./requests.js";
import * as signin from "./signin.js";
import * as usage from "./usage.js";

const SECTIONS = { providers, models, usage, requests, people, keys, quota, creds };
const DEFAULT_SECTION = "providers";

/** What every section may use: messages, the caller's role and the provider list. */
const ui = {
  isAdmin: null, // true | false | null (unknown: the keys API is not there to ask)
  role: null, // "admin" | "team_admin" | "user" | null (unknown), from GET /v1/keys (keys.js)
  caller: null, // {key_id, role, user_id, team_id}: who is signed in, as GET /v1/keys says
  teamsAvailable: null, // true once GET /v1/teams answers 200, false on 404
  providers: [],
  error(error) {
    const { text, detail } = describeError(error);
    $("#error-text").textContent = text;
    $("#error-detail").textContent = detail || "";
    $("#error-detail").hidden = !detail;
    $("#error").hidden = false;
  },
  notice(text) {
    $("#notice").textContent = text;
    $("#notice").hidden = false;
  },
  clear() {
    $("#error").hidden = true;
    $("#notice").hidden = true;
  },
  /** The caller's role: [data-admin] parts show for admins only, [data-manager] ones for (team) admins. */
  setRole(role) {
    ui.role = role;
    ui.isAdmin = role === null ? null : role === "admin";
    document.body.dataset.admin = role === null ? "unknown" : role === "admin" ? "yes" : "no";
    document.body.dataset.role = role || "unknown";
    $("#admin-badge").hidden = role !== "admin";
  },
};

/** An error in the chosen language where anygate's error code is known ("apiError.<code>"), with the
 * gateway's own message beside it when that says more; else the gateway's message as it is. */
function describeError(error) {
  if (error instanceof ApiError) {
    if (error.status === 0) return { text: t("error.network", { detail: error.message }) };
    const body = error.body && typeof error.body.error === "object" ? error.body.error : {};
    const key = typeof body.code === "string" ? `apiError.${body.code}` : null;
    if (key && has(key)) {
      const text = t(key, { param: body.param || "—" });
      return { text, detail: error.message && error.message !== text ? error.message : null };
    }
    return { text: error.message || t("error.http", { status: error.status }) };
  }
  return { text: error && error.message ? error.message : String(error) };
}

/** Load a section; a 404 (not built here) or 403 (not for this key) shows "not available" instead. */
async function loadSection(name) {
  const el = document.getElementById(name);
  try {
    await SECTIONS[name].load();
    markAvailability(el, null);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 403)) {
      markAvailability(el, error.status === 403 ? "common.forbidden" : "common.unavailable");
      if (error.status === 403) document.querySelector(`#nav [data-section="${name}"]`).hidden = true;
    } else {
      ui.error(error);
    }
  }
}

function markAvailability(el, messageKey) {
  const body = el.querySelector(".section-body");
  let note = el.querySelector(".unavailable");
  body.hidden = messageKey !== null;
  if (messageKey === null) {
    if (note) note.remove();
    return;
  }
  if (!note) {
    note = document.createElement("p");
    note.className = "unavailable";
    body.before(note);
  }
  note.dataset.i18n = messageKey;
  note.textContent = t(messageKey);
}

function currentSection() {
  const name = location.hash.slice(1);
  return name in SECTIONS ? name : DEFAULT_SECTION;
}

function showSection(name) {
  for (const id of Object.keys(SECTIONS)) document.getElementById(id).hidden = id !== name;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.section === name) {
      link.setAttribute("aria-current", "page");
      link.scrollIntoView({ block: "nearest", inline: "nearest" }); // a phone's one-row menu scrolls to it
    } else link.removeAttribute("aria-current");
  }
}

function showSignedIn(signedIn) {
  $("#sign-in").hidden = signedIn;
  $("#nav").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
  if (signedIn) showSection(currentSection());
  else for (const id of Object.keys(SECTIONS)) document.getElementById(id).hidden = true;
}

/** Check the key against the provider list (any key may read it), then load everything else. The body's
 * data-loaded says when every section's first load has answered (the menu may lose a link until then: a
 * section this key may not see). */
async function start() {
  document.body.dataset.loaded = "false";
  try {
    await providers.load();
  } catch (error) {
    session.key = null;
    session.csrf = null;
    showSignedIn(false);
    ui.error(error);
    return;
  }
  showSignedIn(true);
  await loadSection("keys"); // tells who the caller is (admin, team admin or key holder)
  providers.render();
  await loadSection("people"); // tells whether the gateway has teams (usage breaks down by team then)
  await Promise.all(["models", "usage", "requests", "quota", "creds"].map(loadSection));
  document.body.dataset.loaded = "true";
}

async function signIn(event) {
  event.preventDefault();
  ui.clear();
  const input = $("#sign-in-key");
  session.key = input.value.trim();
  input.value = "";
  await start();
}

/** Forget the key and start afresh, so nothing of this session (a new key's secret) stays on screen. */
async function signOut() {
  await signin.signOut();
  session.key = null;
  location.replace(location.pathname);
}

async function changeLanguage(event) {
  await setLanguage(event.target.value);
  for (const section of Object.values(SECTIONS)) section.render();
}

async function main() {
  const lang = preferredLanguage();
  $("#lang").value = lang;
  await setLanguage(lang);
  for (const section of Object.values(SECTIONS)) await section.init(ui);
  $("#lang").addEventListener("change", changeLanguage);
  $("#sign-in-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", signOut);
  $("#error-close").addEventListener("click", () => { $("#error").hidden = true; });
  window.addEventListener("hashchange", () => {
    if (!session.active) return;
    const name = currentSection();
    showSection(name);
    ui.clear();
    loadSection(name);
  });
  await signin.init(ui);
  if (session.active) await start();
  else showSignedIn(false);
  document.body.dataset.ready = "true";
}

main().catch((error) => ui.error(error));
