// Trace in the browser: the CLI's `trace` form. The server simulates the
// packet (POST /api/v1/trace, what `nagare trace` calls; nothing is sent)
// and the page lists its steps in the CLI's words and draws its path on
// the picture, hop by hop.

import {h, clear, field, select} from './dom.js';
import {api} from './api.js';
import {TopologyView} from './view.js';
import {exteriorPorts} from './layout.js';

const UUID = /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

export function tracePage(main, app, params) {
  const {topo} = app;
  const portSel = h('select', {name: 'in_port_id', id: 'trace-port', required: true});
  const src = h('input', {name: 'src', id: 'trace-src', placeholder: '10.0.1.11', required: true, autocomplete: 'off'});
  const dst = h('input', {name: 'dst', id: 'trace-dst', placeholder: '10.0.2.12', required: true, autocomplete: 'off'});
  const proto = select('proto', [['icmp', 'icmp'], ['tcp', 'tcp'], ['udp', 'udp']], {id: 'trace-proto'});
  const sport = h('input', {name: 'src_port', id: 'trace-sport', type: 'number', min: 0, max: 65535, placeholder: '40000'});
  const dport = h('input', {name: 'dst_port', id: 'trace-dport', type: 'number', min: 0, max: 65535, placeholder: '22'});
  const out = h('div', {class: 'trace-result', id: 'trace-result', 'aria-live': 'polite'});
  const form = h('form', {class: 'trace-form', id: 'trace-form'},
    h('h1', null, 'Trace a packet'),
    h('p', {class: 'muted'}, 'What the simulation does with a packet entering by a port, step by step, as `nagare trace` prints it. Nothing is sent.'),
    field('Enters by port', portSel), h('div', {class: 'row'}, field('Source address', src), field('Destination address', dst)),
    h('div', {class: 'row'}, field('Protocol', proto), field('Source port', sport), field('Destination port', dport)),
    h('button', {type: 'submit', id: 'trace-submit'}, 'Trace'));
  const canvas = h('div', {class: 'canvas'});
  main.append(h('section', {class: 'trace-page'}, h('div', {class: 'trace-side'}, form, out), h('div', {class: 'canvas-wrap'}, canvas)));
  const view = new TopologyView(canvas, topo, {
    onSelect: n => { if (n && n.objKind === 'port') { portSel.value = n.obj.id; defaultSrc(); } },
  });

  function fillPorts() {
    const keep = portSel.value || params.get('port') || '';
    clear(portSel);
    portSel.append(h('option', {value: ''}, '— choose a port —'));
    const devs = [...topo.bridges.values(), ...topo.routers.values()].sort((a, b) => (a.name || '').localeCompare(b.name || ''));
    for (const d of devs) {
      const ps = exteriorPorts(topo, d.id);
      if (!ps.length) continue;
      portSel.append(h('optgroup', {label: d.name || d.id}, ps.map(p => {
        const a = topo.addresses(p)[0];
        return h('option', {value: p.id}, topo.portLabel(p) + (a ? ' (' + a + ')' : ''));
      })));
    }
    portSel.value = keep;
  }
  function defaultSrc() {
    const p = topo.ports.get(portSel.value);
    const a = p && topo.addresses(p)[0];
    if (a && !src.value) src.value = a.split('/')[0];
  }
  portSel.addEventListener('change', defaultSrc);

  let result = null;
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const body = {in_port_id: portSel.value, src: src.value.trim(), dst: dst.value.trim(), proto: proto.value};
    if (sport.value) body.src_port = Number(sport.value);
    if (dport.value) body.dst_port = Number(dport.value);
    clear(out).append(h('p', {class: 'muted'}, 'Tracing…'));
    try {
      result = await api('POST', '/api/v1/trace', body);
      showResult();
    } catch (e) {
      result = null;
      view.setPath(null);
      clear(out).append(h('p', {class: 'error', role: 'alert'}, e.message));
    }
  });

  function showResult() {
    const steps = result.steps || [];
    // Expand the networks the packet crosses, so its ports are drawn.
    for (const st of steps) {
      const m = UUID.exec(st.object);
      const p = m && topo.ports.get(m[1]);
      if (p && p.bridge_id) view.toggled.set(p.bridge_id, 'expanded');
    }
    view.render();
    const hops = hopsOf(topo, view, steps);
    view.setPath(hops);
    const list = h('ol', {class: 'steps', id: 'trace-steps'});
    const items = steps.map((st, i) => {
      const li = h('li', {class: 'step step-' + st.kind, style: `margin-left:${st.depth * 1.2}em`, tabindex: '0'},
        h('span', {class: 'step-kind'}, st.kind), ' ', h('span', {class: 'step-object'}, nameOf(topo, st.object)), ': ', st.message);
      li.addEventListener('click', () => goTo(i));
      li.addEventListener('keydown', e => { if (e.key === 'Enter') goTo(i); });
      return li;
    });
    list.append(...items);
    let at = steps.length - 1;
    function goTo(i) {
      at = Math.max(0, Math.min(steps.length - 1, i));
      view.showPathUpTo(at);
      items.forEach((li, j) => li.classList.toggle('current', j === at));
    }
    let playing = null;
    const controls = h('div', {class: 'step-controls'},
      h('button', {type: 'button', id: 'trace-prev', onclick: () => goTo(at - 1)}, '◀ step'),
      h('button', {type: 'button', id: 'trace-next', onclick: () => goTo(at + 1)}, 'step ▶'),
      h('button', {type: 'button', id: 'trace-play', onclick: () => {
        if (playing) { clearInterval(playing); playing = null; return; }
        goTo(0);
        playing = setInterval(() => { if (at >= steps.length - 1) { clearInterval(playing); playing = null; } else goTo(at + 1); }, 700);
      }}, 'play'),
      h('button', {type: 'button', onclick: () => { goTo(steps.length - 1); }}, 'whole path'));
    const verdict = result.verdict + (result.reason ? ` (${result.reason})` : '');
    clear(out).append(
      h('p', {class: 'verdict verdict-' + result.verdict, id: 'trace-verdict'}, 'verdict ', h('b', null, verdict)),
      h('p', {class: 'packet'}, h('code', null, 'packet ' + result.packet)),
      controls, list,
      result.actions && result.actions.length ? h('div', null, h('h3', null, 'Flow actions'), h('ul', {class: 'actions-list'}, result.actions.map(a => h('li', null, h('code', null, a))))) : null,
      result.generated && result.generated.length ? h('div', null, h('h3', null, 'Generated packets'), h('ul', null, result.generated.map(g => h('li', null, h('code', null, g))))) : null);
    goTo(steps.length - 1);
  }

  const redraw = () => {
    fillPorts();
    view.render();
    if (result) view.setPath(hopsOf(topo, view, result.steps || []));
  };
  const off = topo.onChange(redraw);
  redraw();
  if (params.get('port')) defaultSrc();
  return () => off();
}

