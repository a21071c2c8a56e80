// Editing the common things through the Neutron API (/v2.0), the API
// every OpenStack client uses: the forms send what `openstack` would and
// show the API's own error message when it refuses.

import {h, clear, field, select} from './dom.js';
import {api} from './api.js';

export function editPage(main, app) {
  const page = h('section', {class: 'page edit-page'}, h('h1', null, 'Edit'),
    h('p', {class: 'muted'}, 'These forms use the Neutron API with your token: you may change what your project owns.'));
  main.append(page);
  const lists = {networks: [], subnets: [], routers: [], ports: [], groups: []};
  const sels = [];
  // A select filled from the lists, refreshed after every change.
  const listSelect = (name, id, options, blank) => {
    const el = h('select', {name, id});
    sels.push(() => {
      const keep = el.value;
      clear(el);
      if (blank) el.append(h('option', {value: ''}, blank));
      for (const [v, t] of options()) el.append(h('option', {value: v}, t));
      el.value = keep;
      if (el.selectedIndex < 0 && el.options.length) el.selectedIndex = 0;
    });
    return el;
  };
  const label = o => (o.name ? o.name + ' ' : '') + '(' + o.id.slice(0, 8) + ')';
  const external = () => lists.networks.filter(n => n['router:external']).map(n => [n.id, label(n)]);
  async function reload() {
    const [n, s, r, p, g] = await Promise.all(['networks', 'subnets', 'routers', 'ports', 'security-groups'].map(c => api('GET', '/v2.0/' + c)));
    lists.networks = n.networks; lists.subnets = s.subnets; lists.routers = r.routers; lists.ports = p.ports; lists.groups = g.security_groups;
    for (const f of sels) f();
  }

  // 1. A network with a subnet and, optionally, a router attached to it.
  const netForm = form('form-network', 'Network with a subnet', [
    h('div', {class: 'row'}, field('Name', h('input', {name: 'name', id: 'net-name', required: true})),
      field('Subnet (CIDR)', h('input', {name: 'cidr', id: 'net-cidr', required: true, placeholder: '10.0.5.0/24'}))),
    h('div', {class: 'row'}, field('Gateway', h('input', {name: 'gateway', id: 'net-gateway', placeholder: 'default: the first address'})),
      field('DHCP', h('input', {name: 'dhcp', id: 'net-dhcp', type: 'checkbox', checked: true}))),
    h('div', {class: 'row'}, field('Router (optional)', h('input', {name: 'router', id: 'net-router', placeholder: 'name of a new router to attach'})),
      field('Router gateway', listSelect('external', 'net-external', external, '— no gateway —'))),
  ], async f => {
    const created = [];
    try {
      const net = (await api('POST', '/v2.0/networks', {network: {name: f.get('name')}})).network;
      created.push(() => api('DELETE', '/v2.0/networks/' + net.id));
      const sub = {network_id: net.id, cidr: f.get('cidr'), ip_version: String(f.get('cidr')).includes(':') ? 6 : 4, enable_dhcp: f.get('dhcp') === 'on'};
      if (f.get('gateway')) sub.gateway_ip = f.get('gateway');
      const sn = (await api('POST', '/v2.0/subnets', {subnet: sub})).subnet;
      created.push(() => api('DELETE', '/v2.0/subnets/' + sn.id));
      let msg = `Created network ${net.name} with subnet ${sn.cidr}`;
      if (f.get('router')) {
        const rb = {name: f.get('router')};
        if (f.get('external')) rb.external_gateway_info = {network_id: f.get('external')};
        const r = (await api('POST', '/v2.0/routers', {router: rb})).router;
        created.push(() => api('DELETE', '/v2.0/routers/' + r.id));
        await api('PUT', `/v2.0/routers/${r.id}/add_router_interface`, {subnet_id: sn.id});
        msg += ` and router ${r.name} attached to it`;
      }
      return msg + '.';
    } catch (e) {
      // Like Horizon's workflow: what this form created is removed again,
      // so a refused step leaves nothing half made.
      const left = [];
      for (const undo of created.reverse()) await undo().catch(err => left.push(err.message));
      e.note = left.length ? 'Could not remove what was created before: ' + left.join('; ') : (created.length ? 'Nothing was kept: what was created before this step was removed.' : '');
      throw e;
    }
  });

  // 2. Attach a subnet to a router, or a router to an external network.
  const attachForm = form('form-attach', 'Attach', [
    h('div', {class: 'row'}, field('Router', listSelect('router', 'attach-router', () => lists.routers.map(r => [r.id, label(r)]))),
      field('Subnet', listSelect('subnet', 'attach-subnet', () => lists.subnets.map(s => [s.id, `${s.cidr} ${label(s)}`]), '— none —')),
      field('or gateway network', listSelect('external', 'attach-external', external, '— none —'))),
  ], async f => {
    if (f.get('subnet')) {
      await api('PUT', `/v2.0/routers/${f.get('router')}/add_router_interface`, {subnet_id: f.get('subnet')});
      return 'Attached the subnet to the router.';
    }
    if (f.get('external')) {
      await api('PUT', `/v2.0/routers/${f.get('router')}`, {router: {external_gateway_info: {network_id: f.get('external')}}});
      return 'Set the router\'s gateway.';
    }
    throw new Error('Choose a subnet or a gateway network.');
  });

  // 3. A floating IP for a port.
  const fipForm = form('form-fip', 'Floating IP', [
    h('div', {class: 'row'}, field('From network', listSelect('network', 'fip-network', external)),
      field('For port', listSelect('port', 'fip-port', () => lists.ports.filter(p => !String(p.device_owner || '').startsWith('network:'))
        .map(p => [p.id, `${(p.fixed_ips || []).map(x => x.ip_address).join(', ')} ${label(p)}`]), '— unassociated —'))),
  ], async f => {
    const body = {floating_network_id: f.get('network')};
    if (f.get('port')) body.port_id = f.get('port');
    const fip = (await api('POST', '/v2.0/floatingips', {floatingip: body})).floatingip;
    return `Allocated ${fip.floating_ip_address}${fip.fixed_ip_address ? ' → ' + fip.fixed_ip_address : ''}.`;
  });

  // 4. A security-group rule.
  const ruleForm = form('form-rule', 'Security-group rule', [
    h('div', {class: 'row'}, field('Group', listSelect('group', 'rule-group', () => lists.groups.map(g => [g.id, label(g)]))),
      field('Direction', select('direction', [['ingress', 'ingress'], ['egress', 'egress']], {id: 'rule-direction'})),
      field('Ethertype', select('ethertype', [['IPv4', 'IPv4'], ['IPv6', 'IPv6']], {id: 'rule-ethertype'}))),
    h('div', {class: 'row'}, field('Protocol', h('input', {name: 'protocol', id: 'rule-protocol', placeholder: 'tcp, udp, icmp, a number or empty for any', list: 'protocols'})),
      field('Port from', h('input', {name: 'min', id: 'rule-min', inputmode: 'numeric'})),
      field('Port to', h('input', {name: 'max', id: 'rule-max', inputmode: 'numeric'})),
      field('Remote prefix', h('input', {name: 'remote', id: 'rule-remote', placeholder: '0.0.0.0/0'}))),
    h('datalist', {id: 'protocols'}, ['tcp', 'udp', 'icmp', 'ipv6-icmp'].map(p => h('option', {value: p}))),
  ], async f => {
    const r = {security_group_id: f.get('group'), direction: f.get('direction'), ethertype: f.get('ethertype')};
    if (f.get('protocol')) r.protocol = f.get('protocol');
    // Numbers go as numbers, anything else as typed: the API says what is wrong.
    const num = v => (/^\d+$/.test(v) ? Number(v) : v);
    if (f.get('min')) r.port_range_min = num(f.get('min'));
    if (f.get('max')) r.port_range_max = num(f.get('max'));
    if (f.get('remote')) r.remote_ip_prefix = f.get('remote');
    const rule = (await api('POST', '/v2.0/security-group-rules', {security_group_rule: r})).security_group_rule;
    return `Added rule ${rule.id.slice(0, 8)}.`;
  });

  page.append(h('div', {class: 'forms'}, netForm, attachForm, fipForm, ruleForm));
  const forms = [netForm, attachForm, fipForm, ruleForm];
  for (const fm of forms) fm.addEventListener('changed', () => reload().catch(() => {}));
  reload().catch(e => page.append(h('p', {class: 'error', role: 'alert'}, 'Cannot list your resources: ' + e.message)));
  return () => {};
}

// form builds a card with a submit button, a success line and an error
// box; run returns the success text or throws the API's error.
function form(id, title, controls, run) {
  const ok = h('p', {class: 'ok', id: id + '-ok', role: 'status'});
  const err = h('p', {class: 'error', id: id + '-error', role: 'alert'});
  ok.hidden = err.hidden = true;
  const btn = h('button', {type: 'submit', id: id + '-submit'}, title === 'Attach' ? 'Attach' : 'Create');
  const f = h('form', {class: 'card', id}, h('h2', null, title), ...controls, btn, ok, err);
  f.addEventListener('submit', async ev => {
    ev.preventDefault();
    btn.disabled = true;
    ok.hidden = err.hidden = true;
    try {
      ok.textContent = await run(new FormData(f));
      ok.hidden = false;
      f.dispatchEvent(new Event('changed'));
    } catch (e) {
      clear(err).append(h('span', {class: 'api-message'}, e.message), e.note ? h('span', {class: 'note'}, ' ' + e.note) : null);
      err.hidden = false;
      f.dispatchEvent(new Event('changed'));
    } finally {
      btn.disabled = false;
    }
  });
  return f;
}
