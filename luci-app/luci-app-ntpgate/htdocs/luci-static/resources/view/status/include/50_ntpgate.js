'use strict';
'require baseclass';
'require ntpgate';

var text = ntpgate.text;

return baseclass.extend({
	title: _('NTP server'),

	// The overview hides an include whose load() rejects: say what went
	// wrong instead.
	load: function() {
		return ntpgate.status().catch(function(e) {
			return { failure: ntpgate.explain(e) };
		});
	},

	render: function(st) {
		if (st.failure)
			return E('p', {}, E('em', {}, [ st.failure ]));
		var sync = st.sync, rate = (st.server || {}).requests_per_s || {};
		var open = (st.pinholes || []).filter(function(p) { return p.open; }).length;
		return E('table', { 'class': 'table' }, [
			[ _('State'), sync.synchronised ? _('Synchronised') : _('Not synchronised') ],
			[ _('Stratum'), text(sync.stratum) ],
			[ _('Offset'), sync.offset_s == null ? '-' : '%.3f ms'.format(sync.offset_s * 1000) ],
			[ _('Requests/s, last minute'), rate.minute == null ? '-' : '%.2f'.format(rate.minute) ],
			[ _('Pinholes open'), '%d / %d'.format(open, (st.pinholes || []).length) ]
		].map(function(r) {
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, [ r[0] ]),
				E('td', { 'class': 'td left' }, [ r[1] ])
			]);
		}));
	}
});
