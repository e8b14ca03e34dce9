'use strict';
'require view';
'require poll';
'require ui';
'require dom';
'require ntpgate';

// Everything shown here comes from the daemon's own ubus object (see
// ntpgate.js). Values from the daemon go into E() inside arrays: a single
// string child would be set as HTML.

var text = ntpgate.text;

// Re-read /etc/config/ntpgate now, and say what the daemon made of it.
function handleReload(ev) {
	return ntpgate.reload().then(function(r) {
		if (r.result == 'refused')
			ui.addNotification(_('Configuration refused'), [
				E('p', {}, _('The daemon keeps running with its previous configuration. Fix these errors in /etc/config/ntpgate or in the Settings:')),
				E('pre', {}, [ (Array.isArray(r.errors) && r.errors.length) ? r.errors.join('\n') : _('(the daemon gave no reason)') ])
			], 'danger');
		else if (r.result == 'applied')
			ui.addNotification(null, E('p', {}, _('Configuration applied.')), 'info');
		else if (r.result == 'unchanged')
			ui.addNotification(null, E('p', {}, _('Configuration unchanged.')), 'info');
		else
			throw ntpgate.notUnderstood(_('no result the page knows'), r);
	}).catch(function(e) {
		ui.addNotification(_('Reload failed'), E('p', {}, [ ntpgate.explain(e) ]), 'danger');
	});
}

function ms(seconds) {
	return (seconds == null) ? '-' : '%.3f'.format(seconds * 1000);
}

function octal(n) {
	return (n == null) ? '-' : n.toString(8).padStart(3, '0');
}

function mark(ok) {
	return E('span', {
		'class': ok ? 'ntpgate-ok' : 'ntpgate-fail',
		'style': ok ? 'color:#080' : 'color:#c00'
	}, ok ? '\u2714' : '\u2718');
}

function table(titles, rows, empty) {
	return E('table', { 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' },
			titles.map(function(t) { return E('th', { 'class': 'th' }, t); }))
	].concat(rows.length ? rows.map(function(r) {
		return E('tr', { 'class': 'tr' },
			r.map(function(c) { return E('td', { 'class': 'td' }, [ c ]); }));
	}) : [ E('tr', { 'class': 'tr placeholder' }, E('td', { 'class': 'td' }, E('em', empty))) ]));
}

// A line graph of requests/s, one point per minute of the last hour.
function graph(points) {
	var w = 600, h = 120;
	if (!points || points.length < 2)
		return E('em', _('Not enough data yet: the graph fills over the first minutes.'));
	var max = Math.max.apply(null, points.concat([1]));
	var path = points.map(function(p, i) {
		var x = (i / (points.length - 1)) * w, y = h - (p / max) * (h - 10);
		return (i ? 'L' : 'M') + x.toFixed(1) + ' ' + y.toFixed(1);
	}).join(' ');
	var svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
	svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
	svg.setAttribute('width', w);
	svg.setAttribute('height', h);
	svg.setAttribute('class', 'ntpgate-graph');
	var line = document.createElementNS('http://www.w3.org/2000/svg', 'path');
	line.setAttribute('d', path);
	line.setAttribute('fill', 'none');
	line.setAttribute('stroke', '#2a6ebb');
	line.setAttribute('stroke-width', '2');
	svg.appendChild(line);
	return E('div', {}, [ svg, E('div', {}, _('Peak: %.1f requests/s').format(max)) ]);
}

function headline(st) {
	var sync = st.sync || {};
	var advice;
	if (!sync.synchronised)
		advice = _('Not synchronised: clients are told so (leap 3) and get no time from this router. Check that the upstream servers are reachable and that at least three of them agree.');
	else if (sync.source != 'upstreams')
		advice = _('Serving the local clock (local_stratum): for labs only, never for the NTP Pool.');
	else if (sync.stratum > 4)
		advice = _('Synchronised, but at a stratum too high for the NTP Pool: use upstream servers of stratum 1 to 3.');
	else
		advice = _('Serving good time.');
	return E('div', { 'class': 'cbi-section ntpgate-headline' }, [
		E('h3', {}, sync.synchronised ? _('Serving time, synchronised') : _('Serving, not synchronised')),
		E('p', {}, [
			_('Stratum'), ': ', E('strong', {}, [ text(sync.stratum) ]), ' \u00b7 ',
			_('Reference'), ': ', E('strong', {}, [ text(sync.refid) ]), ' \u00b7 ',
			_('Offset'), ': ', E('strong', {}, [ ms(sync.offset_s) + ' ms' ]), ' \u00b7 ',
			_('Frequency'), ': ', E('strong', {}, [ sync.frequency_ppm == null ? '-' : '%.3f ppm'.format(sync.frequency_ppm) ])
		]),
		E('p', { 'class': 'ntpgate-advice' }, advice)
	]);
}

function upstreams(st) {
	var rows = (st.upstreams || []).map(function(u) {
		return [
			u.status == 'selected' ? '*' : (u.status == 'candidate' ? '+' : (u.status == 'falseticker' ? 'x' : (u.status == 'outlier' ? '-' : '?'))),
			text(u.name) + (u.address && u.address != u.name ? ' (' + u.address + ')' : ''),
			text(u.stratum),
			u.poll == null ? '-' : String(Math.pow(2, u.poll)) + ' s',
			octal(u.reach),
			ms(u.offset_s), ms(u.delay_s), ms(u.jitter_s),
			text(u.status)
		];
	});
	return E('div', { 'class': 'cbi-section' }, [
		E('h3', {}, _('Upstream servers')),
		table([ '', _('Server'), _('Stratum'), _('Poll'), _('Reach'), _('Offset (ms)'), _('Delay (ms)'), _('Jitter (ms)'), _('State') ],
			rows, _('No upstream servers are configured.'))
	]);
}

