// Certificates: the home's root CA and each router's identity and expiry.

import { api, h, section, duration, date, routerName, STATE_TEXT } from '../lib.js';

export function render(root) {
  const ca = h('div', { id: 'ca' }, h('p', { class: 'muted' }, 'Loading…'));
  const list = h('div', { id: 'identities' });
  root.append(
    section('Home certificate authority', ca),
    section('Router identities', list));
  api('GET', '/api/ui/certificates').then((c) => {
    ca.replaceChildren(h('dl', { class: 'facts' },
      h('dt', {}, 'Home'), h('dd', {}, h('code', {}, c.home_id)),
      h('dt', {}, 'Expires'), h('dd', {}, `${date(c.ca_not_after)} (in ${duration(c.ca_expires_in_s)})`),
      h('dt', {}, 'Fingerprint (SHA-256)'), h('dd', {}, h('code', { class: 'wrap' }, c.ca_fingerprint)),
      h('dt', {}, 'Router certificates last'), h('dd', {}, `${duration(c.leaf_ttl_s)}, renewed automatically at half their life`)),
    h('p', { class: 'hint' }, 'Back up the CA from the router\u2019s shell with ', h('code', {}, 'trellis ca-backup'), ' and keep the file secret.'));
    const routers = c.routers.filter((r) => r.state !== 'removed');
    if (!routers.length) {
      list.replaceChildren(h('p', { class: 'muted' }, 'No router identities yet: pair a satellite on the Routers page.'));
      return;
    }
    list.replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
      h('caption', { class: 'visually-hidden' }, 'Router certificates'),
      h('thead', {}, h('tr', {}, ['Router', 'Identity', 'Expires', 'Life left'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, routers.map((r) => {
        const left = r.cert_expires_in_s || 0;
        const frac = Math.max(0, Math.min(1, left / c.leaf_ttl_s));
        return h('tr', { 'data-router': r.name },
          h('th', { scope: 'row' }, routerName(r), h('br'), h('span', { class: 'muted' }, STATE_TEXT[r.state])),
          h('td', {}, h('code', { class: 'wrap' }, r.identity)),
          h('td', {}, r.cert_not_after ? `${date(r.cert_not_after)} (in ${duration(left)})` : '—'),
          h('td', {}, h('meter', { min: 0, max: 1, low: 0.25, optimum: 1, value: frac.toFixed(3), 'aria-label': `${Math.round(frac * 100)}% of the certificate's life left` }),
            ` ${Math.round(frac * 100)}%`));
      })))));
  }).catch((e) => ca.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message)));
}
