// DOM helpers. Every piece of data reaches the page as a text node or an
// attribute value set through the DOM, never as markup (no innerHTML), so
// a network named "<script>alert(1)</script>" is shown as those characters.

const SVG = 'http://www.w3.org/2000/svg';

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function setProps(el, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' || k === 'checked' || k === 'selected' || k === 'disabled') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

// h creates an HTML element: h('div', {class: 'x'}, 'text', child…).
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

// s creates an SVG element.
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG, tag);
  setProps(el, props);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// field is a labelled form control.
export function field(label, control, hint) {
  return h('label', {class: 'field'}, h('span', {class: 'field-label'}, label), control,
    hint ? h('span', {class: 'hint'}, hint) : null);
}

// select builds a <select> from [value, text] pairs.
export function select(name, options, props) {
  return h('select', {name, ...props}, options.map(([v, t]) => h('option', {value: v}, t)));
}

export function fmtNumber(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (n / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (n / 1e3).toFixed(1) + 'k';
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(a < 10 ? 2 : 1);
}

export function shortID(id) {
  return id ? String(id).slice(0, 8) : '';
}
