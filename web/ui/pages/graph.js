// Service map: who talks to whom over the last minutes — devices and workloads on the left,
// services on the right, one line per edge (thicker = more connections, red = refused), and
// the same figures in a table. From `GET /api/ui/graph?window=MIN` (the controller's
// dependency map, built from the routers' proxies' edge counters).

import { api, h, s, section, emptyState, bytes } from '../lib.js';

const latency = (e) => (e.connect_p50_ms == null ? '–' : `≤ ${e.connect_p50_ms} / ≤ ${e.connect_p99_ms} ms`);
const label = (n) => (n.group ? `${n.name} (${n.group})` : n.name);

function summary(e, from) {
  const parts = [`${from} → ${e.service}: ${e.connections} connections (${e.connections_per_min.toFixed(1)}/min)`];
  if (e.connections) parts.push(`${bytes(e.bytes_sent)} sent, ${bytes(e.bytes_received)} received`, `connect ${latency(e)}`);
  if (e.denials) parts.push(`${e.denials} refused`);
  return parts.join(', ');
}

// Two columns of labelled dots joined by one path per edge.
function drawing(map, names) {
  const rowH = 28;
  const rows = Math.max(map.sources.length, map.services.length);
  const w = 640;
  const hgt = rows * rowH + 16;
  const y = (i) => 16 + i * rowH;
  const left = new Map(map.sources.map((n, i) => [n.id, y(i)]));
  const right = new Map(map.services.map((n, i) => [n, y(i)]));
  const most = Math.max(1, ...map.edges.map((e) => e.connections));
  const lines = map.edges.map((e) => {
    const y1 = left.get(e.source);
    const y2 = right.get(e.service);
    const refused = e.denials > 0 && e.connections === 0;
    const width = 1.5 + 4 * Math.log1p(e.connections) / Math.log1p(most);
    return s('path', {
      class: refused ? 'edge refused' : e.denials ? 'edge mixed' : 'edge',
      d: `M200 ${y1} C320 ${y1} 320 ${y2} 440 ${y2}`,
      'stroke-width': width.toFixed(1),
      'data-source': e.source,
      'data-service': e.service,
    }, s('title', {}, summary(e, names.get(e.source))));
  });
  const dots = [
    ...map.sources.map((n) => s('g', { class: 'node source' },
      s('circle', { cx: 200, cy: left.get(n.id), r: 5 }),
      s('text', { x: 190, y: left.get(n.id) + 4, 'text-anchor': 'end' }, label(n)))),
    ...map.services.map((svc) => s('g', { class: 'node service' },
      s('circle', { cx: 440, cy: right.get(svc), r: 5 }),
      s('text', { x: 450, y: right.get(svc) + 4 }, svc))),
  ];
  return s('svg', { viewBox: `0 0 ${w} ${hgt}`, class: 'service-map', role: 'img', 'aria-label': 'Who reaches which service; the table below has the figures' }, ...lines, ...dots);
}

function table(map, names) {
  return h('table', { id: 'graph-edges' },
    h('thead', {}, h('tr', {}, ...['From', 'Service', 'Connections', 'Per minute', 'Sent', 'Received', 'Connect p50 / p99', 'Refused']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, map.edges.map((e) => h('tr', { 'data-source': e.source, 'data-service': e.service, class: e.denials ? 'denied' : '' },
      h('td', {}, names.get(e.source)), h('td', {}, e.service), h('td', {}, String(e.connections)),
      h('td', {}, e.connections_per_min.toFixed(1)), h('td', {}, bytes(e.bytes_sent)), h('td', {}, bytes(e.bytes_received)),
      h('td', {}, latency(e)), h('td', {}, String(e.denials))))));
}

export function render(root) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const pick = h('select', { id: 'graph-window' }, [5, 15, 60].map((m) => h('option', { value: m, selected: m === 15 }, `last ${m} min`)));
  const load = () => api('GET', `/api/ui/graph?window=${pick.value}`).then((map) => {
    if (!map.edges.length) {
      body.replaceChildren(emptyState('No connections yet',
        `Who reaches which service is drawn here once devices use the home’s services (none in the last ${map.window_min} min).`));
      return;
    }
    const names = new Map(map.sources.map((n) => [n.id, label(n)]));
    body.replaceChildren(drawing(map, names), table(map, names),
      h('p', { class: 'hint' }, 'Connect is the time to reach the service’s router (p50 / p99, by bucket). Bytes count when a connection ends.'));
  }).catch((e) => body.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message)));
  pick.addEventListener('change', load);
  root.append(section('Who talks to whom',
    h('div', { class: 'field' }, h('label', { for: 'graph-window' }, 'Window'), pick), body));
  load();
}
