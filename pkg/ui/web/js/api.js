// Talking to nagare-server: the token lives in this tab's sessionStorage
// and travels in the X-Auth-Token header only — never in a cookie, so no
// other site can make the browser send it (no CSRF).

const TOKEN = 'nagare.token';
let onUnauthorized = () => {};

export function token() { return sessionStorage.getItem(TOKEN) || ''; }
export function setToken(t) { if (t) sessionStorage.setItem(TOKEN, t); else sessionStorage.removeItem(TOKEN); }
export function whenUnauthorized(f) { onUnauthorized = f; }

// ApiError carries the API's own message (native, Neutron or Keystone
// error body), so forms show what the API said.
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function messageOf(body, fallback) {
  if (body && typeof body === 'object') {
    if (body.NeutronError && body.NeutronError.message) return body.NeutronError.message;
    if (body.error && body.error.message) return body.error.message;
    if (body.message) return String(body.message);
  }
  return fallback;
}

function headers(extra) {
  const h = {'Accept': 'application/json', ...extra};
  const t = token();
  if (t) h['X-Auth-Token'] = t;
  return h;
}

async function errorOf(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  return new ApiError(res.status, messageOf(body, `${res.status} ${res.statusText}`), body);
}

// api sends a request and returns the decoded JSON answer (null when empty).
export async function api(method, path, body) {
  const init = {method, headers: headers(body !== undefined ? {'Content-Type': 'application/json'} : {})};
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (res.status === 401 && !path.startsWith('/identity/')) {
    onUnauthorized();
    throw await errorOf(res);
  }
  if (!res.ok) throw await errorOf(res);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// login asks the server's identity service for a project-scoped token.
export async function login(identityURL, {user, password, project, domain}) {
  const body = {auth: {
    identity: {methods: ['password'], password: {user: {name: user, password, domain: {name: domain}}}},
    scope: {project: {name: project, domain: {name: domain}}},
  }};
  const res = await fetch(identityURL + '/auth/tokens', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  if (!res.ok) throw await errorOf(res);
  const t = res.headers.get('X-Subject-Token');
  if (!t) throw new ApiError(res.status, 'the identity service answered without a token');
  return t;
}

// stream reads Server-Sent Events with fetch (EventSource cannot send the
// token header) and calls onEvent(name, data) for each, until the stream
// ends or signal aborts.
export async function stream(path, onEvent, signal) {
  const res = await fetch(path, {headers: headers({'Accept': 'text/event-stream'}), signal});
  if (res.status === 401) {
    onUnauthorized();
    throw await errorOf(res);
  }
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line === '' || line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const f = c < 0 ? line : line.slice(0, c);
        let v = c < 0 ? '' : line.slice(c + 1);
        if (v.startsWith(' ')) v = v.slice(1);
        if (f === 'event') name = v;
        else if (f === 'data') data.push(v);
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}
