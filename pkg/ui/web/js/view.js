// TopologyView draws a layout as SVG and handles zoom, pan, selection,
// search highlighting and a traced path. Names are SVG text, so the
// browser's find and a screen reader read them; each node is focusable and
// has its full name as its accessible label.

import {s, clear} from './dom.js';
import {layout, fit, G} from './layout.js';

const LABEL_MAX = {router: 26, bridge: 26, uplink: 26, host: 22, port: 18, agg: 18};

export class TopologyView {
  constructor(container, topo, {onSelect, onToggle} = {}) {
    this.topo = topo;
    this.onSelect = onSelect || (() => {});
    this.onToggle = onToggle || (() => {});
    this.toggled = new Map();
    this.selected = null;     // node key
    this.matches = null;      // Set of node keys, or null when not searching
    this.path = null;         // [{key, step}] of a trace
    this.pathUpTo = Infinity; // steps shown
    this.k = 1; this.tx = 0; this.ty = 0;
    this.fitted = false;
    this.svg = s('svg', {class: 'topo', role: 'group', 'aria-label': 'virtual network topology', tabindex: '0'});
    this.vp = s('g', {class: 'viewport'});
    this.svg.append(this.vp);
    container.append(this.svg);
    this.installZoom();
  }

  // render lays the topology out again and redraws it, keeping zoom, pan,
  // selection, search and path.
  render() {
    // Wrap rows at the width that fits the window at 75 % zoom, so the
    // fitted picture stays legible however many networks there are.
    const width = this.svg.clientWidth || 1200;
    this.lay = layout(this.topo, {toggled: this.toggled, targetWidth: width / 0.75});
    const {nodes, edges} = this.lay;
    clear(this.vp);
    const gEdges = s('g', {class: 'edges'});
    const gLabels = s('g', {class: 'edge-labels'});
    const gNodes = s('g', {class: 'nodes'});
    for (const e of edges) this.drawEdge(gEdges, gLabels, e, nodes);
    for (const n of nodes.values()) gNodes.append(this.drawNode(n));
    // The traced path runs under the nodes (their names stay readable)
    // and its hop numbers over them.
    this.gPath = s('g', {class: 'path'});
    this.gHops = s('g', {class: 'hops'});
    this.vp.append(gEdges, this.gPath, gNodes, gLabels, this.gHops);
    this.applyClasses();
    this.drawPath();
    if (!this.fitted && nodes.size) { this.fit(); this.fitted = true; }
    this.applyTransform();
  }

  drawEdge(gEdges, gLabels, e, nodes) {
    const a = nodes.get(e.from), b = nodes.get(e.to);
    let d;
    if (e.kind === 'arc') {
      const mx = (a.x + b.x) / 2, top = Math.min(a.y, b.y) - a.h / 2 - 30 - Math.abs(a.x - b.x) * 0.08;
      d = `M${a.x},${a.y - a.h / 2} Q${mx},${top} ${b.x},${b.y - b.h / 2}`;
    } else {
      const [top, bot] = a.y <= b.y ? [a, b] : [b, a];
      const y1 = top.y + top.h / 2, y2 = bot.y - bot.h / 2, my = (y1 + y2) / 2;
      d = `M${top.x},${y1} C${top.x},${my} ${bot.x},${my} ${bot.x},${y2}`;
    }
    const cls = ['edge', 'edge-' + e.kind, e.dead ? 'dead' : '', e.agg ? 'edge-agg' : ''];
    const path = s('path', {d, class: cls, 'data-from': e.from, 'data-to': e.to});
    gEdges.append(path);
    const text = e.label || (e.count ? `×${e.count}` : '');
    if (text) {
      const lines = String(text).split('\n');
      const lx = (a.x + b.x) / 2;
      const ly = (e.kind === 'arc' ? Math.min(a.y, b.y) - a.h / 2 - 22 : (a.y + b.y) / 2) - (lines.length - 1) * 6;
      gLabels.append(s('text', {x: lx, y: ly, class: ['edge-label', e.agg ? 'edge-agg' : ''], 'text-anchor': 'middle', 'data-from': e.from, 'data-to': e.to},
        lines.map((l, i) => s('tspan', {x: lx, dy: i ? 12 : 0}, l))));
    }
  }

