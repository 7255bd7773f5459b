// A small line chart drawn as inline SVG: no chart library, no CDN, nothing inline for the CSP.

export interface Series {
  name: string;
  unit: string;
  points: { t: number; v: number }[];
}

const NS = "http://www.w3.org/2000/svg";

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function niceRange(lo: number, hi: number): [number, number, number] {
  if (lo === hi) {
    lo -= 1;
    hi += 1;
  }
  const raw = (hi - lo) / 4;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  return [Math.floor(lo / step) * step, Math.ceil(hi / step) * step, step];
}

/** lineChart draws up to three series against time; the y axis spans every series. */
export function lineChart(series: Series[], title: string): SVGElement {
  const W = 640, H = 240, L = 44, R = 12, T = 12, B = 28;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  svg.appendChild(el("title", {}, title));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) return svg;
  const t0 = Math.min(...all.map((p) => p.t)), t1 = Math.max(...all.map((p) => p.t));
  const [y0, y1, step] = niceRange(Math.min(...all.map((p) => p.v)), Math.max(...all.map((p) => p.v)));
  const x = (t: number) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v: number) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
  for (let v = y0; v <= y1 + step / 2; v += step) {
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, String(Math.round(v * 10) / 10)));
  }
  svg.appendChild(el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.appendChild(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  const fmt = (t: number) => new Date(t).toISOString().slice(0, 10);
  svg.appendChild(el("text", { x: L, y: H - 8, "text-anchor": "start" }, fmt(t0)));
  if (t1 !== t0) svg.appendChild(el("text", { x: W - R, y: H - 8, "text-anchor": "end" }, fmt(t1)));
  series.forEach((s, i) => {
    const pts = [...s.points].sort((a, b) => a.t - b.t);
    if (pts.length > 1) {
      const d = pts.map((p, j) => `${j === 0 ? "M" : "L"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
      svg.appendChild(el("path", { d, class: `s${i + 1}` }));
    }
    for (const p of pts) {
      const c = el("circle", { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 3, class: `d${i + 1}` });
      c.appendChild(el("title", {}, `${s.name} ${p.v} ${s.unit} on ${fmt(p.t)}`));
      svg.appendChild(c);
    }
  });
  return svg;
}
