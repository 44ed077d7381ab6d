// The page shell: first-run setup, login, navigation between pages (hash routes, so the
// server serves one document and the back button works).

import { api, h, setCsrf, announce, action } from './lib.js';

const PAGES = {
  '': { title: 'Home', load: () => import('./pages/home.js') },
  routers: { title: 'Routers', load: () => import('./pages/routers.js') },
  wifi: { title: 'Wifi', load: () => import('./pages/wifi.js') },
  services: { title: 'Services', load: () => import('./pages/services.js') },
  policy: { title: 'Policy', load: () => import('./pages/policy.js') },
  certificates: { title: 'Certificates', load: () => import('./pages/certificates.js') },
  traffic: { title: 'Traffic', load: () => import('./pages/traffic.js') },
  graph: { title: 'Service map', load: () => import('./pages/graph.js') },
  traces: { title: 'Traces', load: () => import('./pages/traces.js') },
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const logoutButton = document.getElementById('logout');
let stopPage = null;
let ready = false;

function clearPage() {
  if (stopPage) stopPage();
  stopPage = null;
  main.replaceChildren();
}

function showSignedOut() {
  ready = false;
  setCsrf('');
  nav.hidden = true;
  logoutButton.hidden = true;
}

function passwordField(id, label, autocomplete, hint) {
  const hintId = hint ? id + '-hint' : undefined;
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    h('input', { id, name: id, type: 'password', required: true, autocomplete, 'aria-describedby': hintId, minlength: autocomplete === 'new-password' ? 8 : undefined }),
    hint && h('p', { id: hintId, class: 'hint' }, hint));
}

function setupForm() {
  clearPage();
  showSignedOut();
  document.title = 'Set up · Trellis';
  const out = h('p', { class: 'result', role: 'status', id: 'setup-result' });
  const submit = h('button', { type: 'submit', id: 'setup-submit' }, 'Set password');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'setup-title' },
    h('h1', { id: 'setup-title', tabindex: '-1' }, 'Welcome to Trellis'),
    h('p', {}, 'Choose the password that protects this page. To prove you own this router, type the setup token: run ',
      h('code', {}, 'trellis setup-token'), ' on the router (over SSH) and copy what it prints.'),
    h('div', { class: 'field' },
      h('label', { for: 'setup-token' }, 'Setup token'),
      h('input', { id: 'setup-token', name: 'token', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'none' })),
    passwordField('setup-password', 'New admin password', 'new-password', 'At least 8 characters.'),
    passwordField('setup-password2', 'Repeat the password', 'new-password'),
    submit, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = form.querySelector('#setup-token').value.trim();
    const p1 = form.querySelector('#setup-password').value;
    const p2 = form.querySelector('#setup-password2').value;
    await action(submit, out, 'Setting the password…', async () => {
      if (p1 !== p2) throw new Error('The two passwords differ: type the same password twice.');
      const s = await api('POST', '/api/ui/setup', { token, password: p1 });
      enter(s);
      return 'Password set.';
    });
  });
  main.append(form);
  form.querySelector('h1').focus();
}

function loginForm(reason) {
  clearPage();
  showSignedOut();
  document.title = 'Log in · Trellis';
  const out = h('p', { class: 'result', role: 'status', id: 'login-result' }, reason || '');
  const submit = h('button', { type: 'submit', id: 'login-submit' }, 'Log in');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title', tabindex: '-1' }, 'Log in to Trellis'),
    passwordField('login-password', 'Admin password', 'current-password'),
    submit, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = form.querySelector('#login-password');
    const ok = await action(submit, out, 'Checking…', async () => {
      const s = await api('POST', '/api/ui/login', { password: input.value });
      enter(s);
      return 'Logged in.';
    });
    if (!ok) {
      input.select();
      input.focus();
    }
  });
  main.append(form);
  form.querySelector('#login-password').focus();
}

function enter(session) {
  setCsrf(session.csrf);
  ready = true;
  nav.hidden = false;
  logoutButton.hidden = false;
  route();
}

async function route() {
  if (!ready) return;
  const key = location.hash.replace(/^#\/?/, '').split('/')[0];
  const page = PAGES[key] || PAGES[''];
  for (const a of nav.querySelectorAll('a')) {
    const target = a.getAttribute('href').replace(/^#\/?/, '');
    if (target === key) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  clearPage();
  document.title = `${page.title} · Trellis`;
  const heading = h('h1', { tabindex: '-1' }, page.title);
  const body = h('div', { class: 'page' });
  main.append(heading, body);
  try {
    const mod = await page.load();
    stopPage = mod.render(body) || null;
  } catch (e) {
    body.append(h('p', { class: 'result error', role: 'alert' }, `This page could not load: ${e.message}. Reload the page.`));
  }
  // Move focus to the new page's heading so screen readers announce it.
  heading.focus();
}

logoutButton.addEventListener('click', async () => {
  try { await api('POST', '/api/ui/logout'); } catch (e) { /* logged out either way */ }
  loginForm('You are logged out.');
  announce('You are logged out.');
});

window.addEventListener('hashchange', route);
// The session ended (expired, or the password was reset from the router's shell): ask the
// controller whether to log in again or set a new password.
window.addEventListener('trellis:logged-out', (ev) => start(ev.detail));

async function start(reason) {
  try {
    const s = await api('GET', '/api/ui/session');
    if (s.state === 'setup') setupForm();
    else if (s.state === 'login') loginForm(reason);
    else enter(s);
  } catch (e) {
    main.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message));
  }
}

start();
