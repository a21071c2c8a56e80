// The automatic layout of the topology picture: four rows, top to bottom —
// routers; the networks (bridges) and routers' uplinks they connect to;
// each network's exterior ports in a block under it (or one "N ports"
// node while the network is collapsed); the hosts the ports are bound to.
// Order within rows follows the links (a router's networks sit under it)
// and the bindings (hosts sit under their ports; ports in a block are in
// host order), so lines mostly run straight down. Pure: the same topology
// and options always give the same picture.

export const G = {
  devW: 190, devH: 46, portW: 132, portH: 36, hostW: 190, hostH: 46,
  colGap: 28, portGapX: 10, portGapY: 12, rowGap: 96, margin: 40,
  maxCols: 5,
  // collapseAt: a network with more exterior ports starts collapsed.
  collapseAt: 8,
};

const byName = (a, b) => (a.name || '').localeCompare(b.name || '') || a.id.localeCompare(b.id);

export function fit(text, max) {
  text = String(text ?? '');
  return text.length <= max ? text : text.slice(0, max - 1) + '…';
}

// isCollapsed says whether a network's ports are drawn as one node.
export function isCollapsed(topo, bridgeID, toggled) {
  if (toggled && toggled.has(bridgeID)) return toggled.get(bridgeID) === 'collapsed';
  return exteriorPorts(topo, bridgeID).length > G.collapseAt;
}

// exteriorPorts are the ports of a device drawn as nodes: bound, or not
// linked to a port the viewer can see.
export function exteriorPorts(topo, deviceID) {
  return topo.portsOf(deviceID).filter(p => !(p.peer_id && topo.ports.has(p.peer_id)));
}

