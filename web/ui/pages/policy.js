// Policy: device groups (assign devices by MAC), rules (allow/deny, dry run), and "why":
// pick a device and a service, see the decision and the rule that made it.

import { api, h, section, action, emptyState } from '../lib.js';

export function render(root) {
  const groupsBox = h('div', { id: 'groups' }, h('p', { class: 'muted' }, 'Loading…'));
  const form = deviceForm(() => load());
  const rules = h('div', { id: 'rules' });
  const why = h('div', { id: 'why' });
  root.append(
    section('Device groups',
      h('p', {}, 'Groups decide what a device may reach: trusted devices reach home services, IoT devices only what they are granted, guests none.'),
      groupsBox),
    section('Add or move a device', form),
    section('Rules', rules),
    section('Why was it allowed or denied?', why));

  let groups = [];
  // Re-read groups and devices; returns the groups for the rule form.
  async function load() {
    try {
      const [g, devices] = await Promise.all([api('GET', '/api/ui/groups'), api('GET', '/api/ui/devices')]);
      // Built-in groups in the order of trust, then the ones people made.
      const rank = { trusted: 0, iot: 1, guest: 2 };
      groups = g.slice().sort((a, b) => (rank[a.name] ?? 9) - (rank[b.name] ?? 9) || a.name.localeCompare(b.name));
      fillGroupSelect(form.querySelector('select'), groups);
      fillSeenDevices(form, devices.filter((d) => d.group == null));
      groupsBox.replaceChildren(h('div', { class: 'group-grid' }, groups.map((grp) => groupCard(grp, groups, devices, load))));
      return groups;
    } catch (e) {
      groupsBox.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message));
    }
  }
  const loadRules = async () => {
    try {
      const p = await api('GET', '/api/ui/policy');
      drawRules(rules, p, groups, loadRules);
    } catch (e) {
      rules.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message));
    }
  };
  load().then(loadRules);
  why.replaceChildren(whyForm());
}

function sourceText(s) {
  if (s === 'any') return 'anyone';
  if (s.group) return `group ${s.group}`;
  if (s.device) return `device ${s.device}`;
  if (s.identity) return s.identity;
  return JSON.stringify(s);
}

function targetText(to) {
  if (!to.length) return 'every service';
  return to.map((m) => `${m.service || 'any service'}${m.ports && m.ports.length ? ':' + m.ports.join(',') : ''}`).join(', ');
}

function drawRules(holder, p, groups, reload) {
  const list = p.items.length
    ? h('ul', { class: 'rules', id: 'rule-list' }, p.items.map((r) => {
      const out = h('span', { class: 'result', role: 'status' });
      const del = h('button', { type: 'button', class: 'quiet', 'aria-label': `Remove rule ${r.name}` }, 'Remove');
      del.addEventListener('click', async () => {
        const ok = await action(del, out, 'Removing…', async () => {
          await api('DELETE', `/api/ui/policy/rules/${encodeURIComponent(r.name)}`);
          return 'Rule removed.';
        });
        if (ok) reload();
      });
      return h('li', { 'data-rule': r.name },
        h('span', { class: `badge action-${r.action}` }, r.action === 'deny' ? 'Deny' : 'Allow'), ' ',
        h('strong', {}, r.name), ': ', r.sources.map(sourceText).join(', '), ' → ', targetText(r.to || []),
        r.dry_run ? h('span', { class: 'muted' }, ' (dry run: only logs)') : '', ' ', del, out);
    }))
    : emptyState('No rules yet', p.reason);
  holder.replaceChildren(list, ruleForm(groups, reload));
}

