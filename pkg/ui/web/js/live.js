// The live topology: a mirror of what the server's event stream says the
// caller may see, and the connection that keeps it current.

import {stream} from './api.js';
import {shortID} from './dom.js';

const KINDS = {host: 'hosts', bridge: 'bridges', router: 'routers', port: 'ports', 'dhcp-subnet': 'dhcpSubnets', 'dhcp-host': 'dhcpHosts'};

export class Topology {
  constructor() {
    this.listeners = new Set();
    this.reset();
  }

  reset() {
    for (const m of Object.values(KINDS)) this[m] = new Map();
    this.admin = false;
    this.rev = 0;
    this.loaded = false;
    this._index = null;
  }

  onChange(f) { this.listeners.add(f); return () => this.listeners.delete(f); }

  notify() {
    if (this._pending) return;
    this._pending = true;
    requestAnimationFrame(() => {
      this._pending = false;
      for (const f of this.listeners) f(this);
    });
  }

  put(kind, o) {
    const m = this[KINDS[kind]];
    if (m) m.set(o.id, o);
  }

  applySnapshot(msg) {
    this.reset();
    this.admin = !!msg.admin;
    for (const w of msg.objects || []) this.put(w.kind, w.object);
    this.applyAlive(msg.alive);
    this.rev = msg.rev;
    this.loaded = true;
  }

  applyChange(msg) {
    for (const w of msg.put || []) this.put(w.kind, w.object);
    for (const key of msg.delete || []) {
      const i = key.indexOf('/');
      const m = this[KINDS[key.slice(0, i)]];
      if (m) m.delete(key.slice(i + 1));
    }
    this.applyAlive(msg.alive);
    this.rev = msg.rev;
    this._index = null;
  }

  applyAlive(alive) {
    for (const [id, up] of Object.entries(alive || {})) {
      const hst = this.hosts.get(id);
      if (hst) hst.alive = up;
    }
    this._index = null;
  }

  // index holds what several views derive: ports by device, DHCP entries
  // by (bridge, MAC), subnets by bridge.
  index() {
    if (this._index) return this._index;
    const portsByDevice = new Map();
    for (const p of this.ports.values()) {
      const d = p.router_id || p.bridge_id;
      if (!portsByDevice.has(d)) portsByDevice.set(d, []);
      portsByDevice.get(d).push(p);
    }
    const subnetsByBridge = new Map();
    for (const sn of this.dhcpSubnets.values()) {
      if (!subnetsByBridge.has(sn.bridge_id)) subnetsByBridge.set(sn.bridge_id, []);
      subnetsByBridge.get(sn.bridge_id).push(sn);
    }
    const dhcpByMAC = new Map();
    for (const dh of this.dhcpHosts.values()) {
      const sn = this.dhcpSubnets.get(dh.dhcp_subnet_id);
      if (sn) dhcpByMAC.set(sn.bridge_id + '/' + String(dh.mac).toLowerCase(), dh);
    }
    this._index = {portsByDevice, subnetsByBridge, dhcpByMAC};
    return this._index;
  }

  portsOf(deviceID) { return this.index().portsByDevice.get(deviceID) || []; }
  subnetsOf(bridgeID) { return this.index().subnetsByBridge.get(bridgeID) || []; }

  device(p) { return p.router_id ? this.routers.get(p.router_id) : this.bridges.get(p.bridge_id); }

  object(kind, id) {
    const m = this[KINDS[kind]];
    return m ? m.get(id) : undefined;
  }

  // dhcpHostOf is the fixed address entry for a bridge port's MAC.
  dhcpHostOf(p) {
    if (!p.bridge_id || !p.mac) return undefined;
    return this.index().dhcpByMAC.get(p.bridge_id + '/' + String(p.mac).toLowerCase());
  }

  // addresses of a port: a router port's own, a bridge port's DHCP entry.
  addresses(p) {
    if (p.address) return [p.network ? `${p.address}/${p.network.split('/')[1]}` : p.address];
    const dh = this.dhcpHostOf(p);
    return dh ? [dh.address] : [];
  }

  name(kind, o) {
    if (!o) return '';
    if (kind === 'port') return this.portLabel(o);
    return o.name || shortID(o.id);
  }

  portLabel(p) {
    const dh = this.dhcpHostOf(p);
    if (p.interface_name) return p.interface_name;
    if (dh && dh.name) return dh.name;
    if (p.address) return p.address;
    if (p.physical_network) return 'uplink ' + p.physical_network;
    return 'port ' + shortID(p.id);
  }

  // searchText is everything a search may match for an object.
  searchText(kind, o) {
    const parts = [kind, o.id, o.name];
    if (kind === 'port') {
      parts.push(this.portLabel(o), o.interface_name, o.mac, o.address, o.network, o.physical_network, ...this.addresses(o));
      const dh = this.dhcpHostOf(o);
      if (dh) parts.push(dh.name, dh.address);
    }
    if (kind === 'host') parts.push(...(o.addresses || []));
    if (kind === 'bridge') for (const sn of this.subnetsOf(o.id)) parts.push(sn.subnet);
    return parts.filter(Boolean).join(' ').toLowerCase();
  }
}

// Live keeps a Topology current from /ui/api/events, reconnecting after
// interruptions (each reconnection starts from a new snapshot).
export class Live {
  constructor(topo, onStatus) {
    this.topo = topo;
    this.onStatus = onStatus || (() => {});
    this.abort = null;
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
  }

  async loop() {
    let delay = 500;
    while (!this.stopped) {
      this.abort = new AbortController();
      this.onStatus('connecting');
      try {
        await stream('/ui/api/events', (name, data) => {
          if (name === 'snapshot') {
            this.topo.applySnapshot(data);
            this.onStatus('live');
            delay = 500;
          } else if (name === 'change') {
            this.topo.applyChange(data);
          }
          this.topo.notify();
        }, this.abort.signal);
      } catch (e) {
        if (this.stopped) return;
        if (e && e.status === 401) { this.stopped = true; return; }
      }
      if (this.stopped) return;
      this.onStatus('reconnecting');
      await new Promise(r => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
}
