'use strict';
'require view';
'require form';

// The same rules as `ntpgate check` (src/config/), so that what the form
// accepts the daemon accepts.

function range(min, max, integer) {
	return function(section_id, value) {
		if (value == null || value === '')
			return true;
		var n = Number(value);
		if (isNaN(n) || n < min || n > max || (integer && Math.floor(n) != n))
			return integer ? _('A whole number from %d to %d').format(min, max)
				: _('A number from %s to %s').format(String(min), String(max));
		return true;
	};
}

function isIPv6(text) {
	return /^[0-9a-fA-F:.]+$/.test(text) && text.indexOf(':') >= 0 && text.split('::').length <= 2;
}

// An IPv4 address as the daemon reads it (Rust's std): four numbers
// 0-255, without leading zeros; its four numbers, or null.
function ipv4Parts(text) {
	var parts = text.split('.');
	if (parts.length != 4 || !parts.every(function(p) { return /^(0|[1-9][0-9]{0,2})$/.test(p) && +p <= 255; }))
		return null;
	return parts.map(Number);
}

// The 16-bit groups of one side of '::': hex groups of 1-4 digits, the
// last one perhaps an IPv4 address (two groups); null if malformed.
function ipv6Side(text) {
	if (text === '')
		return [];
	var groups = [], parts = text.split(':');
	for (var i = 0; i < parts.length; i++) {
		var v4 = (i == parts.length - 1 && parts[i].indexOf('.') >= 0) ? ipv4Parts(parts[i]) : null;
		if (v4)
			groups.push(v4[0] * 256 + v4[1], v4[2] * 256 + v4[3]);
		else if (/^[0-9a-fA-F]{1,4}$/.test(parts[i]))
			groups.push(parseInt(parts[i], 16));
		else
			return null;
	}
	return groups;
}

// An IPv6 address as the daemon reads it: eight groups, or fewer around
// one '::' that stands for at least one zero group; its groups, or null.
function ipv6Groups(text) {
	var sides = text.split('::');
	var head = ipv6Side(sides[0]);
	if (sides.length == 1)
		return (head && head.length == 8) ? head : null;
	var tail = (sides.length == 2) ? ipv6Side(sides[1]) : null;
	// An IPv4 address may only end the address.
	if (!head || !tail || sides[0].indexOf('.') >= 0 || head.length + tail.length > 7)
		return null;
	var zeros = [];
	while (head.length + zeros.length + tail.length < 8)
		zeros.push(0);
	return head.concat(zeros, tail);
}

// An address as the daemon's parser reads it: { v4, parts }, or null.
function address(text) {
	var v4 = ipv4Parts(text), v6 = v4 ? null : ipv6Groups(text);
	return v4 ? { v4: true, parts: v4 } : (v6 ? { v4: false, parts: v6 } : null);
}

function sameAddress(a, b) {
	return a.v4 == b.v4 && a.parts.join() == b.parts.join();
}

// '::' takes the port on every address, '0.0.0.0' on every IPv4 one
// (src/config/server.rs `covers`).
function covers(wide, narrow) {
	return wide.parts.every(function(p) { return p == 0; }) && (!wide.v4 || narrow.v4);
}

// A listen address, checked against the rest of the list as `ntpgate
// check` does: the daemon refuses a repeated address, and an address
// beside '::' (or an IPv4 one beside '0.0.0.0'), which it could not bind.
// The list itself drops an entry whose text is in it already.
function validateListen(section_id, value) {
	if (value == null || value === '')
		return true;
	var addr = address(value);
	if (!addr)
		return _('"%s" is not an IPv4 or IPv6 address').format(value);
	var others = (this.formvalue(section_id) || []).filter(function(v) { return v !== value; });
	for (var i = 0; i < others.length; i++) {
		var other = address(others[i]);
		if (!other)
			continue;
		if (sameAddress(other, addr))
			return _('"%s" is in the list already, as "%s"').format(value, others[i]);
		if (covers(other, addr) || covers(addr, other)) {
			var wide = covers(other, addr) ? others[i] : value;
			return _('"%s" already serves every %s address on this port: list it alone').format(
				wide, (covers(other, addr) ? other : addr).v4 ? 'IPv4' : 'IPv4 and IPv6');
		}
	}
	return true;
}