function ruleForm(groups, reload) {
  const out = h('p', { class: 'result', role: 'status', id: 'rule-result' });
  const submit = h('button', { type: 'submit', id: 'rule-submit' }, 'Add rule');
  const field = (id, label, control, hint) => h('div', { class: 'field' }, h('label', { for: id }, label), control,
    hint && h('p', { class: 'hint', id: `${id}-hint` }, hint));
  const form = h('form', { class: 'grid-form', id: 'rule-form', 'aria-label': 'Add a rule' },
    field('rule-name', 'Rule name', h('input', { id: 'rule-name', required: true, maxlength: 64, placeholder: 'iot-printing', autocomplete: 'off' })),
    field('rule-action', 'Action', h('select', { id: 'rule-action' }, h('option', { value: 'allow' }, 'Allow'), h('option', { value: 'deny' }, 'Deny'))),
    field('rule-from', 'From group', h('select', { id: 'rule-from' }, groups.map((g) => h('option', { value: g.name }, g.name)), h('option', { value: '*' }, 'anyone'))),
    field('rule-to', 'To service', h('input', { id: 'rule-to', placeholder: 'printer or printer:631', autocomplete: 'off', 'aria-describedby': 'rule-to-hint' }), 'Empty means every service.'),
    h('div', { class: 'field checkbox' }, h('input', { id: 'rule-dry', type: 'checkbox' }), h('label', { for: 'rule-dry' }, 'Dry run (log what it would deny, change nothing)')),
    h('div', { class: 'field submit-cell' }, submit), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = (id) => form.querySelector(id).value.trim();
    const from = v('#rule-from');
    const to = v('#rule-to');
    const [service, port] = to.split(':');
    const rule = {
      name: v('#rule-name'),
      action: v('#rule-action'),
      sources: [from === '*' ? 'any' : { group: from }],
      to: to ? [{ service, ports: port ? [Number(port)] : [] }] : [],
      dry_run: form.querySelector('#rule-dry').checked,
    };
    const ok = await action(submit, out, 'Saving the rule…', async () => {
      if (port && !(Number(port) > 0 && Number(port) < 65536)) throw new Error(`${port} is not a port: use a number from 1 to 65535.`);
      await api('POST', '/api/ui/policy/rules', rule);
      return `Rule ${rule.name} is in force${rule.dry_run ? ' (dry run)' : ''}; routers get it with the next config.`;
    });
    if (ok) {
      const keep = out.textContent;
      await reload();
      const again = document.getElementById('rule-result');
      if (again) { again.className = 'result ok'; again.textContent = keep; }
    }
  });
  return form;
}

function whyForm() {
  const out = h('div', { id: 'why-result', role: 'status', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', id: 'why-submit' }, 'Explain');
  const form = h('form', { class: 'grid-form', id: 'why-form' },
    h('div', { class: 'field' }, h('label', { for: 'why-source' }, 'Device'),
      h('input', { id: 'why-source', required: true, placeholder: 'Thermostat, a MAC or an IP', autocomplete: 'off' })),
    h('div', { class: 'field' }, h('label', { for: 'why-target' }, 'Service (and port)'),
      h('input', { id: 'why-target', required: true, placeholder: 'nas:445', autocomplete: 'off' })),
    h('div', { class: 'field submit-cell' }, submit));
  const status = h('p', { class: 'result', role: 'status' });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const source = form.querySelector('#why-source').value.trim();
    const target = form.querySelector('#why-target').value.trim();
    out.replaceChildren();
    await action(submit, status, 'Asking the policy…', async () => {
      const q = `source=${encodeURIComponent(source)}&target=${encodeURIComponent(target)}`;
      const w = await api('GET', `/api/ui/why?${q}`);
      out.replaceChildren(h('div', { class: `verdict ${w.allowed ? 'allowed' : 'denied'}` },
        h('p', { class: 'verdict-title' }, w.allowed ? 'Allowed' : 'Denied', ' — ', w.rule),
        h('p', {}, w.explanation)));
      return w.allowed ? 'Allowed.' : 'Denied.';
    });
    // The verdict box (a live region) says it; a second, green "Denied." would only confuse.
    if (out.childElementCount) { status.className = 'result'; status.textContent = ''; }
  });
  return h('div', {}, h('p', {}, 'Pick a device and a service to see whether it may connect, and which rule decided.'), form, status, out);
}

function fillGroupSelect(select, groups) {
  const current = select.value;
  select.replaceChildren(...groups.map((g) => h('option', { value: g.name }, g.name)));
  if (current) select.value = current;
}

function groupCard(group, groups, devices, reload) {
  const members = devices.filter((d) => d.group === group.name);
  const id = `grp-${group.name}`;
  return h('section', { class: 'group card', 'aria-labelledby': id, 'data-group': group.name },
    h('h3', { id }, group.name, group.builtin ? '' : h('span', { class: 'muted' }, ' (yours)')),
    members.length === 0
      ? h('p', { class: 'muted' }, 'No devices.')
      : h('ul', { class: 'devices' }, members.map((d) => deviceRow(d, groups, reload))));
}

