// Charts in plain SVG: no library, nothing fetched (the console works air-gapped). Colours come from the
// stylesheet (classes), sizes from attributes: the Content-Security-Policy refuses inline styles.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) el.append(child);
  return el;
}

/** A tooltip, read by screen readers too. */
function tip(text) {
  const title = svg("title");
  title.textContent = text;
  return title;
}

function label(x, y, text, anchor = "start", kind = "axis") {
  const el = svg("text", { x, y, "text-anchor": anchor, class: `chart-${kind}` });
  el.textContent = text;
  return el;
}

/**
 * Columns over time: points = [{label, value}], format(value) -> text.
 * The first, middle and last labels sit under the axis; every column has its value as a tooltip.
 */
export function columnChart(points, { title, format }) {
  // Drawn at about the size it is shown (a third of a wide screen, or a phone's width), so text stays legible.
  const width = 320;
  const height = 170;
  const left = 4;
  const top = 20;
  const bottom = 22;
  const plot = height - top - bottom;
  const max = Math.max(0, ...points.map((p) => p.value || 0));
  const step = points.length ? (width - 2 * left) / points.length : 0;
  const gap = step > 6 ? Math.min(4, step * 0.2) : 0;
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title,
  });
  chart.append(tip(title));
  chart.append(svg("line", { x1: left, x2: width - left, y1: top + plot, y2: top + plot, class: "chart-baseline" }));
  points.forEach((point, i) => {
    const value = point.value || 0;
    const h = max > 0 ? (value / max) * plot : 0;
    const bar = svg("rect", {
      x: left + i * step + gap / 2, y: top + plot - h, width: Math.max(step - gap, 0.5), height: Math.max(h, value > 0 ? 1 : 0),
      class: "chart-bar",
    }, tip(`${point.label}: ${format(value)}`));
    bar.dataset.label = point.label;
    bar.dataset.value = String(value);
    chart.append(bar);
  });
  chart.append(label(left, 14, format(max), "start", "max"));
  if (points.length) {
    const ticks = [...new Set([0, Math.floor((points.length - 1) / 2), points.length - 1])];
    for (const i of ticks) {
      const x = left + i * step + step / 2;
      const anchor = i === 0 ? "start" : i === points.length - 1 ? "end" : "middle";
      chart.append(label(anchor === "start" ? left : anchor === "end" ? width - left : x, height - 6, points[i].label, anchor));
    }
  }
  return chart;
}

/** Horizontal bars, largest first: rows = [{label, value}]; at most `limit` bars (the table has them all).
 * `width`: the pixels it will be shown at (text is drawn at its real size). */
export function barChart(rows, { title, format, limit = 10, width = 640 }) {
  const shown = [...rows].sort((a, b) => (b.value || 0) - (a.value || 0)).slice(0, limit);
  const row = 26;
  const labelWidth = Math.min(220, Math.round(width * 0.38));
  const valueWidth = Math.min(110, Math.round(width * 0.22));
  const height = Math.max(row, shown.length * row) + 4;
  const max = Math.max(0, ...shown.map((r) => r.value || 0));
  const room = width - labelWidth - valueWidth;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart chart-bars", role: "img", "aria-label": title });
  chart.append(tip(title));
  shown.forEach((r, i) => {
    const y = i * row + 2;
    const value = r.value || 0;
    const w = max > 0 ? (value / max) * room : 0;
    chart.append(label(labelWidth - 8, y + 17, shorten(r.label, Math.floor(labelWidth / 7.5)), "end"));
    const bar = svg("rect", { x: labelWidth, y: y + 4, width: Math.max(w, value > 0 ? 1 : 0), height: row - 8, class: "chart-bar" },
      tip(`${r.label}: ${format(value)}`));
    bar.dataset.label = r.label;
    bar.dataset.value = String(value);
    chart.append(bar);
    chart.append(label(labelWidth + w + 6, y + 17, format(value), "start", "value"));
  });
  return chart;
}

function shorten(text, max) {
  const s = String(text);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