// An allow or deny entry as the daemon reads it (src/net.rs Cidr::parse):
// an address, or ADDRESS/LENGTH with a length up to 32 for IPv4 (an
// IPv4-mapped IPv6 address counts as IPv4) and 128 for IPv6.
function validatePrefix(section_id, value) {
	if (value == null || value === '')
		return true;
	var slash = value.indexOf('/');
	var text = (slash < 0) ? value : value.slice(0, slash);
	var addr = address(text);
	if (!addr)
		return _('"%s" is not an IPv4 or IPv6 address').format(text);
	if (slash >= 0) {
		var mapped = !addr.v4 && addr.parts.slice(0, 6).join() == '0,0,0,0,0,65535';
		var max = (addr.v4 || mapped) ? 32 : 128, length = value.slice(slash + 1);
		// Rust's number parser takes a leading '+'.
		if (!/^\+?[0-9]+$/.test(length) || +length > max)
			return _('"%s" is not a prefix length (0-%d)').format(length, max);
	}
	return true;
}

// HOST, HOST:PORT, IPV6, [IPV6] or [IPV6]:PORT, as parse_upstream reads it.
// Pool names are accepted, as `ntpgate check` accepts them with a warning;
// the status page's pool checklist flags them.
function validateUpstream(section_id, value) {
	if (value == null || value === '')
		return true;
	var host = value, port = null, m;
	if ((m = value.match(/^\[([^\]]*)\](?::(.*))?$/)) != null) {
		if (!isIPv6(m[1]))
			return _('"%s" is not an IPv6 address').format(m[1]);
		host = m[1];
		port = (m[2] === undefined) ? null : m[2];
	}
	else if (isIPv6(value)) {
		host = value;
	}
	else if (value.indexOf(':') >= 0) {
		host = value.split(':')[0];
		port = value.split(':').slice(1).join(':');
	}
	if (port !== null && !(/^[0-9]+$/.test(port) && +port >= 1 && +port <= 65535))
		return _('"%s" is not a port number (1-65535)').format(port);
	if (host.length == 0 || host.length > 253 || !/^[A-Za-z0-9.:-]+$/.test(host))
		return _('Not a host name or address');
	return true;
}

// An interface identifier such as ::50: it must fit in the 64-bit host part.
function validateSuffix(section_id, value) {
	if (value == null || value === '')
		return true;
	if (!isIPv6(value) || value.indexOf('::') != 0)
		return _('An IPv6 suffix such as ::50');
	var groups = value.slice(2).split(':').filter(function(g) { return g !== ''; });
	if (groups.length == 0)
		return _('The suffix ::0 is the subnet-router anycast address');
	if (groups.length > 4 || groups.some(function(g) { return !/^[0-9a-fA-F]{1,4}$/.test(g); }))
		return _('Longer than the 64-bit host part of a LAN prefix');
	return true;
}

// nftables names: a letter, then letters, digits, _ . -
function validateNftName(section_id, value) {
	if (!value)
		return true;
	return (/^[A-Za-z][A-Za-z0-9_.-]*$/.test(value) && value.length < 256) ? true : _('Not an nftables name');
}

function validateGlobal(section_id, value) {
	if (value == null || value === '')
		return true;
	if (!isIPv6(value))
		return _('Not an IPv6 address');
	var first = parseInt(value.split(':')[0] || '0', 16);
	if ((first & 0xe000) != 0x2000)
		return _('Not a global IPv6 address (the WAN cannot reach it)');
	return true;
}

// UCI booleans as the daemon reads them: 1/0, yes/no, on/off, true/false,
// enabled/disabled. form.Flag knows only '1' and '0': it would show 'yes'
// unchecked, and Save would write the opposite of what the file meant (or
// drop the option when unchecked is its default).
function loadBool(section_id) {
	var v = form.Flag.prototype.load.call(this, section_id);
	if ([ '1', 'yes', 'on', 'true', 'enabled' ].indexOf(v) >= 0)
		return '1';
	if ([ '0', 'no', 'off', 'false', 'disabled' ].indexOf(v) >= 0)
		return '0';
	return v;
}