function deviceRow(d, groups, reload) {
  const id = `move-${d.mac.replace(/:/g, '')}`;
  const out = h('span', { class: 'result', role: 'status' });
  const select = h('select', { id },
    groups.map((g) => h('option', { value: g.name, selected: g.name === d.group }, g.name)));
  const move = h('button', { type: 'submit', class: 'quiet' }, 'Move');
  const form = h('form', { class: 'row tight' },
    h('label', { for: id, class: 'visually-hidden' }, `Group of ${d.name}`), select, move, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ok = await action(move, out, 'Moving…', async () => {
      await api('POST', '/api/ui/devices', { mac: d.mac, name: d.name, group: select.value });
      return `${d.name} is now in ${select.value}.`;
    });
    if (ok) reload();
  });
  return h('li', { 'data-mac': d.mac },
    h('span', { class: 'device-name' }, d.name), ' ', h('code', { class: 'muted' }, d.mac),
    h('span', { class: 'muted where' }, d.router ? ` · on ${d.router}` : ' · not seen now'), form);
}

// What a device is, for a person choosing it: name, router, signal.
function seenText(d) {
  const where = d.router ? `on ${d.router}` : 'not seen now';
  const link = d.signal_dbm != null ? `, wifi ${d.signal_dbm} dBm` : d.port ? `, port ${d.port}` : '';
  return `${d.name} (${where}${link})`;
}

// The devices routers see that are in no group yet: a pick list for the MAC field, so a
// person chooses "lab-phone (on attic)" instead of looking up a MAC.
function fillSeenDevices(form, seen) {
  const list = form.querySelector('#seen-devices');
  list.replaceChildren(...seen.map((d) => h('option', { value: d.mac, label: seenText(d) }, seenText(d))));
  const hint = form.querySelector('#device-mac-hint');
  hint.textContent = seen.length
    ? `Pick one of the ${seen.length} device${seen.length === 1 ? '' : 's'} your routers see, or type a MAC.`
    : 'Find it in LuCI under Status → Overview → Associated stations, or on the device.';
  form.seen = seen;
}

function deviceForm(reload) {
  const out = h('p', { class: 'result', role: 'status', id: 'device-result' });
  const submit = h('button', { type: 'submit', id: 'device-submit' }, 'Save device');
  const form = h('form', { class: 'grid-form', id: 'device-form' },
    h('div', { class: 'field' }, h('label', { for: 'device-mac' }, 'MAC address'),
      h('input', { id: 'device-mac', required: true, placeholder: 'aa:bb:cc:dd:ee:ff', autocomplete: 'off', spellcheck: 'false', list: 'seen-devices', 'aria-describedby': 'device-mac-hint' }),
      h('datalist', { id: 'seen-devices' }),
      h('p', { class: 'hint', id: 'device-mac-hint' }, 'Find it in LuCI under Status → Overview → Associated stations, or on the device.')),
    h('div', { class: 'field' }, h('label', { for: 'device-name' }, 'Name'),
      h('input', { id: 'device-name', required: true, maxlength: 64, placeholder: 'Living-room TV', autocomplete: 'off' })),
    h('div', { class: 'field' }, h('label', { for: 'device-group' }, 'Group'), h('select', { id: 'device-group' })),
    h('div', { class: 'field submit-cell' }, submit), out);
  // Picking a seen device fills in the name it gave DHCP, if the name is still empty.
  form.querySelector('#device-mac').addEventListener('change', (ev) => {
    const picked = (form.seen || []).find((d) => d.mac === ev.target.value.trim().toLowerCase());
    const name = form.querySelector('#device-name');
    if (picked && !name.value && picked.name !== picked.mac) name.value = picked.name;
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const mac = form.querySelector('#device-mac').value.trim();
    const name = form.querySelector('#device-name').value.trim();
    const group = form.querySelector('#device-group').value;
    const ok = await action(submit, out, 'Saving…', async () => {
      await api('POST', '/api/ui/devices', { mac, name, group });
      return `${name} is in the ${group} group.`;
    });
    if (ok) {
      form.querySelector('#device-mac').value = '';
      form.querySelector('#device-name').value = '';
      reload();
    }
  });
  return form;
}
