'use strict';
'require view';
'require form';
'require rpc';
'require poll';
'require uci';
'require dom';

// Services -> Trellis: the state of Trellis on this router, a way to the Trellis page (where
// the mesh, pairing and policy live), and the options of /etc/config/trellis. Save & Apply
// goes through rpcd's uci apply; procd's reload trigger on `trellis` then restarts the daemons.

var callStatus = rpc.declare({
	object: 'luci.trellis',
	method: 'status',
	expect: { '': {} }
});

function yesNo(flag, yes, no) {
	return E('span', { 'class': flag ? 'label success' : 'label warning' }, flag ? yes : no);
}

function pageUrl() {
	var port = uci.get('trellis', 'controller', 'port') || '7443';
	var host = window.location.hostname;
	// An IPv6 address needs brackets in a URL.
	if (host.indexOf(':') >= 0 && host.charAt(0) !== '[')
		host = '[' + host + ']';
	return 'https://' + host + ':' + port + '/';
}

function statusRows(st) {
	var rows = [
		[ _('Agent'), st.agent_installed
			? yesNo(st.agent_running, _('running'), _('not running'))
			: _('not installed') ],
		[ _('Controller'), st.controller_installed
			? yesNo(st.controller_running, _('running'), _('not running'))
			: _('not installed (this router is a satellite)') ]
	];
	// `trellis status --json` on the primary router: home_id, config_version, nodes (a
	// count), ca_not_after (unix seconds), agent_api, controller_version.
	var home = st.status || {};
	if (home.home_id)
		rows.push([ _('Home'), String(home.home_id) ]);
	if (home.nodes != null)
		rows.push([ _('Routers'), String(Array.isArray(home.nodes) ? home.nodes.length : home.nodes) ]);
	if (home.config_version != null)
		rows.push([ _('Configuration version'), String(home.config_version) ]);
	if (home.ca_not_after)
		rows.push([ _('Certificate authority valid until'), new Date(home.ca_not_after * 1000).toLocaleDateString() ]);
	if (home.agent_api)
		rows.push([ _('Agent API'), String(home.agent_api) ]);
	if (home.controller_version)
		rows.push([ _('Version'), String(home.controller_version) ]);
	if (st.error)
		rows.push([ _('Problem'), E('span', { 'class': 'label warning' }, st.error) ]);
	return rows.map(function(r) {
		return E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '33%' }, r[0]),
			E('td', { 'class': 'td left' }, r[1])
		]);
	});
}

function renderStatus(node, st) {
	var table = E('table', { 'class': 'table' }, statusRows(st));
	dom.content(node, table);
}

return view.extend({
	load: function() {
		return Promise.all([
			callStatus().catch(function(err) {
				return { error: _('Cannot read the status: %s').format(err.message || err) };
			}),
			uci.load('trellis')
		]);
	},

	render: function(data) {
		var st = data[0] || {};
		var m, s, o;

		var statusNode = E('div', { 'id': 'trellis-status' });
		renderStatus(statusNode, st);
		poll.add(function() {
			return callStatus().then(function(fresh) { renderStatus(statusNode, fresh || {}); });
		}, 10);

		var open = st.controller_installed
			? E('a', {
				'class': 'btn cbi-button cbi-button-action',
				'href': pageUrl(),
				'target': '_blank',
				'rel': 'noopener'
			}, _('Open the Trellis page'))
			: E('em', {}, _('The Trellis page runs on the primary router.'));

		m = new form.Map('trellis', _('Trellis'),
			_('One self-healing wifi mesh across your routers, and a service mesh that protects the things in your home. Pair routers, see the map and set who may talk to whom on the Trellis page.'));

		s = m.section(form.NamedSection, 'main', 'trellis', _('General'));
		o = s.option(form.Flag, 'enabled', _('Enable'));
		o.default = '1';
		o.rmempty = false;
		o = s.option(form.ListValue, 'role', _('Role'),
			_('Auto: the controller runs where the trellis-controller package is installed.'));
		o.value('auto', _('Auto'));
		o.value('controller', _('Primary router (controller)'));
		o.value('agent', _('Satellite (agent only)'));
		o.default = 'auto';
		o = s.option(form.Value, 'data_dir', _('Data directory'),
			_('Identities, the certificate authority and the store. Kept across sysupgrade.'));
		o.datatype = 'directory';
		o.placeholder = '/etc/trellis';
		o = s.option(form.ListValue, 'log_level', _('Log level'));
		[ 'error', 'warn', 'info', 'debug', 'trace' ].forEach(function(l) { o.value(l); });
		o.default = 'info';

		s = m.section(form.NamedSection, 'mesh', 'mesh', _('Mesh'));
		o = s.option(form.Flag, 'enabled', _('Wifi backhaul'),
			_('Form the 802.11s mesh between routers. Turn off when every router has a cable.'));
		o.default = '1';
		o = s.option(form.ListValue, 'band', _('Backhaul band'),
			_('Every router of the home must use the same band.'));
		o.value('2g', _('2.4 GHz'));
		o.value('5g', _('5 GHz'));
		o.value('6g', _('6 GHz'));
		o.default = '5g';
		o = s.option(form.Value, 'radio', _('Radio'),
			_('"auto" picks the first radio on the band; or a radio name (radio1) or phy (phy1).'));
		o.placeholder = 'auto';
		o = s.option(form.Value, 'channel', _('Channel'),
			_('The same on every router. "auto": 1 (2.4 GHz), 36 (5 GHz), 37 (6 GHz).'));
		o.placeholder = 'auto';

		s = m.section(form.NamedSection, 'controller', 'controller', _('Controller'));
		o = s.option(form.Value, 'listen', _('Listen address'));
		o.datatype = 'ipaddr';
		o.placeholder = '0.0.0.0';
		o = s.option(form.Value, 'port', _('Port'), _('Agent API and the Trellis page (HTTPS).'));
		o.datatype = 'port';
		o.placeholder = '7443';
		o = s.option(form.Value, 'cert_ttl_hours', _('Certificate lifetime (hours)'),
			_('24 hours by default; up to 168 for homes where the primary router is often off.'));
		o.datatype = 'range(1,168)';
		o.placeholder = '24';

		s = m.section(form.NamedSection, 'agent', 'agent', _('Agent'));
		o = s.option(form.Value, 'dns_port', _('Mesh DNS port'),
			_('dnsmasq forwards trellis.home.arpa to this port.'));
		o.datatype = 'port';
		o.placeholder = '5354';
		o = s.option(form.Value, 'proxy_outbound_port', _('Proxy outbound port'));
		o.datatype = 'port';
		o.placeholder = '15001';
		o = s.option(form.Value, 'proxy_inbound_port', _('Proxy inbound port'));
		o.datatype = 'port';
		o.placeholder = '15008';
		o = s.option(form.Flag, 'intercept', _('Intercept connections'),
			_('Send the home\'s connections to mesh services through the proxy (nftables).'));
		o.default = '1';
		o = s.option(form.Value, 'metrics_listen', _('Metrics address'),
			_('Prometheus /metrics as address:port, or "off". 127.0.0.1 keeps it on the router.'));
		o.placeholder = '127.0.0.1:9464';
		o = s.option(form.Value, 'speedtest_port', _('Speed-test port'),
			_('Other routers of the home send speed tests here (mutual TLS).'));
		o.datatype = 'port';
		o.placeholder = '15009';

		return m.render().then(function(mapNode) {
			return E('div', {}, [
				E('div', { 'class': 'cbi-section' }, [
					E('h3', {}, _('Status')),
					statusNode,
					E('p', {}, open)
				]),
				mapNode
			]);
		});
	}
});
