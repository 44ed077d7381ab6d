// Small helpers shared by every page: the API client, a DOM builder (no innerHTML, so no
// markup injection from names people type), announcements for screen readers, formatting,
// and the "action with progress and result" pattern every button uses.

let csrf = '';

export function setCsrf(token) {
  csrf = token || '';
}

export class ApiError extends Error {
  constructor(status, message) {
    // The controller's messages are sentences that start in lower case (shared with the CLI).
    super(message ? message[0].toUpperCase() + message.slice(1) : message);
    this.status = status;
  }
}

// Call the controller. State-changing calls carry the session's CSRF token in a header;
// before login the header is still sent (the server requires it on login and setup).
export async function api(method, path, body) {
  const headers = { 'X-Trellis-Csrf': csrf || 'login' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'The router did not answer. Check that you are on the home network and the controller is running, then try again.');
  }
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  }
  if (!resp.ok) {
    const message = (data && data.error) || `The router answered ${resp.status}. Try again.`;
    if (resp.status === 401 && !path.endsWith('/login') && !path.endsWith('/setup')) {
      window.dispatchEvent(new CustomEvent('trellis:logged-out', { detail: message }));
    }
    throw new ApiError(resp.status, message);
  }
  return data;
}

// h('p', {class: 'x', onclick: fn}, 'text', child) — attributes, events, children.
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

const SVG_NS = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Tell screen-reader users what happened without moving their focus.
export function announce(message) {
  const live = document.getElementById('announce');
  if (!live) return;
  live.textContent = '';
  // A new text node in a fresh task is read even when the text repeats.
  setTimeout(() => { live.textContent = message; }, 30);
}

// Run fn with a button showing progress, then show the result in `out` (an element with
// role=status). Errors go in the same place, marked as errors, and say what to do.
export async function action(button, out, busyLabel, fn) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  button.textContent = busyLabel;
  out.className = 'result busy';
  out.textContent = busyLabel;
  try {
    const message = await fn();
    out.className = 'result ok';
    out.textContent = message || 'Done.';
    announce(out.textContent);
    return true;
  } catch (e) {
    out.className = 'result error';
    out.setAttribute('role', 'alert');
    out.textContent = e.message || String(e);
    return false;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = label;
  }
}

// A modal confirmation (native <dialog>: focus is trapped and Escape cancels).
export function confirmDialog(title, text, confirmLabel) {
  return new Promise((resolve) => {
    const id = 'dlg-' + Math.random().toString(36).slice(2);
    const dialog = h('dialog', { 'aria-labelledby': id, class: 'confirm' },
      h('h2', { id }, title),
      h('p', {}, text),
      h('form', { method: 'dialog', class: 'row' },
        h('button', { value: 'cancel', class: 'quiet', autofocus: true }, 'Cancel'),
        h('button', { value: 'ok', class: 'danger' }, confirmLabel)));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Sizes and rates as the pages print them.
export const bytes = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB`
  : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);
export const mbit = (bps) => `${(bps / 1e6).toFixed(1)} Mbit/s`;

export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function date(unix) {
  if (!unix) return '—';
  return new Date(unix * 1000).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

export function routerName(r) {
  return r.label || r.name;
}

export const STATE_TEXT = {
  online: 'Online',
  connecting: 'Connecting',
  offline: 'Offline',
  removed: 'Removed',
};

// A page section with a heading; `level` 2 by default.
export function section(title, ...children) {
  const id = 'h-' + title.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return h('section', { 'aria-labelledby': id, class: 'card' }, h('h2', { id }, title), ...children);
}

// The honest "not yet" state of a feature that arrives later.
export function emptyState(title, text) {
  return h('div', { class: 'empty', role: 'note' }, h('p', { class: 'empty-title' }, title), h('p', {}, text));
}

// Poll fn every `ms` while the page is shown; returns the stop function.
export function every(ms, fn) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { /* the page shows its own error state */ }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