// nameOf shows a step's object with the port's name where it ends in a
// port id ("net1:<uuid>" → "net1:tap-vm11").
function nameOf(topo, object) {
  const m = UUID.exec(object);
  const p = m && topo.ports.get(m[1]);
  return p ? object.slice(0, m.index) + topo.portLabel(p) : object;
}

// hopsOf turns steps into the nodes the packet visits, in order: a port
// step names a port ("device:port-id"), drawn by its own node, its
// network's collapsed node or its device (interior ports); a bridge or
// router step names the device; an output to a bound port goes on to its
// host. Other steps (chains, NAT, conntrack) happen where the packet is.
export function hopsOf(topo, view, steps) {
  const hops = [];
  const lastAt = []; // depth → the last node the packet reached at that depth
  let curDev = null;
  const push = (key, step, depth, branch) => {
    if (!key) return;
    // A flood's branch (one deeper) starts where the flood happened.
    const from = branch ? lastAt[depth - 1] : (lastAt[depth] ?? lastAt[depth - 1]);
    if (from !== key) hops.push({key, step, from});
    lastAt[depth] = key;
    lastAt.length = depth + 1;
  };
  steps.forEach((st, i) => {
    const d = st.depth || 0;
    const m = UUID.exec(st.object);
    const p = m && topo.ports.get(m[1]);
    if (p) {
      curDev = p.router_id || p.bridge_id;
      const branch = d > 0 && st.kind === 'egress';
      if (st.kind === 'ingress' && !view.lay.nodes.has('port/' + p.id)) push(view.nodeKeyOf(p.router_id ? 'router' : 'bridge', curDev), i, d, branch);
      else push(view.nodeKeyOf('port', p.id), i, d, branch);
      if (st.kind === 'output' && p.host_id) push(view.nodeKeyOf('host', p.host_id), i, d, false);
    } else if (st.kind === 'bridge' || st.kind === 'router') {
      const m2 = st.kind === 'bridge' ? topo.bridges : topo.routers;
      const cands = [...m2.values()].filter(x => x.id === st.object || x.name === st.object);
      const pick = cands.find(x => x.id === curDev) || cands[0];
      if (pick) push(view.nodeKeyOf(st.kind, pick.id), i, d, false);
    }
    if (st.kind === 'drop' && hops.length) hops[hops.length - 1].drop = true;
  });
  return hops;
}
