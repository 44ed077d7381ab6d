// Wifi: the home's networks, set once here and broadcast by every router — home (trusted),
// iot (2.4 GHz by default, never steered) and guest (kept apart). A passphrase is write-only:
// the page shows that one is set, never what it is. On the first setup the page offers to
// take the primary router's own network name and key, so no device has to join again.

import { api, h, section, action, confirmDialog } from '../lib.js';

const KINDS = [
  ['home', 'Home', 'Your own devices: trusted, they reach every home service.'],
  ['iot', 'Things', 'Cameras, plugs, thermostats: 2.4 GHz by default, never steered, they reach only what the policy grants.'],
  ['guest', 'Guests', 'Visitors: the internet and only what the policy grants guests, never the routers or the LAN.'],
];
const SECURITY = [['wpa2_wpa3', 'WPA2 and WPA3 (every device)'], ['wpa3', 'WPA3 only (newer devices)']];
const BANDS = [['both', '2.4 and 5 GHz'], ['only2g', '2.4 GHz only'], ['only5g', '5 GHz only']];

function select(id, options, value) {
  return h('select', { id }, options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
}

// One network's card: what is set, and the form to change it.
function networkCard(kind, title, help, net, reload) {
  const id = (f) => `wifi-${kind}-${f}`;
  const ssid = h('input', { id: id('ssid'), name: 'ssid', required: true, maxlength: 32, autocomplete: 'off', value: net ? net.ssid : '' });
  const pass = h('input', {
    id: id('pass'), name: 'passphrase', type: 'password', autocomplete: 'new-password', minlength: 8, maxlength: 63,
    required: !net, 'aria-describedby': id('pass-hint'),
  });
  const security = select(id('security'), SECURITY, net ? net.security : 'wpa2_wpa3');
  const bands = select(id('bands'), BANDS, net ? net.bands : (kind === 'iot' ? 'only2g' : 'both'));
  const save = h('button', { type: 'submit', id: id('save') }, net ? 'Save' : `Add the ${title.toLowerCase()} network`);
  const out = h('p', { class: 'result', role: 'status', id: id('result') });
  const form = h('form', { class: 'grid-form', id: id('form') },
    h('div', { class: 'field' }, h('label', { for: id('ssid') }, 'Network name (SSID)'), ssid),
    h('div', { class: 'field' }, h('label', { for: id('pass') }, 'Password'), pass,
      h('p', { class: 'hint', id: id('pass-hint') }, net ? 'Set. Leave empty to keep it; 8 to 63 characters to change it.' : '8 to 63 characters.')),
    h('div', { class: 'field' }, h('label', { for: id('security') }, 'Security'), security),
    h('div', { class: 'field' }, h('label', { for: id('bands') }, 'Bands'), bands),
    h('div', { class: 'submit-cell' }, save), out);
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    action(save, out, 'Saving…', async () => {
      const body = { ssid: ssid.value, security: security.value, bands: bands.value };
      if (pass.value) body.passphrase = pass.value;
      const c = await api('PUT', `/api/ui/wifi/${kind}`, body);
      pass.value = '';
      const said = c.changed ? `Saved: every router broadcasts “${ssid.value}” within seconds (config v${c.config_version}).` : 'Nothing changed.';
      setTimeout(() => reload(said), 0);
      return said;
    });
  });
  const card = h('li', { class: 'card', 'data-network': kind },
    h('h3', {}, title, net ? h('span', { class: 'muted' }, ` — “${net.ssid}”`) : h('span', { class: 'muted' }, ' — not set')),
    h('p', { class: 'hint' }, help), form);
  if (net && kind !== 'home') {
    const del = h('button', { type: 'button', class: 'danger quiet', id: id('remove') }, `Stop the ${title.toLowerCase()} network`);
    del.addEventListener('click', async () => {
      if (!await confirmDialog(`Stop “${net.ssid}”?`, 'Every router stops broadcasting it; its devices lose the wifi.', 'Stop it')) return;
      await action(del, out, 'Stopping…', async () => {
        await api('DELETE', `/api/ui/wifi/${kind}`);
        const said = `Stopped: no router broadcasts “${net.ssid}” any more.`;
        setTimeout(() => reload(said), 0);
        return said;
      });
    });
    card.append(del);
  }
  return card;
}

function offerBox(offer, reload) {
  const take = h('button', { type: 'button', id: 'wifi-take-offer' }, `Use “${offer.ssid}”`);
  const out = h('p', { class: 'result', role: 'status', id: 'wifi-offer-result' });
  take.addEventListener('click', () => action(take, out, 'Taking it…', async () => {
    const c = await api('POST', '/api/ui/wifi/import');
    const said = `“${offer.ssid}” is the home network now (config v${c.config_version}).`;
    setTimeout(() => reload(said), 0);
    return said;
  }));
  return h('div', { class: 'warnings', id: 'wifi-offer' },
    h('p', {}, `This router already broadcasts “${offer.ssid}”. Use its name and password for the home network, so no device has to join again?`),
    take, out);
}

export function render(root) {
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  root.append(section('Wifi networks', h('p', { class: 'hint' },
    'Set once here, broadcast by every router with fast roaming between them.'), body));
  // `said`: what the last change did; it stays on the page after the cards are redrawn.
  const load = (said) => api('GET', '/api/ui/wifi').then((w) => {
    const nets = new Map(w.networks.map((n) => [n.kind, n]));
    body.replaceChildren(
      ...(said ? [h('p', { class: 'result', role: 'status', id: 'wifi-said' }, said)] : []),
      ...(w.offer ? [offerBox(w.offer, load)] : []),
      h('ul', { class: 'cards', id: 'wifi-networks' },
        KINDS.map(([kind, title, help]) => networkCard(kind, title, help, nets.get(kind), load))),
      w.mobility_domain ? h('p', { class: 'muted', id: 'wifi-roaming' }, `Fast roaming (802.11r) mobility domain ${w.mobility_domain}.`) : '');
  }).catch((e) => body.replaceChildren(h('p', { class: 'result error', role: 'alert' }, e.message)));
  load();
}