return view.extend({
	render: function() {
		var m, s, o;

		m = new form.Map('ntpgate', _('NTP server'),
			_('The NTP server of this router, its upstream servers, and the firewall pinholes that open it and LAN NTP servers to the world. Save & Apply reloads the daemon; a configuration it refuses is logged and the running one kept.'));

		s = m.section(form.NamedSection, 'main', 'server');
		s.addremove = false;
		s.tab('server', _('Server'));
		s.tab('upstreams', _('Upstream servers'));
		s.tab('ratelimit', _('Rate limiting'));
		s.tab('advanced', _('Advanced'));

		o = s.taboption('server', form.Flag, 'enabled', _('Enable the NTP server'));
		o.default = '1';
		o.rmempty = false;

		o = s.taboption('server', form.DynamicList, 'listen', _('Listen addresses'),
			_('"::" is every address, IPv4 and IPv6.'));
		// No LuCI datatype: validation.js's ipaddr refuses addresses the
		// daemon takes ("::1:2:3:4:5:6:7"); validateListen reads them as it does.
		o.validate = validateListen;
		o.placeholder = '::';

		o = s.taboption('server', form.Value, 'port', _('Port'));
		o.datatype = 'port';
		o.placeholder = '123';
		o.validate = range(1, 65535, true);

		o = s.taboption('server', form.Flag, 'serve_wan', _('Serve the WAN'),
			_('Open the router\'s NTP port to the internet: needed to join the NTP Pool.'));

		o = s.taboption('server', form.DynamicList, 'allow', _('Allow only'),
			_('Prefixes allowed to ask; empty allows everyone.'));
		o.validate = validatePrefix;

		o = s.taboption('server', form.DynamicList, 'deny', _('Deny'),
			_('Prefixes never answered.'));
		o.validate = validatePrefix;

		o = s.taboption('upstreams', form.DynamicList, 'upstream', _('Upstream servers'),
			_('At least four, near you, that do not smear leap seconds. Without any, primary servers of PTB and Netnod are used.'));
		o.validate = validateUpstream;

		o = s.taboption('upstreams', form.Value, 'min_sources', _('Minimum agreeing servers'));
		o.placeholder = '3';
		o.validate = range(1, 16, true);

		o = s.taboption('upstreams', form.Flag, 'clock_control', _('Steer the clock'),
			_('Off: measure and serve only, never change the clock.'));
		o.default = '1';

		o = s.taboption('upstreams', form.Value, 'makestep', _('Step threshold (s)'),
			_('Step the clock at start when it is off by more than this; 0 never steps.'));
		o.placeholder = '0.128';
		o.validate = range(0, 1e6, false);

		o = s.taboption('upstreams', form.Value, 'max_distance', _('Maximum root distance (s)'));
		o.placeholder = '1';
		o.validate = range(0.001, 16, false);

		o = s.taboption('ratelimit', form.Flag, 'ratelimit', _('Rate limit clients'));
		o.default = '1';

		o = s.taboption('ratelimit', form.Value, 'ratelimit_interval', _('Average interval (s)'));
		o.placeholder = '2';
		o.validate = range(0.001, 3600, false);
		o.depends('ratelimit', '1');

		o = s.taboption('ratelimit', form.Value, 'ratelimit_burst', _('Burst'));
		o.placeholder = '16';
		o.validate = range(1, 1024, true);
		o.depends('ratelimit', '1');

		o = s.taboption('ratelimit', form.Value, 'ratelimit_leak', _('Leak (answer 1 in 2^N limited requests)'));
		o.placeholder = '2';
		o.validate = range(0, 16, true);
		o.depends('ratelimit', '1');

		o = s.taboption('ratelimit', form.Flag, 'ratelimit_kod', _('Send RATE kiss-o\'-death'));
		o.depends('ratelimit', '1');

		o = s.taboption('ratelimit', form.Value, 'ratelimit_prefix6', _('IPv6 prefix length per client'));
		o.placeholder = '64';
		o.validate = range(16, 128, true);
		o.depends('ratelimit', '1');

		o = s.taboption('advanced', form.Value, 'local_stratum', _('Serve the local clock at stratum'),
			_('Labs only: a pool server must never use this.'));
		o.validate = range(1, 15, true);

		o = s.taboption('advanced', form.Value, 'pinhole_timeout', _('Pinhole timeout (s)'),
			_('Holes close by themselves this long after the daemon stops.'));
		o.placeholder = '60';
		o.validate = range(3, 3600, true);

		o = s.taboption('advanced', form.Value, 'driftfile', _('Drift file'));
		o.placeholder = '/var/lib/ntpgate/drift';

		o = s.taboption('advanced', form.Value, 'ubus_socket', _('ubus socket'));
		o.placeholder = '/var/run/ubus/ubus.sock';

		s = m.section(form.TypedSection, 'firewall', _('Firewall without fw4'),
			_('Only for systems without fw4: the nftables table the pinholes live in, and whether ntpgate adds its own sets, chain and rules there.'));
		s.anonymous = true;
		s.addremove = true;

		o = s.option(form.Value, 'family', _('Family'));
		o.placeholder = 'inet';
		o.validate = function(section_id, value) {
			return (!value || value == 'inet' || value == 'ip6') ? true : _('inet or ip6');
		};

		o = s.option(form.Value, 'table', _('Table'));
		o.placeholder = 'fw4';
		o.validate = validateNftName;

		o = s.option(form.Flag, 'create', _('Add our sets, chain and rules to the table'));

		[ [ 'forward_chain', _('Forward chain'), 'forward' ], [ 'input_chain', _('Input chain'), 'input' ],
		  [ 'lan_set', _('LAN hosts set'), 'ntpgate_lan6' ], [ 'router_set', _('Router ports set'), 'ntpgate_router' ],
		  [ 'limit_chain', _('Rate limit chain'), 'ntpgate_limit' ], [ 'limit_set', _('Rate limit set'), 'ntpgate_flood' ]
		].forEach(function(f) {
			o = s.option(form.Value, f[0], f[1]);
			o.placeholder = f[2];
			o.validate = validateNftName;
		});

		s = m.section(form.GridSection, 'pinhole', _('Pinholes'),
			_('LAN hosts whose NTP server the WAN may reach on UDP 123 (IPv6). Give one of suffix, MAC or address.'));
		s.addremove = true;
		s.anonymous = false;
		s.nodescriptions = true;

		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.editable = true;

		o = s.option(form.Value, 'interface', _('Interface'));
		o.placeholder = 'lan';
		o.datatype = 'uciname';

		o = s.option(form.Value, 'device', _('Device'));
		o.placeholder = _('from the interface');
		o.modalonly = true;

		o = s.option(form.Value, 'suffix', _('Suffix'));
		o.placeholder = '::50';
		o.validate = function(section_id, value) {
			var given = [ value, this.section.formvalue(section_id, 'mac'),
				this.section.formvalue(section_id, 'address') ].filter(function(v) { return v; });
			if (given.length > 1)
				return _('Give one of suffix, MAC or address, not several');
			return validateSuffix(section_id, value);
		};

		o = s.option(form.Value, 'mac', _('MAC address'));
		o.datatype = 'macaddr';
		o.validate = function(section_id, value) {
			if (value && (parseInt(value.slice(0, 2), 16) & 1 || /^(00:){5}00$/.test(value)))
				return _('Not a host\'s MAC address (multicast or zero)');
			return true;
		};

		o = s.option(form.Value, 'address', _('Fixed address'));
		o.validate = validateGlobal;

		o = s.option(form.Flag, 'health_check', _('Health check'));

		o = s.option(form.Value, 'health_interval', _('Check every (s)'));
		o.placeholder = '60';
		o.validate = range(1, 3600, true);

		o = s.option(form.Value, 'limit_pps', _('Limit per source (packets/s)'));
		o.validate = range(1, 1000000, true);

		// Each Flag's default is the daemon's: Save drops an option that
		// equals it.
		m.children.forEach(function(section) {
			section.children.forEach(function(option) {
				if (option instanceof form.Flag)
					option.load = loadBool;
			});
		});

		return m.render();
	}
});
