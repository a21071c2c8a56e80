// Hosts: the list, and one host's datapath — graphs of the last minutes
// (sampled by the server from what the agent publishes every 2 s), its
// ports, drops by reason, flow-state table, NAT translations and flows.

import {h, clear, fmtNumber} from './dom.js';
import {api} from './api.js';
import {chart, autoWindow, WINDOWS} from './chart.js';

export function hostsPage(main, app) {
  const {topo} = app;
  const body = h('tbody');
  const table = h('table', {class: 'grid-table', id: 'hosts-table'},
    h('thead', null, h('tr', null, h('th', null, 'Host'), h('th', null, 'State'), h('th', null, 'Addresses'), h('th', null, 'Bound ports'))), body);
  main.append(h('section', {class: 'page'}, h('h1', null, 'Hosts'), table));
  const draw = () => {
    clear(body);
    const bound = new Map();
    for (const p of topo.ports.values()) if (p.host_id) bound.set(p.host_id, (bound.get(p.host_id) || 0) + 1);
    for (const hst of [...topo.hosts.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      body.append(h('tr', {class: hst.alive ? 'alive' : 'dead'},
        h('td', null, h('a', {href: '#/hosts/' + hst.id}, hst.name)),
        h('td', null, h('span', {class: 'pill ' + (hst.alive ? 'ok' : 'bad')}, hst.alive ? 'alive' : 'down')),
        h('td', null, (hst.addresses || []).join(', ')),
        h('td', null, String(bound.get(hst.id) || 0))));
    }
  };
  const off = topo.onChange(draw);
  draw();
  return off;
}

export function hostPage(main, app, id) {
  const page = h('section', {class: 'page host-page'}, h('p', {class: 'muted'}, 'Loading…'));
  main.append(page);
  let stopped = false, timer = null, last = null;
  // The graphs' time range: the shortest that shows every sample, unless
  // the operator picks one (as in Grafana's range picker).
  const range = {minutes: 0};
  const redraw = () => { if (last) draw(page, app, last, range, redraw); };
  async function tick() {
    try {
      last = await api('GET', `/ui/api/hosts/${encodeURIComponent(id)}/datapath`);
      if (!stopped) redraw();
    } catch (e) {
      if (!stopped) clear(page).append(h('h1', null, 'Host'), h('p', {class: 'error', role: 'alert'}, e.message));
    }
    if (!stopped) timer = setTimeout(tick, 2000);
  }
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function draw(page, app, d, range, redraw) {
  const {topo} = app;
  const host = topo.hosts.get(d.host.id) || d.host;
  const st = d.status;
  const S = name => ({name, points: d.series[name] || []});
  const last = name => { const p = d.series[name] || []; return p.length ? p[p.length - 1][1] : null; };
  const dropSeries = Object.keys(d.series).filter(k => k.startsWith('drops_per_s: ')).sort()
    .map(k => ({name: k.slice('drops_per_s: '.length), points: d.series[k]}));
  const dropRate = dropSeries.reduce((a, sr) => a + (sr.points.length ? sr.points[sr.points.length - 1][1] : 0), 0);
  const hits = last('hits_per_s'), misses = last('misses_per_s');
  const groups = {
    packets: [S('hits_per_s'), S('misses_per_s'), S('lost_per_s')].map(rename({hits_per_s: 'hits', misses_per_s: 'misses', lost_per_s: 'lost by the kernel'})),
    flows: [S('flows'), S('flows_installed_per_s'), S('flows_invalidated_per_s')].map(rename({flows: 'installed now', flows_installed_per_s: 'installs/s', flows_invalidated_per_s: 'invalidations/s'})),
    state: [S('flow_state_entries'), S('nat_ports_in_use'), S('flow_state_refused_per_s')].map(rename({flow_state_entries: 'entries', nat_ports_in_use: 'NAT ports in use', flow_state_refused_per_s: 'refused/s'})),
    tunnels: [S('tunnel_rx_per_s'), S('tunnel_tx_per_s')].map(rename({tunnel_rx_per_s: 'received', tunnel_tx_per_s: 'sent'})),
  };
  const now = Date.now();
  const minutes = range.minutes || autoWindow([...Object.values(groups), dropSeries], now);
  const opt = {minutes, now};
  const picker = h('div', {class: 'range', role: 'group', 'aria-label': 'time range'}, h('span', {class: 'muted'}, 'last'),
    [0, ...WINDOWS].map(m => h('button', {type: 'button', class: m === range.minutes ? 'active' : '', onclick: () => { range.minutes = m; redraw(); }},
      m ? `${m} min` : `auto (${minutes} min)`)));
  clear(page).append(
    h('h1', null, 'Host ', h('span', {class: 'host-name'}, host.name), ' ',
      h('span', {class: 'pill ' + (host.alive ? 'ok' : 'bad'), id: 'host-state'}, host.alive ? 'alive' : 'down')),
    h('p', {class: 'muted'}, st ? `datapath ${st.datapath || '?'} · status published ${ago(st.updated)}` :
      'No agent publishes a status for this host: it is down, or its agent has not started.'),
    h('div', {class: 'kpis'},
      kpi('flows', st ? st.flows : null),
      kpi('hit ratio', hits !== null && misses !== null && hits + misses > 0 ? Math.round((100 * hits) / (hits + misses)) + '%' : '–'),
      kpi('misses/s', misses), kpi('drops/s', dropSeries.length ? dropRate : 0),
      kpi('flow-state entries', st && st.flow_state ? st.flow_state.entries : null),
      kpi('NAT ports in use', st && st.flow_state ? st.flow_state.nat_ports_in_use : null)),
    picker,
    h('div', {class: 'charts'},
      chart('Packets per second', groups.packets, opt),
      chart('Flows', groups.flows, opt),
      chart('Drops per second, by reason', dropSeries, opt),
      chart('Flow state', groups.state, opt),
      chart('Tunnel packets per second', groups.tunnels, opt)),
    st ? tables(topo, st, d) : null);
}

function rename(names) { return sr => ({...sr, name: names[sr.name] || sr.name}); }

function kpi(label, v) {
  return h('div', {class: 'kpi'}, h('div', {class: 'kpi-value'}, typeof v === 'string' ? v : fmtNumber(v)), h('div', {class: 'kpi-label'}, label));
}

function ago(t) {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(t)) / 1000));
  return s < 2 ? 'just now' : `${s} s ago`;
}

