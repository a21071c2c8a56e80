// The topology page: the picture, a search box, and the details panel.

import {h} from './dom.js';
import {TopologyView} from './view.js';
import {renderDetails} from './details.js';

export function topologyPage(main, app) {
  const {topo} = app;
  const search = h('input', {type: 'search', id: 'search', placeholder: 'Search names, addresses, MACs, ids…', 'aria-label': 'search the topology'});
  const count = h('span', {class: 'muted', id: 'search-count', 'aria-live': 'polite'});
  const canvas = h('div', {class: 'canvas'});
  const panel = h('aside', {class: 'panel', id: 'details', 'aria-label': 'details'});
  const empty = h('p', {class: 'empty muted'}, 'Waiting for the topology…');
  const view = new TopologyView(canvas, topo, {
    onSelect: n => renderDetails(panel, topo, n, {onReveal: reveal, admin: topo.admin}),
  });
  function reveal(kind, id) {
    if (kind === 'toggle') { view.toggle(id); view.select('bridge/' + id); return; }
    view.reveal(kind, id);
  }
  const toolbar = h('div', {class: 'toolbar'},
    search, count,
    h('button', {type: 'button', onclick: () => view.fit(), title: 'fit the picture to the window (key 0)'}, 'Fit'),
    h('button', {type: 'button', onclick: () => view.setAll('expanded')}, 'Expand all'),
    h('button', {type: 'button', onclick: () => view.setAll('collapsed')}, 'Collapse all'),
    h('span', {class: 'legend'},
      h('span', {class: 'key key-router'}, 'router'), h('span', {class: 'key key-bridge'}, 'network'),
      h('span', {class: 'key key-port'}, 'port'), h('span', {class: 'key key-alive'}, 'host alive'),
      h('span', {class: 'key key-dead'}, 'host down')));
  main.append(h('section', {class: 'topology-page'}, toolbar, h('div', {class: 'split'}, h('div', {class: 'canvas-wrap'}, canvas, empty), panel)));
  renderDetails(panel, topo, null, {});

  let matches = [], at = -1;
  function runSearch() {
    const q = search.value.trim().toLowerCase();
    if (!q) { view.setMatches(null); count.textContent = ''; matches = []; return; }
    const keys = new Set();
    matches = [];
    for (const [kind, m] of [['router', topo.routers], ['bridge', topo.bridges], ['port', topo.ports], ['host', topo.hosts]]) {
      for (const o of m.values()) {
        if (!topo.searchText(kind, o).includes(q)) continue;
        matches.push([kind, o.id]);
        const k = view.nodeKeyOf(kind, o.id);
        if (k) keys.add(k);
      }
    }
    view.setMatches(keys);
    count.textContent = `${matches.length} match${matches.length === 1 ? '' : 'es'}`;
    at = -1;
  }
  search.addEventListener('input', runSearch);
  search.addEventListener('keydown', ev => {
    if (ev.key !== 'Enter' || !matches.length) return;
    at = (at + 1) % matches.length;
    const [kind, id] = matches[at];
    view.reveal(kind, id);
    const keys = new Set(matches.map(([k, i]) => view.nodeKeyOf(k, i)).filter(Boolean));
    view.setMatches(keys);
    count.textContent = `${at + 1} of ${matches.length}`;
  });

  const redraw = () => {
    empty.hidden = topo.loaded && (topo.bridges.size + topo.routers.size + topo.hosts.size > 0);
    if (topo.loaded && empty.hidden === false) empty.textContent = 'Nothing to show yet: no networks, routers or hosts you may see.';
    view.render();
    if (view.selected && !view.lay.nodes.has(view.selected)) view.select(null);
    else if (view.selected) renderDetailsQuiet();
    if (search.value) {
      const keys = new Set(matches.map(([k, i]) => view.nodeKeyOf(k, i)).filter(Boolean));
      view.setMatches(keys);
    }
  };
  // Live changes redraw the picture; the open details panel is refreshed
  // only when its object changed, so reading it is not interrupted.
  let shownRev = null;
  function renderDetailsQuiet() {
    const n = view.lay.nodes.get(view.selected);
    const rev = n && JSON.stringify(n.obj);
    if (rev !== shownRev) { shownRev = rev; renderDetails(panel, topo, n, {onReveal: reveal, admin: topo.admin}); }
  }
  const off = topo.onChange(redraw);
  redraw();
  return () => off();
}
