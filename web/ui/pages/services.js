// Services: the catalog (name, mesh name, router, how it was found, who may reach it).
// The controller answers `available: false` until the service mesh's catalog is there.

import { api, h, section, emptyState } from '../lib.js';

const COLUMNS = ['Service', 'Mesh name', 'Router', 'Found by', 'Who may reach it'];

export function render(root) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(section('Home services', body));
  api('GET', '/api/ui/services').then((res) => {
    if (!res.available || res.items.length === 0) {
      body.replaceChildren(emptyState(
        res.available ? 'No services found yet' : 'Coming with the service mesh',
        res.reason || 'Services found on your routers (a NAS, Home Assistant, a printer) will be listed here.'),
        h('p', { class: 'muted' }, `For each service you will see: ${COLUMNS.join(', ').toLowerCase()}.`));
      return;
    }
    body.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'visually-hidden' }, 'Home services'),
      h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, res.items.map((svc) => h('tr', {},
        h('th', { scope: 'row' }, svc.name),
        h('td', {}, h('code', {}, svc.mesh_name || '—')),
        h('td', {}, svc.router || '—'),
        h('td', {}, svc.source || '—'),
        h('td', {}, (svc.allowed_groups || []).join(', ') || 'nobody yet')))))));
  }).catch((e) => {
    body.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message));
  });
}
