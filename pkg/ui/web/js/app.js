// The dashboard's entry point: login, the page shell, and the routes
// (#/topology, #/hosts, #/hosts/ID, #/trace, #/edit).

import {api, token, setToken, whenUnauthorized, login} from './api.js';
import {h, clear} from './dom.js';
import {Topology, Live} from './live.js';
import {topologyPage} from './topology.js';
import {hostsPage, hostPage} from './host.js';
import {tracePage} from './trace.js';
import {editPage} from './edit.js';

const app = {topo: new Topology(), live: null, me: null, config: null, cleanup: null};
const root = document.getElementById('app');

async function boot() {
  try {
    const res = await fetch('/ui/api/config');
    app.config = await res.json();
  } catch (e) {
    return fatal('Cannot reach nagare-server: ' + e.message);
  }
  whenUnauthorized(() => logout('Your session has ended: log in again.'));
  if (app.config.auth !== 'noauth' && !token()) return showLogin();
  try {
    app.me = await api('GET', '/ui/api/whoami');
  } catch (e) {
    return showLogin(e.status === 401 ? '' : e.message);
  }
  start();
}

function fatal(msg) {
  clear(root).append(h('main', {class: 'login'}, h('p', {class: 'error', role: 'alert'}, msg)));
}

function showLogin(message) {
  if (app.live) { app.live.stop(); app.live = null; }
  document.title = 'Log in · Nagare';
  const err = h('p', {class: 'error', role: 'alert', id: 'login-error'}, message || '');
  err.hidden = !message;
  const keystone = app.config.auth === 'keystone';
  const inputs = keystone
    ? [field('Token', h('input', {name: 'token', id: 'login-token', autocomplete: 'off', required: true}),
      'This server validates tokens with an external Keystone: paste one (openstack token issue -f value -c id).')]
    : [field('User', h('input', {name: 'user', id: 'login-user', autocomplete: 'username', required: true, value: 'admin'})),
      field('Password', h('input', {name: 'password', id: 'login-password', type: 'password', autocomplete: 'current-password', required: true})),
      field('Project', h('input', {name: 'project', id: 'login-project', required: true, value: 'admin'})),
      field('Domain', h('input', {name: 'domain', id: 'login-domain', required: true, value: 'Default'}))];
  const form = h('form', {class: 'login-form', id: 'login-form', 'aria-label': 'log in'},
    h('h1', null, 'Nagare'), h('p', {class: 'muted'}, 'Log in with your cloud account.'), ...inputs, err,
    h('button', {type: 'submit', id: 'login-submit'}, 'Log in'));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const f = new FormData(form);
    err.hidden = true;
    try {
      setToken(keystone ? String(f.get('token')).trim() : await login(app.config.identity_url, {
        user: f.get('user'), password: f.get('password'), project: f.get('project'), domain: f.get('domain')}));
      app.me = await api('GET', '/ui/api/whoami');
      start();
    } catch (e) {
      setToken('');
      err.textContent = e.status === 401 ? 'Wrong user, password or project.' : e.message;
      err.hidden = false;
    }
  });
  clear(root).append(h('main', {class: 'login'}, form));
}

function field(label, input, hint) {
  return h('label', {class: 'field'}, h('span', {class: 'field-label'}, label), input, hint ? h('span', {class: 'hint'}, hint) : null);
}

async function logout(message) {
  const t = token();
  setToken('');
  if (t && app.config && app.config.identity_url && !message) {
    // Revoke it, as `openstack token revoke` would; the page forgets it either way.
    fetch(app.config.identity_url + '/auth/tokens', {method: 'DELETE', headers: {'X-Auth-Token': t, 'X-Subject-Token': t}}).catch(() => {});
  }
  app.topo.reset();
  if (app.config.auth === 'noauth') return fatal(message || 'Logged out.');
  showLogin(message);
}

function start() {
  const status = h('span', {class: 'live-status', id: 'live-status', role: 'status'}, 'connecting');
  const me = app.me;
  const nav = [['#/topology', 'Topology'], me.admin ? ['#/hosts', 'Hosts'] : null, me.admin ? ['#/trace', 'Trace'] : null, ['#/edit', 'Edit']].filter(Boolean);
  const links = nav.map(([href, text]) => h('a', {href, 'data-route': href.slice(2)}, text));
  const header = h('header', {class: 'bar'},
    h('a', {class: 'brand', href: '#/topology'}, 'Nagare'),
    h('nav', {'aria-label': 'pages'}, links),
    status,
    h('span', {class: 'who'}, me.noauth ? 'no authentication (everyone is admin)' : `${me.user} · ${me.project}${me.admin ? ' · admin' : ''}`),
    me.noauth ? null : h('button', {type: 'button', id: 'logout', onclick: () => logout()}, 'Log out'));
  const main = h('main', {id: 'main'});
  clear(root).append(header, main);
  app.live = new Live(app.topo, st => { status.textContent = st; status.className = 'live-status ' + st; });
  app.live.start();
  window.onhashchange = () => route(main, links);
  route(main, links);
}

function route(main, links) {
  if (app.cleanup) { app.cleanup(); app.cleanup = null; }
  clear(main);
  const hash = location.hash.replace(/^#\/?/, '') || 'topology';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/');
  for (const a of links) a.classList.toggle('active', a.dataset.route === parts[0]);
  let title = 'Topology';
  if (parts[0] === 'hosts' && parts[1]) { title = 'Host'; app.cleanup = hostPage(main, app, decodeURIComponent(parts[1])); }
  else if (parts[0] === 'hosts') { title = 'Hosts'; app.cleanup = hostsPage(main, app); }
  else if (parts[0] === 'trace') { title = 'Trace'; app.cleanup = tracePage(main, app, params); }
  else if (parts[0] === 'edit') { title = 'Edit'; app.cleanup = editPage(main, app); }
  else app.cleanup = topologyPage(main, app);
  document.title = title + ' · Nagare';
}

boot();
