// Small DOM helpers. Text from the API is always set as text, never parsed as HTML.

/** Build an element: h("td", {class: "num"}, "42"). Attributes starting with "on" add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** A table that turns into stacked cards on narrow screens (each cell carries its column label). */
export function table(columns, rows, caption) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c))));
  const body = h(
    "tbody",
    {},
    rows.map((cells) => h("tr", {}, cells.map((cell, i) => h("td", { "data-label": columns[i] }, cell)))),
  );
  return h("div", { class: "table-wrap" }, h("table", {}, caption ? h("caption", { class: "visually-hidden" }, caption) : null, head, body));
}

export function badge(text, kind = "", title = null) {
  return h("span", { class: `badge ${kind ? "badge-" + kind : ""}`.trim(), title }, text);
}

/** Comma-separated text → trimmed, non-empty items. */
export function splitList(text) {
  return text.split(",").map((s) => s.trim()).filter(Boolean);
}
