// Home: warnings first (what needs a person), then the live map and a short summary.

import { api, h, section, every, routerName, STATE_TEXT } from '../lib.js';
import { drawMap } from '../map.js';

export function render(root) {
  const warnings = h('div', { id: 'warnings' });
  const mapHolder = h('div', { class: 'map-holder', id: 'map-holder' }, h('p', { class: 'muted' }, 'Loading the map…'));
  const summary = h('dl', { class: 'facts', id: 'summary' });
  const error = h('p', { class: 'result', role: 'status' });
  root.append(
    warnings,
    section('Your mesh', mapHolder, error),
    section('At a glance', summary));

  return every(5000, async () => {
    let o;
    try {
      o = await api('GET', '/api/ui/overview');
      error.className = 'result';
      error.textContent = '';
    } catch (e) {
      error.className = 'result error';
      error.textContent = `Could not refresh: ${e.message}`;
      throw e;
    }
    drawWarnings(warnings, o.warnings);
    drawMap(mapHolder, o);
    // Satellites: every router but the one this page runs on.
    const routers = o.routers.filter((r) => r.state !== 'removed' && r.name !== o.portal);
    const online = routers.filter((r) => r.state === 'online').length;
    summary.replaceChildren(
      h('dt', {}, 'Satellites'), h('dd', {}, routers.length === 0
        ? h('span', {}, 'none yet — ', h('a', { href: '#/routers' }, 'pair one'))
        : `${online} of ${routers.length} online`),
      h('dt', {}, 'Routers'), h('dd', {}, routers.length === 0 ? '—'
        : routers.map((r) => `${routerName(r)} (${STATE_TEXT[r.state]})`).join(', ')),
      h('dt', {}, 'Home ID'), h('dd', {}, h('code', {}, o.home_id)),
      h('dt', {}, 'Config version'), h('dd', {}, String(o.config_version)),
      h('dt', {}, 'Controller'), h('dd', {}, o.controller_version));
  });
}

export function drawWarnings(holder, warnings) {
  if (!warnings.length) {
    holder.replaceChildren();
    return;
  }
  holder.replaceChildren(h('section', { class: 'warnings', 'aria-labelledby': 'warn-title' },
    h('h2', { id: 'warn-title' }, warnings.length === 1 ? '1 thing needs attention' : `${warnings.length} things need attention`),
    h('ul', {}, warnings.map((w) => h('li', { class: `warn ${w.level}` },
      h('strong', {}, w.level === 'error' ? 'Problem: ' : 'Warning: '), w.message)))));
}