export function layout(topo, opts = {}) {
  const toggled = opts.toggled || new Map();
  const nodes = new Map();
  const edges = [];
  const routers = [...topo.routers.values()].sort(byName);
  const bridges = [...topo.bridges.values()].sort(byName);
  const hosts = [...topo.hosts.values()].sort(byName);

  // Links between devices, through pairs of peered ports (each pair once).
  const links = [];
  const seenLink = new Set();
  for (const p of topo.ports.values()) {
    const q = p.peer_id && topo.ports.get(p.peer_id);
    if (!q || seenLink.has(q.id)) continue;
    seenLink.add(p.id);
    const [a, b] = p.router_id || !q.router_id ? [p, q] : [q, p]; // router side first
    links.push({a, b});
  }
  const linked = new Map(); // router id → bridges linked, in name order
  for (const r of routers) linked.set(r.id, []);
  for (const {a, b} of links) {
    if (a.router_id && b.bridge_id && topo.bridges.has(b.bridge_id) && linked.has(a.router_id)) {
      const l = linked.get(a.router_id);
      const br = topo.bridges.get(b.bridge_id);
      if (!l.includes(br)) l.push(br);
    }
  }
  for (const l of linked.values()) l.sort(byName);

  // Row 1: each router's networks, then its uplinks; networks no router
  // reaches at the end.
  const row1 = [];
  const placed = new Set();
  for (const r of routers) {
    for (const br of linked.get(r.id)) {
      if (!placed.has(br.id)) { placed.add(br.id); row1.push({kind: 'bridge', obj: br}); }
    }
    for (const p of exteriorPorts(topo, r.id).sort((x, y) => topo.portLabel(x).localeCompare(topo.portLabel(y)))) {
      row1.push({kind: 'uplink', obj: p, router: r});
    }
  }
  for (const br of bridges) if (!placed.has(br.id)) row1.push({kind: 'bridge', obj: br});

  // A first host order, from the row-1 items their ports hang from.
  const hostRank = new Map();
  {
    const sum = new Map();
    row1.forEach((it, i) => {
      const ps = it.kind === 'bridge' ? exteriorPorts(topo, it.obj.id) : [it.obj];
      for (const p of ps) {
        if (!p.host_id) continue;
        const v = sum.get(p.host_id) || [0, 0];
        sum.set(p.host_id, [v[0] + i, v[1] + 1]);
      }
    });
    const bary = hst => (sum.has(hst.id) ? sum.get(hst.id)[0] / sum.get(hst.id)[1] : Infinity);
    [...hosts].sort((a, b) => bary(a) - bary(b) || byName(a, b)).forEach((hst, i) => hostRank.set(hst.id, i));
  }
  const portOrder = (a, b) => (hostRank.get(a.host_id) ?? 1e9) - (hostRank.get(b.host_id) ?? 1e9) ||
    topo.portLabel(a).localeCompare(topo.portLabel(b)) || a.id.localeCompare(b.id);

  // Blocks and x positions. Row 1 wraps into bands no wider than the
  // target width (the view's, at a readable zoom), each band with its
  // networks' port blocks under it.
  const target = Math.max(opts.targetWidth || 1600, G.devW * 2);
  const bands = [[]];
  let cursor = G.margin;
  for (const it of row1) {
    it.w = G.devW;
    if (it.kind === 'bridge') {
      const ps = exteriorPorts(topo, it.obj.id).sort(portOrder);
      it.ports = ps;
      it.collapsed = ps.length > 0 && isCollapsed(topo, it.obj.id, toggled);
      const n = it.collapsed ? 1 : ps.length;
      it.cols = Math.min(n, G.maxCols);
      it.rows = n ? Math.ceil(n / it.cols) : 0;
    } else {
      it.cols = 0; it.rows = 0;
    }
    const blockW = it.cols ? it.cols * G.portW + (it.cols - 1) * G.portGapX : 0;
    const slot = Math.max(it.w, blockW);
    if (cursor > G.margin && cursor + slot > G.margin + target) {
      bands.push([]);
      cursor = G.margin;
    }
    bands[bands.length - 1].push(it);
    it.x = cursor + slot / 2;
    cursor += slot + G.colGap;
  }
  const hasRouters = routers.length > 0;
  const y0 = G.margin + G.devH / 2;
  let bandY = hasRouters ? y0 + G.devH + G.rowGap * 0.8 : y0;
  let bottom = bandY + G.devH / 2;
  for (const band of bands) {
    const rows = Math.max(0, ...band.map(it => it.rows));
    const blockTop = bandY + G.devH / 2 + G.rowGap * 0.55;
    for (const it of band) { it.y = bandY; it.blockTop = blockTop; }
    bottom = rows ? blockTop + rows * G.portH + (rows - 1) * G.portGapY : bandY + G.devH / 2;
    bandY = bottom + G.rowGap * 0.7 + G.devH / 2;
  }
  const y3 = bottom + G.rowGap + G.hostH / 2;

  const add = n => { nodes.set(n.key, n); return n; };

  for (const it of row1) {
    if (it.kind === 'bridge') {
      const br = it.obj;
      const subnets = topo.subnetsOf(br.id).map(s => s.subnet);
      const n = add({key: 'bridge/' + br.id, kind: 'bridge', objKind: 'bridge', obj: br, x: it.x, y: it.y, w: G.devW, h: G.devH,
        label: br.name || br.id.slice(0, 8), sub: [subnets.join(' '), `${it.ports.length} port${it.ports.length === 1 ? '' : 's'}`].filter(Boolean).join(' · '),
        down: br.state === 'down', collapsed: it.collapsed, portCount: it.ports.length});
      const left = it.x - (it.cols * G.portW + (it.cols - 1) * G.portGapX) / 2 + G.portW / 2;
      if (it.collapsed) {
        const byHost = new Map();
        for (const p of it.ports) if (p.host_id) byHost.set(p.host_id, (byHost.get(p.host_id) || 0) + 1);
        const agg = add({key: 'agg/' + br.id, kind: 'agg', objKind: 'bridge', obj: br, x: left, y: it.blockTop + G.portH / 2, w: G.portW, h: G.portH,
          label: `${it.ports.length} ports`, sub: 'click to expand', ports: it.ports, byHost});
        edges.push({from: n.key, to: agg.key, kind: 'member'});
        // Drawn only while the network or the host is in focus: at scale,
        // every network binding to every host is a hairball.
        for (const [hid, count] of byHost) edges.push({from: agg.key, to: 'host/' + hid, kind: 'binding', count, agg: true});
      } else {
        it.ports.forEach((p, i) => {
          const col = i % it.cols, row = Math.floor(i / it.cols);
          const pn = add(portNode(topo, p, left + col * (G.portW + G.portGapX), it.blockTop + G.portH / 2 + row * (G.portH + G.portGapY)));
          edges.push({from: n.key, to: pn.key, kind: 'member'});
          if (p.host_id) edges.push({from: pn.key, to: 'host/' + p.host_id, kind: 'binding', agg: it.ports.length > G.collapseAt});
        });
      }
    } else {
      const pn = add({...portNode(topo, it.obj, it.x, it.y), kind: 'uplink', w: G.devW, h: G.devH});
      if (it.obj.host_id) edges.push({from: pn.key, to: 'host/' + it.obj.host_id, kind: 'binding'});
    }
  }

  // Routers above their networks; pushed apart where they would overlap.
  const rnodes = [];
  for (const r of routers) {
    const kids = row1.filter(it => (it.kind === 'bridge' && linked.get(r.id).includes(it.obj)) || (it.kind === 'uplink' && it.router === r));
    const x = kids.length ? kids.reduce((a, it) => a + it.x, 0) / kids.length : cursor + G.devW / 2;
    rnodes.push(add({key: 'router/' + r.id, kind: 'router', objKind: 'router', obj: r, x, y: y0, w: G.devW, h: G.devH,
      label: r.name || r.id.slice(0, 8), sub: 'router' + (r.state === 'down' ? ' · down' : ''), down: r.state === 'down'}));
  }
  spread(rnodes, G.devW + G.colGap);
  for (const it of row1) if (it.kind === 'uplink') edges.push({from: 'router/' + it.router.id, to: 'port/' + it.obj.id, kind: 'link', label: linkLabel(topo, it.obj)});

  // Device links: one edge per pair of devices, labelled with every
  // address on it (a router port per address family is common).
  const pairs = new Map();
  for (const {a, b} of links) {
    const from = deviceKey(a), to = deviceKey(b);
    if (!nodes.has(from) || !nodes.has(to)) continue;
    const k = from + ' ' + to;
    if (!pairs.has(k)) {
      const same = nodes.get(from).y === nodes.get(to).y;
      pairs.set(k, {from, to, kind: same ? 'arc' : 'link', labels: [], ports: []});
      edges.push(pairs.get(k));
    }
    const e = pairs.get(k);
    const l = linkLabel(topo, a) || linkLabel(topo, b);
    if (l) e.labels.push(l);
    e.ports.push(a.id, b.id);
  }
  for (const e of pairs.values()) e.label = e.labels.sort().join('\n');

  // Hosts under the ports bound to them.
  const hx = new Map();
  for (const e of edges) {
    if (e.kind !== 'binding') continue;
    const n = nodes.get(e.from);
    const v = hx.get(e.to.slice(5)) || [0, 0];
    const wgt = e.count || 1;
    hx.set(e.to.slice(5), [v[0] + n.x * wgt, v[1] + wgt]);
  }
  let tail = Math.max(cursor, ...rnodes.map(n => n.x + G.devW)) ;
  const bound = new Map();
  for (const p of topo.ports.values()) if (p.host_id) bound.set(p.host_id, (bound.get(p.host_id) || 0) + 1);
  const hnodes = hosts.map(hst => {
    const v = hx.get(hst.id);
    const x = v ? v[0] / v[1] : (tail += G.hostW + G.colGap);
    const n = bound.get(hst.id) || 0;
    return add({key: 'host/' + hst.id, kind: 'host', objKind: 'host', obj: hst, x, y: y3, w: G.hostW, h: G.hostH,
      label: hst.name || hst.id.slice(0, 8), sub: [hst.alive ? 'alive' : 'down', n ? `${n} port${n === 1 ? '' : 's'}` : '', (hst.addresses || [])[0]].filter(Boolean).join(' · '),
      dead: !hst.alive});
  });
  hnodes.sort((a, b) => a.x - b.x || a.label.localeCompare(b.label));
  // Hosts wrap like networks: rows no wider than the target.
  const perRow = Math.max(1, Math.floor(target / (G.hostW + G.colGap)));
  for (let i = 0; i < hnodes.length; i += perRow) {
    const row = hnodes.slice(i, i + perRow);
    for (const n of row) n.y = y3 + (i / perRow) * (G.hostH + G.portGapY * 2);
    spread(row, G.hostW + G.colGap);
  }

  // Drop edges whose ends are not drawn (a host the viewer cannot see).
  const shown = edges.filter(e => nodes.has(e.from) && nodes.has(e.to));
  for (const e of shown) if (e.kind === 'binding') e.dead = !!nodes.get(e.to).dead;
  let maxX = 0, maxY = 0;
  for (const n of nodes.values()) { maxX = Math.max(maxX, n.x + n.w / 2); maxY = Math.max(maxY, n.y + n.h / 2); }
  return {nodes, edges: shown, width: maxX + G.margin, height: maxY + G.margin};
}