  drawNode(n) {
    const label = fit(n.label, LABEL_MAX[n.kind] || 20);
    const title = `${n.kind === 'agg' ? 'network ' + n.label : n.objKind + ' ' + n.label}${n.sub ? ' — ' + n.sub : ''}`;
    const tx = n.kind === 'host' ? n.w / 2 + 8 : n.w / 2; // clear of a host's status dot
    const g = s('g', {class: ['node', 'node-' + n.kind, n.dead ? 'dead' : '', n.kind === 'host' && !n.dead ? 'alive' : '', n.down ? 'down' : '', n.collapsed ? 'collapsed' : ''],
      transform: `translate(${n.x - n.w / 2},${n.y - n.h / 2})`, tabindex: '0', role: 'button', 'aria-label': title,
      'data-key': n.key, 'data-kind': n.objKind, 'data-id': n.obj.id},
    s('title', null, title),
    s('rect', {width: n.w, height: n.h, rx: n.kind === 'port' || n.kind === 'agg' ? n.h / 2 : 6, class: 'shape'}),
    n.kind === 'host' ? s('circle', {cx: 14, cy: n.h / 2, r: 5, class: 'status-dot'}) : null,
    s('text', {x: tx, y: n.sub ? n.h / 2 - 3 : n.h / 2 + 4, class: 'label', 'text-anchor': 'middle'}, label),
    n.sub ? s('text', {x: tx, y: n.h / 2 + 12, class: 'sub', 'text-anchor': 'middle'}, fit(n.sub, Math.round((n.w - 2 * (tx - n.w / 2)) / 6.2))) : null);
    const activate = ev => {
      ev.stopPropagation();
      if (n.kind === 'agg') { this.toggle(n.obj.id); return; }
      this.select(n.key);
    };
    g.addEventListener('click', activate);
    g.addEventListener('pointerenter', () => this.focusEdges(n.key, 'hover'));
    g.addEventListener('pointerleave', () => this.focusEdges(null, 'hover'));
    g.addEventListener('keydown', ev => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); activate(ev); } });
    if (n.kind === 'bridge' && n.portCount > 0) g.addEventListener('dblclick', ev => { ev.stopPropagation(); this.toggle(n.obj.id); });
    return g;
  }

  toggle(bridgeID) {
    const n = this.lay && this.lay.nodes.get('bridge/' + bridgeID);
    const collapsed = n ? n.collapsed : false;
    this.toggled.set(bridgeID, collapsed ? 'expanded' : 'collapsed');
    this.render();
    this.onToggle(bridgeID, !collapsed);
  }

  setAll(state) {
    for (const b of this.topo.bridges.values()) this.toggled.set(b.id, state);
    this.render();
  }

  // nodeKeyOf maps an object to the node that draws it: a port inside a
  // collapsed network is drawn by the network's "N ports" node, an
  // interior port by its device.
  nodeKeyOf(kind, id) {
    if (!this.lay) return null;
    const key = kind + '/' + id;
    if (this.lay.nodes.has(key)) return key;
    if (kind === 'port') {
      const p = this.topo.ports.get(id);
      if (!p) return null;
      if (p.bridge_id && this.lay.nodes.has('agg/' + p.bridge_id)) return 'agg/' + p.bridge_id;
      const dk = (p.router_id ? 'router/' : 'bridge/') + (p.router_id || p.bridge_id);
      if (this.lay.nodes.has(dk)) return dk;
    }
    return null;
  }

  select(key, {center = false} = {}) {
    this.selected = key;
    this.applyClasses();
    const n = key && this.lay && this.lay.nodes.get(key);
    if (n && center) this.centerOn(n);
    this.onSelect(n || null);
  }

  // reveal makes an object visible (expanding its network) and selects it.
  reveal(kind, id) {
    if (kind === 'port') {
      const p = this.topo.ports.get(id);
      if (p && p.bridge_id && this.lay && this.lay.nodes.has('agg/' + p.bridge_id)) {
        this.toggled.set(p.bridge_id, 'expanded');
        this.render();
      }
    }
    const key = this.nodeKeyOf(kind, id);
    if (key) this.select(key, {center: true});
    return key;
  }

  setMatches(keys) {
    this.matches = keys;
    this.applyClasses();
  }

  // focusEdges marks the edges of a node (the selected one, the one under
  // the pointer) so the picture can show what is hidden at rest.
  focusEdges(key, cls = 'focus') {
    for (const el of this.vp.querySelectorAll('.' + cls)) if (el.dataset.from) el.classList.remove(cls);
    if (!key) return;
    for (const el of this.vp.querySelectorAll(`[data-from="${CSS.escape(key)}"], [data-to="${CSS.escape(key)}"]`)) el.classList.add(cls);
  }

  applyClasses() {
    this.focusEdges(this.selected);
    for (const g of this.vp.querySelectorAll('.node')) {
      const k = g.dataset.key;
      g.classList.toggle('selected', k === this.selected);
      g.classList.toggle('match', !!this.matches && this.matches.has(k));
      g.classList.toggle('dim', !!this.matches && !this.matches.has(k));
      if (k === this.selected) g.setAttribute('aria-pressed', 'true'); else g.removeAttribute('aria-pressed');
    }
  }

  // setPath shows a trace: hops [{key, step, drop}] in order.
  setPath(hops) {
    this.path = hops;
    this.pathUpTo = Infinity;
    this.drawPath();
  }

  showPathUpTo(i) {
    this.pathUpTo = i;
    this.drawPath();
  }

  drawPath() {
    if (!this.gPath) return;
    clear(this.gPath);
    clear(this.gHops);
    for (const g of this.vp.querySelectorAll('.node')) g.classList.remove('on-path', 'path-current', 'path-drop');
    if (!this.path || !this.lay) return;
    const hops = this.path.filter(hp => hp.step <= this.pathUpTo && this.lay.nodes.has(hp.key));
    const shown = new Set(hops.map(hp => hp.key));
    hops.forEach((hp, i) => {
      const n = this.lay.nodes.get(hp.key);
      const g = this.vp.querySelector(`.node[data-key="${CSS.escape(hp.key)}"]`);
      if (g) {
        g.classList.add('on-path');
        if (i === hops.length - 1) g.classList.add('path-current');
        if (hp.drop) g.classList.add('path-drop');
      }
      // Each hop is a segment from where the packet was: a flood's
      // branches all start at the bridge that flooded.
      if (hp.from && hp.from !== hp.key && shown.has(hp.from)) {
        const a = this.lay.nodes.get(hp.from);
        this.gPath.append(s('line', {x1: a.x, y1: a.y, x2: n.x, y2: n.y, class: 'path-line' + (hp.drop ? ' path-line-drop' : '')}));
      }
      this.gHops.append(s('g', {class: 'hop' + (hp.drop ? ' hop-drop' : ''), transform: `translate(${n.x + n.w / 2 - 4},${n.y - n.h / 2 + 2})`},
        s('circle', {r: 10}), s('text', {'text-anchor': 'middle', y: 4}, String(i + 1))));
    });
  }

  // Zoom and pan: the wheel zooms around the pointer, dragging the
  // background pans, keys + - 0 zoom and fit.
  installZoom() {
    const svg = this.svg;
    svg.addEventListener('wheel', ev => {
      ev.preventDefault();
      const r = svg.getBoundingClientRect();
      this.zoomAt(ev.clientX - r.left, ev.clientY - r.top, Math.exp(-ev.deltaY * 0.0015));
    }, {passive: false});
    let drag = null;
    svg.addEventListener('pointerdown', ev => {
      if (ev.target.closest('.node')) return;
      drag = {x: ev.clientX, y: ev.clientY, tx: this.tx, ty: this.ty};
      svg.setPointerCapture(ev.pointerId);
      svg.classList.add('dragging');
    });
    svg.addEventListener('pointermove', ev => {
      if (!drag) return;
      this.tx = drag.tx + ev.clientX - drag.x;
      this.ty = drag.ty + ev.clientY - drag.y;
      this.applyTransform();
    });
    const end = () => { drag = null; svg.classList.remove('dragging'); };
    svg.addEventListener('pointerup', end);
    svg.addEventListener('pointercancel', end);
    svg.addEventListener('click', ev => { if (!ev.target.closest('.node')) this.select(null); });
    svg.addEventListener('keydown', ev => {
      if (ev.target !== svg) return;
      const r = svg.getBoundingClientRect();
      if (ev.key === '+' || ev.key === '=') this.zoomAt(r.width / 2, r.height / 2, 1.25);
      else if (ev.key === '-') this.zoomAt(r.width / 2, r.height / 2, 0.8);
      else if (ev.key === '0') this.fit();
    });
  }

  zoomAt(x, y, f) {
    const k = Math.min(4, Math.max(0.05, this.k * f));
    f = k / this.k;
    this.tx = x - (x - this.tx) * f;
    this.ty = y - (y - this.ty) * f;
    this.k = k;
    this.applyTransform();
  }

  fit() {
    if (!this.lay) return;
    const r = this.svg.getBoundingClientRect();
    const w = r.width || 1000, hgt = r.height || 600;
    this.k = Math.min(1.2, Math.max(0.05, Math.min(w / this.lay.width, hgt / this.lay.height)));
    this.tx = (w - this.lay.width * this.k) / 2;
    this.ty = Math.max(0, (hgt - this.lay.height * this.k) / 2);
    this.applyTransform();
  }

  centerOn(n) {
    const r = this.svg.getBoundingClientRect();
    this.k = Math.max(this.k, 0.8);
    this.tx = r.width / 2 - n.x * this.k;
    this.ty = r.height / 2 - n.y * this.k;
    this.applyTransform();
  }

  applyTransform() {
    this.vp.setAttribute('transform', `translate(${this.tx},${this.ty}) scale(${this.k})`);
    // Far out, sub-labels and link labels would be an unreadable blur.
    this.svg.classList.toggle('lod-low', this.k < 0.45);
  }
}

export {G};
