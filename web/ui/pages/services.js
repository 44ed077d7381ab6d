// Services: the catalog (name, mesh name, router, how it was found, who may reach it).

import { api, h, section, emptyState } from '../lib.js';

const COLUMNS = ['Service', 'Mesh name', 'Runs on', 'Found by', 'Who may reach it'];
const FOUND = { mdns: 'mDNS', dhcp: 'DHCP lease', host: 'on the router', manual: 'added by hand' };

export function render(root) {
  const body = h('div', { id: 'services' }, h('p', { class: 'muted' }, 'Loading…'));
  root.append(section('Home services', body));
  api('GET', '/api/ui/services').then((res) => {
    if (!res.available || res.items.length === 0) {
      body.replaceChildren(emptyState(
        res.available ? 'No services yet' : 'Coming with the service mesh',
        res.reason || 'Services found on your routers (a NAS, Home Assistant, a printer) will be listed here.'));
      return;
    }
    body.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'visually-hidden' }, 'Home services'),
      h('thead', {}, h('tr', {}, COLUMNS.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, res.items.map((svc) => h('tr', { 'data-service': svc.name },
        h('th', { scope: 'row' }, svc.name, h('br'), h('span', { class: 'muted' }, `${svc.ports.length === 1 ? 'port' : 'ports'} ${svc.ports.join(', ')}`)),
        h('td', {}, h('code', { class: 'wrap' }, svc.mesh_name), h('br'), h('span', { class: 'muted' }, svc.vip)),
        h('td', {}, svc.instances.length === 0 ? '—' : svc.instances.map((i) => h('div', {},
          `${i.addr} behind ${i.router}`, i.reachable ? '' : h('strong', { class: 'bad' }, ' (unreachable)')))),
        h('td', {}, FOUND[svc.learned_via] || svc.learned_via),
        h('td', {}, svc.reached_by.length ? svc.reached_by.join(', ') : 'nobody yet')))))));
  }).catch((e) => {
    body.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message));
  });
}
