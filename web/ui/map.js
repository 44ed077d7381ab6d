// The topology map: the primary router (portal) in the middle, satellites around it, mesh
// links coloured by quality, cables drawn square-ended and thinner. Links come from the
// routers' telemetry; a router without link data yet is drawn with a dashed line meaning
// "talks to the controller".
// Hover, focus (keyboard) or tap a router or a link to see its details under the map.

import { h, s, routerName, STATE_TEXT, duration, mbit } from './lib.js';

const W = 640;
const H = 420;
// The centre of the map when the router the controller runs on has no agent in the home
// yet (its agent joins by itself on a real install, and then takes this place).
const CONTROLLER = 'controller';
// The smallest area the map zooms to, so one or two routers are not drawn huge.
const MIN_W = 720;
const MIN_H = 300;

// Same thresholds as the agent's link health (node-agent wifi/health.rs).
function linkQuality(link) {
  const v = link.verdict;
  if (v === 'good' || v === 'fair' || v === 'blocked') return v;
  if (v === 'weak' || v === 'unstable' || v === 'too_close') return 'bad';
  if (link.signal_dbm == null) return 'unknown';
  if (link.signal_dbm >= -60) return 'good';
  if (link.signal_dbm >= -70) return 'fair';
  return 'bad';
}

const QUALITY_TEXT = {
  good: 'good', fair: 'fair', bad: 'weak or unstable', blocked: 'blocked (flapping)', unknown: 'quality unknown',
};

function linkText(link, names) {
  const via = link.medium === 'cable' ? 'cable' : 'wifi mesh';
  const parts = [`${names(link.from)} ↔ ${names(link.to)} (${via}): ${QUALITY_TEXT[linkQuality(link)]}`];
  if (link.signal_dbm != null) parts.push(`signal ${link.signal_dbm} dBm`);
  if (link.expected_throughput_kbps != null) parts.push(`about ${(link.expected_throughput_kbps / 1000).toFixed(1)} Mbit/s`);
  if (link.airtime_metric != null) parts.push(`airtime metric ${link.airtime_metric}`);
  if (link.measured) parts.push(`measured ${mbit(link.measured.bits_per_second)} (${names(link.measured.from)} → ${names(link.measured.to)})`);
  return parts.join(', ');
}

// What every link says on the map itself: cable or wifi, and what a speed test measured.
function linkLabel(link) {
  const via = link.medium === 'cable' ? 'cable' : 'wifi';
  return link.measured ? `${via} · ${mbit(link.measured.bits_per_second)}` : via;
}

const plural = (count, word) => `${count} ${word}${count === 1 ? '' : 's'}`;

function hopsText(r) {
  if (r.hops == null) return 'no mesh path reported';
  return `${plural(r.hops, 'mesh hop')} from this router`;
}

function routerText(r) {
  const parts = [`${routerName(r)}: ${STATE_TEXT[r.state] || r.state}`];
  if (!r.portal) parts.push(hopsText(r));
  if (r.last_seen_s != null) parts.push(`last heard ${duration(r.last_seen_s)} ago`);
  parts.push(`${plural(r.devices.length, 'device')}, ${plural(r.services.length, 'service')}`);
  if (r.devices.length) parts.push(`devices ${r.devices.join(', ')}`);
  if (r.services.length) parts.push(`runs ${r.services.join(', ')}`);
  if (r.addresses.length) parts.push(`addresses ${r.addresses.join(', ')}`);
  return parts.join(', ');
}

// A small router: a box with two antennas.
const ROUTER_GLYPH = 'M-13 0h26v10h-26zM-8 0l-3-10M8 0l3-10M-7 5h2M-2 5h2';

// Place satellites on a ring around the portal (stable order: by name).
function layout(portal, routers, narrow) {
  const pos = new Map([[portal, { x: W / 2, y: H / 2 }]]);
  const n = routers.length;
  const r = n <= 1 ? 140 : Math.min(160, 90 + n * 12);
  // One or two satellites sit beside the portal; more go round it from the top.
  // On a phone they go below it, so the map stays tall rather than wide.
  const start = narrow ? Math.PI / 2 : n <= 2 ? 0 : -Math.PI / 2;
  const stretch = narrow ? 0.8 : 1.45;
  routers.forEach((rt, i) => {
    const a = start + (2 * Math.PI * i) / Math.max(n, 1);
    pos.set(rt.name, { x: W / 2 + r * stretch * Math.cos(a), y: H / 2 + r * Math.sin(a) });
  });
  return pos;
}

