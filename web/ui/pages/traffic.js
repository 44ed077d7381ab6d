// Traffic: per-service connections and bytes over the last hour, as small charts, from the
// counters the routers' proxies report.

import { api, h, s, section, emptyState, bytes } from '../lib.js';

// A sparkline of up to 60 points (one per minute), scaled to its own maximum.
export function sparkline(points, label) {
  const w = 120;
  const hgt = 32;
  const max = Math.max(1, ...points);
  const step = points.length > 1 ? w / (points.length - 1) : w;
  const d = points.map((v, i) => `${i ? 'L' : 'M'}${(i * step).toFixed(1)} ${(hgt - (v / max) * hgt).toFixed(1)}`).join(' ');
  return s('svg', { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none', class: 'spark', role: 'img', 'aria-label': label }, s('path', { d }));
}

export function render(root) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(section('Last hour', body));
  api('GET', '/api/ui/traffic').then((t) => {
    if (!t.items.length) {
      body.replaceChildren(emptyState('No traffic yet',
        'Connections and bytes per service are charted here once devices use the home’s services.'));
      return;
    }
    body.replaceChildren(h('p', { class: 'hint' }, t.note || ''),
      h('ul', { class: 'cards', id: 'traffic-list' }, t.items.map((it) => h('li', { class: 'card', 'data-service': it.service },
        h('h3', {}, it.service),
        h('p', {}, 'Connections per minute'),
        sparkline(it.connections_per_min || [], `Connections per minute to ${it.service}, last hour`),
        h('p', {}, 'Bytes per minute'),
        sparkline(it.bytes_per_min || [], `Bytes per minute to ${it.service}, last hour`),
        h('p', { class: 'muted spark-axis', 'aria-hidden': 'true' }, h('span', {}, '1 h ago'), h('span', {}, 'now')),
        h('p', { class: 'muted traffic-total' }, `${it.connections_total} connections, ${bytes(it.bytes_total)} in the last hour`)))));
  }).catch((e) => body.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message)));
}
