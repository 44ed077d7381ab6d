// Traces: each connection through the mesh on a time line — the source router's proxy (its
// connect through the tunnel), the destination router's proxy and the last hop — filterable
// by device and service. From the spans the routers' proxies send with their telemetry.

import { api, h, s, section, emptyState } from '../lib.js';

const ms = (us) => `${(us / 1000).toFixed(1)} ms`;

// One trace's spans as bars on a shared time axis (SVG: no inline styles under the CSP).
function timeline(t) {
  const t0 = Math.min(...t.spans.map((x) => x.start_unix_nanos));
  const t1 = Math.max(...t.spans.map((x) => x.end_unix_nanos), t0 + 1);
  const x = (ns) => (((ns - t0) / (t1 - t0)) * 100).toFixed(2);
  const rows = t.spans.map((sp, i) => {
    const y = i * 14;
    const start = sp.start_unix_nanos;
    const connect = (sp.connect_latency_us || 0) * 1000;
    return [
      s('rect', { class: `tl-span tl-${sp.outcome}`, x: `${x(start)}%`, y, height: 10, width: `${Math.max(0.5, x(sp.end_unix_nanos) - x(start))}%` },
        s('title', {}, `${sp.kind === 'client' ? 'source proxy' : 'destination proxy'} on ${sp.node}: ${ms((sp.end_unix_nanos - start) / 1000)}`)),
      connect ? s('rect', { class: 'tl-connect', x: `${x(start)}%`, y: y + 3, height: 4, width: `${Math.max(0.3, x(start + connect) - x(start))}%` },
        s('title', {}, `${sp.kind === 'client' ? (sp.peer_node ? `tunnel to ${sp.peer_node} and last hop` : 'last hop') : 'last hop'}: ${ms(sp.connect_latency_us)}`)) : null,
    ];
  });
  return s('svg', { class: 'timeline', viewBox: `0 0 100 ${t.spans.length * 14}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `Time line of the connection from ${t.source} to ${t.service}` }, ...rows.flat().filter(Boolean));
}

function hop(sp) {
  const where = sp.kind === 'client'
    ? (sp.peer_node ? `source proxy, tunnel to ${sp.peer_node}` : 'source proxy, last hop local')
    : 'destination proxy';
  const bits = [`${sp.node}: ${where}`, `took ${ms((sp.end_unix_nanos - sp.start_unix_nanos) / 1000)}`];
  if (sp.connect_latency_us != null) bits.push(`connect ${ms(sp.connect_latency_us)}`);
  if (sp.last_hop) bits.push(`last hop ${sp.last_hop}`);
  bits.push(`${sp.bytes_sent} B sent, ${sp.bytes_received} B received`);
  if (sp.error) bits.push(`error: ${sp.error}`);
  return h('li', {}, bits.join(' · '));
}

export function render(root) {
  const device = h('input', { id: 'trace-device', name: 'device', placeholder: 'any device' });
  const service = h('input', { id: 'trace-service', name: 'service', placeholder: 'any service' });
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const load = () => {
    const q = new URLSearchParams({ device: device.value.trim(), service: service.value.trim() });
    api('GET', `/api/ui/traces?${q}`).then((t) => {
      if (!t.items.length) {
        body.replaceChildren(emptyState('No traces yet',
          'Each connection through the mesh shows here as a trace once the routers report it (every 30 s).'));
        return;
      }
      body.replaceChildren(h('p', { class: 'hint' }, t.note),
        h('ul', { class: 'cards', id: 'trace-list' }, t.items.map((it) => h('li', { class: `card trace trace-${it.outcome}`, 'data-trace': it.trace_id },
          h('h3', {}, `${it.source} → ${it.service}`),
          h('p', { class: `badge ${it.outcome}` }, it.outcome === 'ok' ? 'OK' : `${it.outcome.toUpperCase()} (rule ${it.rule})`),
          timeline(it),
          h('ol', { class: 'hops' }, it.spans.map(hop)),
          h('p', { class: 'muted' }, `trace ${it.trace_id}`)))));
    }).catch((e) => body.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message)));
  };
  const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); load(); } },
    h('label', { for: 'trace-device' }, 'Device'), device,
    h('label', { for: 'trace-service' }, 'Service'), service,
    h('button', { type: 'submit' }, 'Show'));
  root.append(section('Recent connections', form, body));
  load();
}