// Render into `holder`; returns nothing. Called again on every refresh.
export function drawMap(holder, overview) {
  const all = overview.routers.filter((r) => r.state !== 'removed');
  const own = all.find((r) => r.name === overview.portal);
  const PORTAL = own ? own.name : CONTROLLER;
  const routers = all.filter((r) => r !== own);
  const byName = new Map(all.map((r) => [r.name, r]));
  const names = (n) => (n === PORTAL ? 'This router' : routerName(byName.get(n) || { name: n }));
  const narrow = holder.clientWidth > 0 && holder.clientWidth < 520;
  const pos = layout(PORTAL, routers, narrow);
  const minW = narrow ? 360 : MIN_W;
  // A refresh keeps what the person was looking at: the details text and keyboard focus.
  const before = holder.querySelector('.map-details');
  const focused = document.activeElement && holder.contains(document.activeElement)
    ? document.activeElement.getAttribute('data-router') : null;
  const details = h('p', { class: 'map-details', id: 'map-details', 'aria-live': 'polite' },
    before ? before.textContent : 'Hover over, tap or tab to a router or link for details.');
  const show = (text) => () => { details.textContent = text; };

  const online = routers.filter((r) => r.state === 'online').length;
  const summary = routers.length === 0
    ? 'Map: only this router so far. Pair a satellite on the Routers page.'
    : `Map: this router and ${routers.length} satellite${routers.length === 1 ? '' : 's'}, ${online} online.`;
  // Fit the view to the routers (labels hang below each circle).
  const xs = [...pos.values()].map((p) => p.x);
  const ys = [...pos.values()].map((p) => p.y);
  let [x0, x1, y0, y1] = [Math.min(...xs) - 90, Math.max(...xs) + 90, Math.min(...ys) - 45, Math.max(...ys) + 80];
  if (x1 - x0 < minW) { const c = (x0 + x1) / 2; x0 = c - minW / 2; x1 = c + minW / 2; }
  if (y1 - y0 < MIN_H) { const c = (y0 + y1) / 2; y0 = c - MIN_H / 2; y1 = c + MIN_H / 2; }
  const svg = s('svg', {
    viewBox: `${x0.toFixed(0)} ${y0.toFixed(0)} ${(x1 - x0).toFixed(0)} ${(y1 - y0).toFixed(0)}`,
    class: 'map', role: 'group', 'aria-label': summary, id: 'topology',
  });

  const linked = new Set();
  const labelled = new Set();
  // Drawn over the routers, so a label is never hidden behind one.
  const labelLayer = s('g', { class: 'link-labels' });
  const linkLayer = s('g', { class: 'links' });
  for (const l of overview.links) {
    const a = pos.get(l.from);
    const b = pos.get(l.to);
    if (!a || !b) continue;
    linked.add(l.from);
    linked.add(l.to);
    const text = linkText(l, names);
    const q = linkQuality(l);
    linkLayer.append(s('line', {
      x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: `link q-${q} via-${l.medium || 'wifi'}`, tabindex: 0, role: 'img', 'aria-label': text,
      onmouseenter: show(text), onfocus: show(text), onclick: show(text),
    }, s('title', {}, text)));
    // Both ends report a link: label it once.
    const key = [l.from, l.to].sort().join('|');
    if (!labelled.has(key)) {
      labelled.add(key);
      // Mid-link, unless a router sits there (two satellites either side of the portal):
      // then a little along the line.
      const at = (t) => ({ x: a.x + (b.x - a.x) * t, y: a.y + (b.y - a.y) * t });
      const clear = (p) => [...pos.entries()].every(([n, q]) => n === l.from || n === l.to || Math.hypot(p.x - q.x, p.y - q.y) > 110);
      // No clear point on the line: above the router in the way.
      const p = [0.5, 0.3, 0.7, 0.2, 0.8].map(at).find(clear) || { x: at(0.5).x, y: at(0.5).y - 58 };
      labelLayer.append(s('text', {
        x: p.x.toFixed(1), y: (p.y - 6).toFixed(1), class: 'link-label', 'text-anchor': 'middle',
        'data-link': key, 'aria-hidden': 'true',
      }, linkLabel(l)));
    }
  }
  for (const r of routers) {
    if (linked.has(r.name)) continue;
    const a = pos.get(PORTAL);
    const b = pos.get(r.name);
    const text = `${routerName(r)} ${r.state === 'online' ? 'talks to the controller' : 'is not reachable'}; wifi link quality appears here when the router reports it.`;
    linkLayer.append(s('line', {
      x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: `link q-none state-${r.state}`,
      onmouseenter: show(text), onclick: show(text),
    }, s('title', {}, text)));
  }
  svg.append(linkLayer);

  const nodeLayer = s('g', { class: 'nodes' });
  const portal = pos.get(PORTAL);
  const portalText = `This router${own ? ` (${routerName(own)})` : ''}: the portal to the internet and the Trellis controller (home ${overview.home_id})`
    + (own ? `; ${plural(own.devices.length, 'device')}, ${plural(own.services.length, 'service')}`
      + (own.devices.length ? `: devices ${own.devices.join(', ')}` : '')
      + (own.services.length ? `; runs ${own.services.join(', ')}` : '') : '') + '.';
  nodeLayer.append(s('g', {
    class: 'node portal', 'data-router': PORTAL, transform: `translate(${portal.x} ${portal.y})`, tabindex: 0, role: 'img',
    'aria-label': portalText, onmouseenter: show(portalText), onfocus: show(portalText), onclick: show(portalText),
  },
  s('title', {}, portalText),
  s('circle', { r: 34 }),
  s('path', { d: ROUTER_GLYPH, class: 'glyph' }),
  s('path', { d: 'M0 -6v-12M-5 -13l5-5 5 5', class: 'glyph' }),
  s('text', { y: 54, class: 'label' }, 'This router'),
  s('text', { y: 70, class: 'sub' }, own
    ? `portal · ${own.devices.length} dev · ${own.services.length} svc` : 'portal · controller')));

  for (const r of routers) {
    const p = pos.get(r.name);
    const text = routerText(r);
    nodeLayer.append(s('g', {
      class: `node router state-${r.state}`, transform: `translate(${p.x} ${p.y})`, tabindex: 0, role: 'img',
      'aria-label': text, 'data-router': r.name,
      onmouseenter: show(text), onfocus: show(text), onclick: show(text),
    },
    s('title', {}, text),
    s('circle', { r: 26 }),
    s('path', { d: ROUTER_GLYPH, class: 'glyph' }),
    s('text', { y: 44, class: 'label' }, routerName(r)),
    s('text', { y: 60, class: 'sub' }, [STATE_TEXT[r.state] || r.state,
      ...(r.hops != null ? [plural(r.hops, 'hop')] : []),
      `${r.devices.length} dev`, `${r.services.length} svc`].join(' · '))));
  }
  svg.append(nodeLayer);
  svg.append(labelLayer);
  if (routers.length === 0) {
    svg.append(s('text', { x: W / 2, y: H / 2 + 100, class: 'sub hint-text' }, 'No satellites yet: pair one on the Routers page.'));
  }

  const legend = h('ul', { class: 'legend', 'aria-label': 'Map legend' },
    h('li', {}, h('span', { class: 'swatch q-good' }), 'good link'),
    h('li', {}, h('span', { class: 'swatch q-fair' }), 'fair'),
    h('li', {}, h('span', { class: 'swatch q-bad' }), 'weak or unstable'),
    h('li', {}, h('span', { class: 'swatch q-none' }), 'no link data yet'),
    h('li', {}, h('span', { class: 'dot state-online' }), 'online'),
    h('li', {}, h('span', { class: 'dot state-offline' }), 'offline'));

  holder.replaceChildren(svg, details, legend);
  if (focused) {
    const again = svg.querySelector(`[data-router="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}