function deviceKey(p) { return p.router_id ? 'router/' + p.router_id : 'bridge/' + p.bridge_id; }

function linkLabel(topo, p) {
  return p.address ? topo.addresses(p)[0] : '';
}

function portNode(topo, p, x, y) {
  const addrs = topo.addresses(p);
  const label = topo.portLabel(p);
  const sub = [addrs.find(a => a !== label), p.physical_network ? 'uplink' : '', p.peer_id ? 'link' : '', p.vlan ? 'vlan ' + p.vlan : '']
    .filter(Boolean).join(' · ') || (p.mac || '');
  return {key: 'port/' + p.id, kind: p.physical_network ? 'uplink' : 'port', objKind: 'port', obj: p, x, y, w: G.portW, h: G.portH,
    label, sub, down: p.state === 'down', hostID: p.host_id};
}

// spread keeps nodes of one row at least gap apart, moving each as little
// as it can: a left-to-right push, then the whole row shifted back by the
// mean displacement so it stays centred on where its nodes wanted to be.
function spread(ns, gap) {
  ns.sort((a, b) => a.x - b.x);
  const want = ns.map(n => n.x);
  for (let i = 1; i < ns.length; i++) ns[i].x = Math.max(ns[i].x, ns[i - 1].x + gap);
  if (!ns.length) return;
  const shift = ns.reduce((a, n, i) => a + n.x - want[i], 0) / ns.length;
  const minX = G.margin + ns[0].w / 2;
  const d = Math.min(shift, ns[0].x - minX);
  for (const n of ns) n.x -= d;
}
