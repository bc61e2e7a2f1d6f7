// Small DOM helpers. Text from the API is always set as text, never parsed as HTML.

// The listeners h() added to each element ([[type, listener], ...]), so that update() can give an element it
// keeps the listeners of the element built to replace it (they hold the newer data).
const listenersOf = new WeakMap();

/** Build an element: h("td", {class: "num"}, "42"). Attributes starting with "on" add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) {
      el.addEventListener(name.slice(2), value);
      listenersOf.set(el, [...(listenersOf.get(el) || []), [name.slice(2), value]]);
    } else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** A table that turns into stacked cards on narrow screens (each cell carries its column label).
 * `rowKeys`: each row's key (an id), so that update() keeps a row where it is when the table is shown again. */
export function table(columns, rows, caption, rowKeys = null) {
  const head = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c))));
  const body = h(
    "tbody",
    {},
    rows.map((cells, row) => h("tr", { "data-key": rowKeys ? rowKeys[row] : null },
      cells.map((cell, i) => h("td", { "data-label": columns[i] }, cell)))),
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

/** Show `nodes` in `container`, as container.replaceChildren(...nodes) would, but by changing the nodes already
 * there in place: an element of the same tag at the same place (a table row: of the same data-key) is kept,
 * its attributes, text and h() listeners made those of the new one. For lists that re-render when a reload
 * lands, maybe under a pressed mouse: a button replaced between mousedown and mouseup gets no click (the
 * press is lost), one changed in place gets it. Keeps focus too. Not for forms: a typed value is a property,
 * not an attribute, and is not carried over. */
export function update(container, ...nodes) {
  updateChildren(container, nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false)
    .map((n) => (n instanceof Node ? n : document.createTextNode(String(n)))));
}

const keyOf = (node) => (node instanceof Element && node.hasAttribute("data-key") ? node.getAttribute("data-key") : null);

function updateChildren(parent, next) {
  const current = [...parent.childNodes];
  const keyed = new Map(current.filter((n) => keyOf(n) !== null).map((n) => [keyOf(n), n]));
  const unkeyed = current.filter((n) => keyOf(n) === null);
  // Each new node with the one it changes: a keyed one with the same key, else the next unkeyed one.
  const pairs = next.map((node) => {
    const key = keyOf(node);
    if (key === null) return [unkeyed.shift() || null, node];
    const old = keyed.get(key) || null;
    keyed.delete(key); // a key met twice pairs once
    return [old, node];
  });
  // Those nothing pairs with go first: the kept ones are then in their order already, and are not moved (a
  // moved node is taken out of the document and put back, which loses a press as a replacement does).
  const kept = new Set(pairs.map(([old]) => old));
  for (const node of current) if (!kept.has(node)) node.remove();
  pairs.forEach(([old, node], i) => {
    const shown = old ? updateNode(old, node) : node;
    if (parent.childNodes[i] !== shown) parent.insertBefore(shown, parent.childNodes[i] || null);
  });
}

/** `old` made like `node` when they are the same kind of node (returns `old`), else replaced by it. */
function updateNode(old, node) {
  if (old.nodeName !== node.nodeName || !(old instanceof Element || old instanceof Text)) {
    old.replaceWith(node);
    return node;
  }
  if (old instanceof Text) {
    if (old.data !== node.data) old.data = node.data;
    return old;
  }
  for (const { name } of [...old.attributes]) if (!node.hasAttribute(name)) old.removeAttribute(name);
  for (const { name, value } of node.attributes) if (old.getAttribute(name) !== value) old.setAttribute(name, value);
  for (const [type, listener] of listenersOf.get(old) || []) old.removeEventListener(type, listener);
  for (const [type, listener] of listenersOf.get(node) || []) old.addEventListener(type, listener);
  listenersOf.set(old, listenersOf.get(node) || []);
  updateChildren(old, [...node.childNodes]);
  return old;
}
