// Traffic: per-service connections and bytes over the last hour, as small charts. The proxy
// counters arrive with the service mesh; until then this page says so.

import { api, h, s, section, emptyState } from '../lib.js';

// A sparkline of up to 60 points (one per minute), scaled to its own maximum.
export function sparkline(points, label) {
  const w = 120;
  const hgt = 32;
  const max = Math.max(1, ...points);
  const step = points.length > 1 ? w / (points.length - 1) : w;
  const d = points.map((v, i) => `${i ? 'L' : 'M'}${(i * step).toFixed(1)} ${(hgt - (v / max) * hgt).toFixed(1)}`).join(' ');
  return s('svg', { viewBox: `0 0 ${w} ${hgt}`, class: 'spark', role: 'img', 'aria-label': label }, s('path', { d }));
}

export function render(root) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(section('Last hour', body));
  api('GET', '/api/ui/traffic').then((t) => {
    if (!t.available || !t.items.length) {
      body.replaceChildren(emptyState(t.available ? 'No traffic yet' : 'Coming with the service mesh',
        t.reason || 'Connections and bytes per service will be charted here.'));
      return;
    }
    body.replaceChildren(h('ul', { class: 'cards' }, t.items.map((it) => h('li', { class: 'card' },
      h('h3', {}, it.service),
      sparkline(it.connections_per_min || [], `Connections per minute to ${it.service}`),
      h('p', { class: 'muted' }, `${it.connections_total || 0} connections, ${it.bytes_total || 0} bytes`)))));
  }).catch((e) => body.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message)));
}