function server(st) {
	var s = st.server || {}, c = s.counters || {}, d = c.dropped || {}, r = s.requests_per_s || {};
	var rows = [
		[ _('Requests/s, last minute'), r.minute == null ? '-' : '%.2f'.format(r.minute) ],
		[ _('Requests/s, last hour'), r.hour == null ? '-' : '%.2f'.format(r.hour) ],
		[ _('Clients seen, last hour'), text(s.clients_seen_hour) ],
		[ _('Requests received'), text(c.received) ],
		[ _('Answered'), text(c.answered) ],
		[ _('Rate limited'), text(c.limited) ],
		[ _('Kiss-o\'-death sent'), text(c.kod_sent) ],
		[ _('Dropped: malformed'), text(d.malformed) ],
		[ _('Dropped: mode'), text(d.mode) ],
		[ _('Dropped: denied'), text(d.denied) ],
		[ _('Dropped: rate limit'), text(d.ratelimit) ]
	];
	return E('div', { 'class': 'cbi-section' }, [
		E('h3', {}, _('Server')),
		graph(r.per_minute),
		table([ _('Counter'), _('Value') ], rows, '')
	]);
}

function pinholes(st) {
	var rows = (st.pinholes || []).map(function(p) {
		return [
			text(p.name), text(p.target) + ' (' + text(p.device) + ')',
			(p.addresses || []).join(', ') || '-',
			text(p.health),
			p.open ? _('open') : _('closed'),
			p.open ? '' : text(p.reason),
			text(p.packets)
		];
	});
	return E('div', { 'class': 'cbi-section' }, [
		E('h3', {}, _('Pinholes')),
		table([ _('Name'), _('Target'), _('Address'), _('Health'), _('State'), _('Why closed'), _('Packets') ],
			rows, _('No pinholes are configured.'))
	]);
}

function checklist(st) {
	var sync = st.sync || {}, ups = st.upstreams || [];
	var now = new Date();
	var stable = (st.addresses || []).filter(function(a) { return !a.temporary && !a.deprecated; });
	var month = now.getUTCMonth();
	var leapOk = sync.leap == 0 || ((sync.leap == 1 || sync.leap == 2) && (month == 5 || month == 11));
	var items = [
		[ stable.length > 0, _('A global IPv6 address that stays (not temporary, not deprecated)'),
			_('Give the router a static global IPv6 address (a fixed interface identifier in the delegated prefix).') ],
		[ !!sync.synchronised && sync.stratum >= 1 && sync.stratum <= 4, _('Synchronised, at stratum 4 or better'),
			_('Wait for synchronisation, and use upstream servers of stratum 1 to 3.') ],
		[ ups.length >= 4, _('At least 4 upstream servers'),
			_('Add upstream servers in the Settings, so that one bad server is outvoted.') ],
		[ ups.length > 0 && ups.every(function(u) { return !u.pool_name && !u.smears_leap_seconds; }), _('No pool or leap-smearing upstream servers'),
			_('Replace pool.ntp.org names and leap-smearing services with individual servers.') ],
		[ !!(st.firewall && st.firewall.wan_open), _('The router\'s NTP port is open to the WAN'),
			_('Enable "Serve the WAN" in the Settings.') ],
		[ leapOk, _('Leap indicator sane'),
			_('A leap second is announced outside June and December, or the server is unsynchronised: check the upstream servers.') ]
	];
	return E('div', { 'class': 'cbi-section' }, [
		E('h3', {}, _('Ready for the NTP Pool?')),
		E('ul', { 'class': 'ntpgate-checklist' }, items.map(function(i) {
			return E('li', { 'class': i[0] ? 'ntpgate-check-ok' : 'ntpgate-check-fail' },
				[ mark(i[0]), ' ', i[1] ].concat(i[0] ? [] : [ E('div', { 'class': 'ntpgate-fix' }, i[2]) ]));
		}))
	]);
}

function render(st) {
	return E('div', { 'id': 'ntpgate-status' }, [
		headline(st), checklist(st), upstreams(st), server(st), pinholes(st)
	]);
}

// The page's body: the status, or what went wrong.
function show(st) {
	return st.failure
		? E('p', { 'class': 'alert-message warning' }, [ st.failure ])
		: render(st);
}

function fetch() {
	return ntpgate.status().catch(function(e) {
		return { failure: ntpgate.explain(e) };
	});
}

return view.extend({
	load: fetch,

	render: function(st) {
		var body = E('div', {}, show(st));
		poll.add(function() {
			return fetch().then(function(fresh) {
				dom.content(body, show(fresh));
			});
		}, 5);
		return E([], [
			E('h2', {}, _('NTP server: status')),
			E('div', { 'class': 'cbi-page-actions' }, E('button', {
				'class': 'btn cbi-button-action',
				'click': ui.createHandlerFn(this, handleReload)
			}, _('Reload configuration'))),
			body
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
