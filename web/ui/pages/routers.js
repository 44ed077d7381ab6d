// Routers: pair a satellite (code, countdown, progress), rename, remove, and a speed test
// between two routers (like `trellis speedtest`).

import { api, h, section, action, confirmDialog, every, duration, date, clock, routerName, STATE_TEXT, announce, mbit } from '../lib.js';

const STAGES = [
  ['waiting', 'Waiting for the satellite'],
  ['pairing', 'Pairing (checking the code on both sides)'],
  ['enrolled', 'Enrolled: certificate issued'],
  ['meshed', 'In the mesh: following this router'],
];

export function render(root) {
  const pairBox = h('div', { id: 'pairing' });
  const pairButton = h('button', { type: 'button', id: 'pair-button' }, 'Pair a satellite');
  const pairOut = h('p', { class: 'result', role: 'status' });
  const list = h('ul', { class: 'cards', id: 'router-list', 'aria-label': 'Routers' });
  const listError = h('p', { class: 'result', role: 'status' });
  // Removal results live here: the router's own card disappears with it.
  const listOut = h('p', { class: 'result', role: 'status', id: 'routers-result' });
  let stopPairing = null;
  let editing = false;

  pairButton.addEventListener('click', () => action(pairButton, pairOut, 'Making a code…', async () => {
    if (stopPairing) stopPairing();
    const code = await api('POST', '/api/ui/pairing-codes');
    stopPairing = showPairing(pairBox, code);
    return 'A pairing code is ready: use it on the satellite.';
  }));

  const speed = speedTest();
  root.append(
    section('Add a router',
      h('p', {}, 'Install Trellis on the new router, connect it by cable or put it in range, then make a code here and type it on the new router.'),
      pairButton, pairOut, pairBox),
    section('Routers in this home', listOut, list, listError),
    section('Speed test between two routers', speed.element));

  async function refresh() {
    if (editing) return;
    let routers;
    try {
      routers = await api('GET', '/api/ui/routers');
      listError.textContent = '';
    } catch (e) {
      listError.className = 'result error';
      listError.textContent = `Could not refresh: ${e.message}`;
      throw e;
    }
    const shown = routers.filter((r) => r.state !== 'removed');
    const removed = routers.filter((r) => r.state === 'removed');
    if (shown.length === 0) {
      list.replaceChildren(h('li', { class: 'empty' }, 'No satellites yet. Use “Pair a satellite” above to add one.'));
    } else {
      list.replaceChildren(...shown.map((r) => routerCard(r)));
    }
    speed.setRouters(shown);
    if (removed.length) {
      list.append(h('li', { class: 'muted removed-note' }, `Removed (identity revoked): ${removed.map(routerName).join(', ')}. Pair a router again to bring it back.`));
    }
  }

  function routerCard(r) {
    const out = h('p', { class: 'result', role: 'status' });
    const title = h('h3', {}, routerName(r), r.label ? h('span', { class: 'muted' }, ` (${r.name})`) : '',
      r.portal ? [' ', h('span', { class: 'badge' }, 'this router · portal')] : '');
    const rename = h('button', { type: 'button', class: 'quiet', 'aria-label': `Rename ${routerName(r)}` }, 'Rename');
    const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Remove ${routerName(r)}` }, 'Remove');
    const card = h('li', { class: `card router state-${r.state}`, 'data-router': r.name },
      title,
      h('dl', { class: 'facts' },
        h('dt', {}, 'State'), h('dd', {}, h('span', { class: `badge state-${r.state}` }, STATE_TEXT[r.state] || r.state)),
        h('dt', {}, 'Mesh hops'), h('dd', { class: 'hops' }, r.portal ? '0: this is the portal'
          : r.hops == null ? 'no mesh path reported (wired, or no wifi link yet)'
            : `${r.hops} from this router`),
        h('dt', {}, 'Last heard'), h('dd', {}, r.last_seen_s == null ? 'not since the controller started' : `${duration(r.last_seen_s)} ago`),
        h('dt', {}, 'Certificate'), h('dd', {}, r.cert_expires_in_s == null ? '—' : r.cert_expires_in_s > 0 ? `renews itself; expires in ${duration(r.cert_expires_in_s)}` : 'EXPIRED'),
        h('dt', {}, 'Devices'), h('dd', { class: 'devices' }, r.devices.length ? r.devices.join(', ') : 'none seen (its wifi clients, devices on its LAN ports and DHCP leases show here)'),
        h('dt', {}, 'Services'), h('dd', {}, r.services.length ? r.services.join(', ') : 'none found yet'),
        h('dt', {}, 'Paired'), h('dd', {}, date(r.enrolled_at)),
        h('dt', {}, 'Identity'), h('dd', {}, h('code', {}, r.identity))),
      h('div', { class: 'row' }, rename, remove), out);

    rename.addEventListener('click', () => {
      editing = true;
      const id = `label-${r.name}`;
      const input = h('input', { id, value: r.label || '', maxlength: 40, autocomplete: 'off' });
      const save = h('button', { type: 'submit' }, 'Save');
      const cancel = h('button', { type: 'button', class: 'quiet' }, 'Cancel');
      const form = h('form', { class: 'inline' },
        h('label', { for: id }, `New name for ${r.name}`), input,
        h('p', { class: 'hint' }, 'A name for people, like “Attic”. Leave empty to use the router’s own name.'),
        h('div', { class: 'row' }, save, cancel));
      const done = () => { editing = false; refresh(); };
      cancel.addEventListener('click', () => { done(); announce('Rename cancelled.'); });
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const ok = await action(save, out, 'Saving…', async () => {
          await api('PUT', `/api/ui/routers/${encodeURIComponent(r.name)}/label`, { label: input.value });
          return 'Name saved.';
        });
        if (ok) done();
      });
      card.querySelector('.row').replaceWith(form);
      input.focus();
    });

    remove.addEventListener('click', async () => {
      const sure = await confirmDialog(`Remove ${routerName(r)}?`,
        `${routerName(r)} leaves the home: its certificate is revoked and every router stops trusting it. To bring it back later, pair it again with a new code.`,
        'Remove router');
      if (!sure) { remove.focus(); return; }
      const ok = await action(remove, listOut, `Removing ${routerName(r)}…`, async () => {
        const res = await api('DELETE', `/api/ui/routers/${encodeURIComponent(r.name)}`);
        return `${routerName(r)} was removed; its identity is revoked from config version ${res.config_version}.`;
      });
      if (ok) {
        await refresh();
        // The focused button is gone with its card: move focus to the result.
        listOut.setAttribute('tabindex', '-1');
        listOut.focus();
      }
    });
    return card;
  }

  const stopList = every(3000, refresh);
  return () => { stopList(); speed.stop(); if (stopPairing) stopPairing(); };
}

function testLine(t) {
  const what = `${t.from} → ${t.to}`;
  if (t.state === 'done') return `${what}: ${mbit(t.bits_per_second)} (${t.seconds} s)`;
  if (t.state === 'failed') return `${what} failed: ${t.error}`;
  return `${what}: ${t.state}`;
}

// Pick two routers, send for a few seconds, see the throughput the receiver counted.
function speedTest() {
  const from = h('select', { id: 'speed-from' });
  const to = h('select', { id: 'speed-to' });
  const seconds = h('select', { id: 'speed-seconds' }, [5, 10, 20].map((n) => h('option', { value: n }, `${n} s`)));
  const start = h('button', { type: 'submit', id: 'speed-start' }, 'Run speed test');
  const bar = h('progress', { id: 'speed-progress', max: 100, value: 0, hidden: true, 'aria-label': 'Speed test progress' });
  const out = h('p', { class: 'result', role: 'status', id: 'speed-result' });
  const recent = h('ul', { class: 'plain', id: 'speed-recent', 'aria-label': 'Recent speed tests' });
  const form = h('form', { class: 'grid-form', id: 'speed-form' },
    h('div', { class: 'field' }, h('label', { for: 'speed-from' }, 'From (sends)'), from),
    h('div', { class: 'field' }, h('label', { for: 'speed-to' }, 'To (receives)'), to),
    h('div', { class: 'field' }, h('label', { for: 'speed-seconds' }, 'Duration'), seconds),
    h('div', { class: 'submit-cell' }, start), bar, out);
  const element = h('div', {},
    h('p', { class: 'hint' }, 'Measures TCP throughput over the path between two routers (one mesh hop when they are neighbours), encrypted like every Trellis tunnel. On a slow router the processor may be the limit, not the air.'),
    form, h('h3', {}, 'Recent tests'), recent);
  let names = '';
  let stopped = false;
  let follow = null;

  const showRecent = async () => {
    const tests = await api('GET', '/api/ui/speedtests');
    recent.replaceChildren(...(tests.length ? tests.slice(0, 5).map((t) => h('li', { class: `test state-${t.state}` }, testLine(t)))
      : [h('li', { class: 'muted' }, 'No tests yet.')]));
  };
  showRecent().catch(() => {});

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    action(start, out, 'Testing…', async () => {
      let t = await api('POST', '/api/ui/speedtests', { from: from.value, to: to.value, seconds: Number(seconds.value) });
      bar.hidden = false;
      bar.value = 0;
      announce(`Speed test from ${t.from} to ${t.to} started.`);
      // Follow it until it ends; the bar runs with the sending time.
      while (!stopped && (t.state === 'queued' || t.state === 'running')) {
        await new Promise((r) => { follow = setTimeout(r, 500); });
        t = await api('GET', `/api/ui/speedtests/${t.id}`);
        if (t.state === 'running' && t.started_at) {
          const done = (Date.now() / 1000 - t.started_at) / t.seconds;
          bar.value = Math.min(99, Math.max(0, Math.round(done * 100)));
          out.textContent = `${t.from} is sending to ${t.to}…`;
        }
      }
      bar.hidden = true;
      await showRecent();
      if (t.state === 'failed') throw new Error(`${testLine(t)}`);
      return `${t.from} → ${t.to}: ${mbit(t.bits_per_second)}`;
    });
  });

  return {
    element,
    // Keep the choices in step with the routers shown, without resetting a choice made.
    // Only a router that said where its speed-test sink listens can receive one.
    setRouters(routers) {
      const sinks = routers.filter((r) => r.speedtest_sink);
      const now = routers.map((r) => `${r.name}${r.speedtest_sink ? '+' : ''}`).join(',');
      if (now === names) return;
      names = now;
      for (const [sel, list, pick] of [[from, routers, 0], [to, sinks, 1]]) {
        const keep = sel.value;
        sel.replaceChildren(...list.map((r) => h('option', { value: r.name }, routerName(r))));
        if (list.some((r) => r.name === keep)) sel.value = keep;
        else if (list[pick]) sel.value = list[pick].name;
        else if (list[0]) sel.value = list[0].name;
      }
      start.disabled = routers.length < 2 || !sinks.length;
      const why = routers.length < 2 ? 'A speed test needs two routers in the home.'
        : !sinks.length ? 'No router has said where its speed-test sink listens yet.' : '';
      if (why || out.dataset.why) out.textContent = why;
      out.dataset.why = why;
    },
    stop() { stopped = true; clearTimeout(follow); },
  };
}

// Show the code, count down, and follow the pairing by polling until it ends.
function showPairing(box, code) {
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  const port = location.port && location.port !== '7443' ? `:${location.port}` : '';
  const command = `trellis-agent join ${host}${port} ${code.code}`;
  const deadline = Date.now() + code.expires_in_s * 1000;
  const countdown = h('p', { class: 'countdown', id: 'pair-countdown' });
  const steps = h('ol', { class: 'steps', id: 'pair-steps', 'aria-label': 'Pairing progress' },
    STAGES.map(([id, text]) => h('li', { 'data-stage': id }, text)));
  const result = h('p', { class: 'result', role: 'status', id: 'pair-result' });
  box.replaceChildren(h('div', { class: 'pair-code-box' },
    h('p', {}, 'Pairing code (single use):'),
    h('output', { class: 'pair-code', id: 'pair-code', 'aria-label': `Pairing code ${code.code.split('').join(' ')}` }, code.code),
    countdown,
    h('p', {}, 'On the new router, run:'),
    h('pre', {}, h('code', { id: 'pair-command' }, command)),
    steps, result));

  let stopped = false;
  let last = '';
  const mark = (stage) => {
    const order = STAGES.map(([id]) => id);
    const at = order.indexOf(stage);
    for (const li of steps.children) {
      const i = order.indexOf(li.dataset.stage);
      li.className = i < at || stage === 'meshed' ? 'done' : i === at ? 'current' : '';
      if (i === at) li.setAttribute('aria-current', 'step'); else li.removeAttribute('aria-current');
    }
  };
  mark('waiting');
  const tick = () => {
    const left = (deadline - Date.now()) / 1000;
    countdown.textContent = left > 0 ? `Valid for ${clock(left)} more.` : 'This code has expired.';
  };
  tick();
  const timer = setInterval(tick, 1000);
  const stop = every(1000, async () => {
    if (stopped) return;
    const p = await api('GET', `/api/ui/pairing-codes/${encodeURIComponent(code.slot)}`);
    if (p.stage !== last) {
      last = p.stage;
      if (p.stage !== 'expired') mark(p.stage);
      const name = p.node || 'The satellite';
      const text = {
        waiting: 'Waiting for the new router to use the code…',
        pairing: `${name} is pairing…`,
        enrolled: `${name} is enrolled and is connecting to the mesh…`,
        meshed: `${name} joined the home. It now shows on the map.`,
        expired: 'The code expired or was tried too often with a wrong value: make a new code.',
      }[p.stage] || p.stage;
      result.className = p.stage === 'meshed' ? 'result ok' : p.stage === 'expired' ? 'result error' : 'result busy';
      result.textContent = text;
      announce(text);
    }
    if (p.stage === 'enrolled' && p.detail && !result.textContent.includes(p.detail)) {
      result.textContent = `${p.node || 'The satellite'} is enrolled: ${p.detail}.`;
    }
    if (p.stage === 'pairing' && p.tries > 1) {
      result.textContent = `Wrong code typed ${p.tries - 1} time(s) — check the code on the new router (5 tries per code).`;
    }
    if (p.stage === 'meshed' || p.stage === 'expired') {
      clearInterval(timer);
      if (p.stage === 'meshed') countdown.textContent = 'Code used.';
      stopped = true;
      stop();
    }
  });
  return () => { stopped = true; clearInterval(timer); stop(); };
}