function tables(topo, st, d) {
  const portName = id => { const p = topo.ports.get(id); return p ? topo.portLabel(p) : id; };
  const drops = [];
  for (const [prefix, m] of [['datapath', st.drops], ['simulation', st.simulation_drops], ['agent', st.agent_drops]]) {
    for (const [r, n] of Object.entries(m || {})) drops.push([prefix, r, n]);
  }
  drops.sort((a, b) => b[2] - a[2]);
  const fs = st.flow_state;
  return h('div', {class: 'tables'},
    h('section', null, h('h2', null, 'Ports'), table(['port', 'interface', 'rx', 'tx', 'rx drops', 'tx drops'],
      (st.ports || []).map(p => [portName(p.port_id), p.interface, p.rx_packets, p.tx_packets, p.rx_dropped, p.tx_dropped]))),
    h('section', null, h('h2', null, 'Drops by reason (since the agent started)'),
      drops.length ? table(['where', 'reason', 'packets'], drops) : h('p', {class: 'muted'}, 'No drops.')),
    fs ? h('section', null, h('h2', null, 'Flow-state table'), table(['entries', 'max', 'zones', 'per-zone max', 'refused (full)', 'refused (zone full)', 'NAT ports', 'NAT blocks', 'state packets sent / received'],
      [[fs.entries, fs.max_entries, fs.zones, fs.max_per_zone, fs.refused_full, fs.refused_zone_full, fs.nat_ports_in_use, fs.nat_blocks_leased, `${fs.state_packets_sent} / ${fs.state_packets_received}`]])) : null,
    h('section', null, h('h2', null, 'NAT translations'),
      d.nat_translations.length ? table(['router', 'type', 'protocol', 'inside global', 'inside local', 'outside local', 'outside global', 'state', 'expires in'],
        d.nat_translations.map(t => [t.router_id ? (topo.routers.get(t.router_id) || {}).name || t.router_id : t.zone, t.type, t.protocol,
          t.inside_global, t.inside_local, t.outside_local, t.outside_global, t.state, t.ttl_seconds < 0 ? '–' : t.ttl_seconds + ' s'])) : h('p', {class: 'muted'}, 'No NAT bindings on this host.'),
      d.nat_truncated ? h('p', {class: 'muted'}, `${d.nat_truncated} more not published.`) : null),
    h('section', null, h('h2', null, `Flows (${st.flows}${(st.flow_dump || []).length < st.flows ? ', first ' + (st.flow_dump || []).length + ' shown' : ''})`),
      h('pre', {class: 'flows'}, (st.flow_dump || []).join('\n') || 'none')));
}

function table(head, rows) {
  return h('table', {class: 'grid-table'}, h('thead', null, h('tr', null, head.map(x => h('th', null, x)))),
    h('tbody', null, rows.map(r => h('tr', null, r.map(c => h('td', null, typeof c === 'number' ? fmtNumber(c) : String(c ?? '')))))));
}
