// The side panel: a clicked object's fields, its rules (chains followed
// through jumps, worded as traces word them) and a router's routes.

import {h, clear} from './dom.js';
import {api} from './api.js';

const REF_KINDS = {bridge_id: 'bridge', router_id: 'router', peer_id: 'port', host_id: 'host'};

export function renderDetails(panel, topo, node, {onReveal, admin}) {
  clear(panel);
  if (!node) {
    panel.append(h('p', {class: 'muted'}, 'Click an object in the picture for its details and rules.'));
    return;
  }
  const kind = node.objKind, o = node.obj;
  const title = kind === 'port' ? topo.portLabel(o) : (o.name || o.id);
  panel.append(h('h2', {class: 'details-title'}, h('span', {class: 'kind'}, kind), ' ', title));
  const actions = h('div', {class: 'actions'});
  if (kind === 'host' && admin) actions.append(h('a', {class: 'button', href: '#/hosts/' + o.id}, 'Datapath'));
  if (kind === 'port' && admin) actions.append(h('a', {class: 'button', href: '#/trace?port=' + o.id}, 'Trace from this port'));
  if (kind === 'bridge' && node.portCount) {
    actions.append(h('button', {type: 'button', onclick: () => onReveal('toggle', o.id)}, node.collapsed ? 'Show its ports' : 'Collapse its ports'));
  }
  if (actions.childNodes.length) panel.append(actions);

  const rows = [];
  if (kind === 'host') rows.push(['alive', o.alive ? 'yes' : 'no — its agent holds no lease']);
  if (kind === 'port') {
    const addrs = topo.addresses(o);
    if (addrs.length) rows.push(['addresses', addrs.join(', ')]);
    const dh = topo.dhcpHostOf(o);
    if (dh && dh.name) rows.push(['DHCP host', dh.name]);
  }
  if (kind === 'bridge') {
    const sn = topo.subnetsOf(o.id).map(x => x.subnet + (x.gateway ? ' gw ' + x.gateway : ''));
    if (sn.length) rows.push(['DHCP subnets', sn.join(', ')]);
  }
  for (const [k, v] of Object.entries(o)) {
    if (v === '' || v === null || v === undefined || (Array.isArray(v) && !v.length)) continue;
    rows.push([k, v]);
  }
  const table = h('table', {class: 'fields'});
  for (const [k, v] of rows) table.append(h('tr', null, h('th', null, k), h('td', null, valueCell(topo, k, v, onReveal))));
  panel.append(table);

  const more = h('div', {class: 'more'}, h('p', {class: 'muted'}, 'Loading rules…'));
  panel.append(more);
  api('GET', `/ui/api/objects/${encodeURIComponent(kind)}/${encodeURIComponent(o.id)}`).then(d => {
    clear(more);
    if (d.routes && d.routes.length) {
      more.append(h('h3', null, 'Routes'), h('ul', {class: 'rules'}, d.routes.map(r => h('li', null, h('code', null, routeText(topo, r))))));
    }
    if (!d.chains.length) {
      more.append(h('p', {class: 'muted'}, kind === 'host' ? '' : 'No chains: everything passes.'));
    }
    for (const c of d.chains) {
      more.append(h('h3', null, c.role, ': ', h('span', {class: 'chain-name'}, c.name || c.id)),
        c.rules.length ? h('ol', {class: 'rules'}, c.rules.map(r => h('li', {class: 'rule rule-' + r.type}, h('code', null, r.text))))
          : h('p', {class: 'muted'}, 'empty: the packet goes on'));
    }
  }).catch(e => {
    clear(more);
    more.append(h('p', {class: 'error', role: 'alert'}, e.message));
  });
}

function valueCell(topo, k, v, onReveal) {
  const kind = REF_KINDS[k];
  if (kind && typeof v === 'string') {
    const target = topo.object(kind, v);
    if (target) return h('button', {type: 'button', class: 'link', onclick: () => onReveal(kind, v)}, `${kind} ${topo.name(kind, target)}`);
  }
  if (typeof v === 'object') return h('code', null, JSON.stringify(v));
  return h('span', null, String(v));
}

// routeText words a route as `router X list route` does, with the port
// named by its address.
function routeText(topo, r) {
  const p = r.port_id && topo.ports.get(r.port_id);
  let t = `${r.dst} from ${r.src}`;
  if (r.gateway) t += ` via ${r.gateway}`;
  if (r.port_id) t += ` port ${p ? topo.addresses(p)[0] || topo.portLabel(p) : r.port_id}`;
  return t + ` weight ${r.weight} ${r.type}${r.learned ? ' (learned)' : ''}`;
}
