'use strict';
'require baseclass';
'require rpc';

var callStatus = rpc.declare({
	object: 'ntpgate',
	method: 'status',
	expect: { }
});

return baseclass.extend({
	title: _('NTP server'),

	load: function() {
		return callStatus().catch(function() { return null; });
	},

	render: function(st) {
		if (!st)
			return E('p', {}, E('em', _('The ntpgate daemon does not answer on ubus: is it running? (/etc/init.d/ntpgate start)')));
		var sync = st.sync || {}, rate = (st.server || {}).requests_per_s || {};
		var open = (st.pinholes || []).filter(function(p) { return p.open; }).length;
		return E('table', { 'class': 'table' }, [
			[ _('State'), sync.synchronised ? _('Synchronised') : _('Not synchronised') ],
			[ _('Stratum'), String(sync.stratum) ],
			[ _('Offset'), sync.offset_s == null ? '-' : '%.3f ms'.format(sync.offset_s * 1000) ],
			[ _('Requests/s, last minute'), rate.minute == null ? '-' : '%.2f'.format(rate.minute) ],
			[ _('Pinholes open'), '%d / %d'.format(open, (st.pinholes || []).length) ]
		].map(function(r) {
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, r[0]),
				E('td', { 'class': 'td left' }, r[1])
			]);
		}));
	}
});
