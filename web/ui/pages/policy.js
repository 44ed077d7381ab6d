// Policy: device groups (assign devices by MAC), and the rules and "why" panels that come
// with the service mesh.

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
  async function load() {
    try {
      const [g, devices] = await Promise.all([api('GET', '/api/ui/groups'), api('GET', '/api/ui/devices')]);
      // Built-in groups in the order of trust, then the ones people made.
      const rank = { trusted: 0, iot: 1, guest: 2 };
      groups = g.slice().sort((a, b) => (rank[a.name] ?? 9) - (rank[b.name] ?? 9) || a.name.localeCompare(b.name));
      fillGroupSelect(form.querySelector('select'), groups);
      groupsBox.replaceChildren(h('div', { class: 'group-grid' }, groups.map((grp) => groupCard(grp, groups, devices, load))));
    } catch (e) {
      groupsBox.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message));
    }
  }
  load();

  api('GET', '/api/ui/policy').then((p) => {
    const reason = p.reason || 'Rules come with the service mesh.';
    rules.replaceChildren(p.available && p.items.length
      ? h('ul', {}, p.items.map((r) => h('li', {}, JSON.stringify(r))))
      : emptyState('Coming with the service mesh', reason + ' Then you can allow or deny a group to reach a service, try a rule in dry-run mode first, and see its effect here.'));
    why.replaceChildren(emptyState('Coming with the service mesh',
      'Pick a device and a service to see whether it may connect, and which rule decided.'));
  }).catch((e) => rules.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message)));
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
    h('span', { class: 'device-name' }, d.name), ' ', h('code', { class: 'muted' }, d.mac), form);
}

function deviceForm(reload) {
  const out = h('p', { class: 'result', role: 'status', id: 'device-result' });
  const submit = h('button', { type: 'submit', id: 'device-submit' }, 'Save device');
  const form = h('form', { class: 'grid-form', id: 'device-form' },
    h('div', { class: 'field' }, h('label', { for: 'device-mac' }, 'MAC address'),
      h('input', { id: 'device-mac', required: true, placeholder: 'aa:bb:cc:dd:ee:ff', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'device-mac-hint' }),
      h('p', { class: 'hint', id: 'device-mac-hint' }, 'Find it in LuCI under Status → Overview → Associated stations, or on the device.')),
    h('div', { class: 'field' }, h('label', { for: 'device-name' }, 'Name'),
      h('input', { id: 'device-name', required: true, maxlength: 64, placeholder: 'Living-room TV', autocomplete: 'off' })),
    h('div', { class: 'field' }, h('label', { for: 'device-group' }, 'Group'), h('select', { id: 'device-group' })),
    h('div', { class: 'field submit-cell' }, submit), out);
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
