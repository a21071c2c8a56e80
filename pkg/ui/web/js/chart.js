// A small SVG line chart for the datapath graphs: time on x (the last ten
// minutes), one line per series, a legend with each series' last value.

import {s, h, fmtNumber} from './dom.js';

const W = 560, H = 170, L = 48, R = 10, T = 10, B = 22;
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d', '#475569'];
export const WINDOWS = [1, 5, 10]; // minutes; the server keeps ten

// autoWindow is the shortest window that shows every sample.
export function autoWindow(seriesLists, now = Date.now()) {
  let oldest = now;
  for (const series of seriesLists) for (const sr of series) if (sr.points.length) oldest = Math.min(oldest, sr.points[0][0]);
  return WINDOWS.find(m => now - oldest <= m * 60000) || WINDOWS[WINDOWS.length - 1];
}

export function chart(title, series, {unit = '', now = Date.now(), minutes = 10} = {}) {
  const windowMs = minutes * 60000;
  const from = now - windowMs;
  let max = 0;
  for (const sr of series) for (const [t, v] of sr.points) if (t >= from) max = Math.max(max, v);
  max = max > 0 ? niceCeil(max) : 1;
  const x = t => L + ((t - from) / windowMs) * (W - L - R);
  const y = v => T + (1 - v / max) * (H - T - B);
  const svg = s('svg', {class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title});
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid'}),
      s('text', {x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick'}, fmtNumber(v)));
  }
  for (const [m, label] of [[minutes, `-${minutes} min`], [minutes / 2, `-${minutes / 2} min`], [0, 'now']]) {
    svg.append(s('text', {x: x(now - m * 60000), y: H - 6, 'text-anchor': m === minutes ? 'start' : m === 0 ? 'end' : 'middle', class: 'tick'}, label));
  }
  const legend = h('ul', {class: 'chart-legend'});
  series.forEach((sr, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = sr.points.filter(([t]) => t >= from);
    if (pts.length > 1) {
      svg.append(s('polyline', {points: pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' '), class: 'series', stroke: color},
        s('title', null, sr.name)));
    } else if (pts.length === 1) {
      svg.append(s('circle', {cx: x(pts[0][0]), cy: y(pts[0][1]), r: 2.5, fill: color}));
    }
    const last = pts.length ? pts[pts.length - 1][1] : null;
    legend.append(h('li', null, h('span', {class: 'swatch', style: `background:${color}`}), sr.name, ' ', h('b', null, fmtNumber(last) + (last === null ? '' : unit))));
  });
  const body = series.some(sr => sr.points.length) ? svg : h('p', {class: 'muted chart-empty'}, 'No samples yet: the agent publishes every 2 s.');
  return h('figure', {class: 'chart-box'}, h('figcaption', null, title), body, legend);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
