'use strict';
'require baseclass';
'require rpc';

// What the ntpgate views share: the daemon's ubus calls, and what a failed
// call means in words.

// reject: a ubus status other than 0 rejects the call. Without it, rpc.js
// resolves the call with the bare status number, and a page would read
// the fields of a number.
var callStatus = rpc.declare({
	object: 'ntpgate',
	method: 'status',
	reject: true
});

var callReload = rpc.declare({
	object: 'ntpgate',
	method: 'reload',
	reject: true
});

// An answer from the daemon that a page cannot use, and why; explain()
// shows its message as it is.
function notUnderstood(why, r) {
	var e = new Error(_('The ntpgate daemon sent an answer this page does not understand (%s): %s')
		.format(why, (r === undefined) ? _('nothing') : JSON.stringify(r)));
	e.name = 'NtpgateAnswerError';
	return e;
}

// A reply that is no object (status 0 without data) is no answer either.
function reply(r) {
	if (r == null || typeof(r) != 'object')
		throw notUnderstood(_('no object'), r);
	return r;
}

return baseclass.extend({
	// The daemon's status, or a rejection.
	status: function() {
		return callStatus().then(reply).then(function(st) {
			if (st.sync == null || typeof(st.sync) != 'object')
				throw notUnderstood(_('it has no sync section'), st);
			return st;
		});
	},

	// The daemon's verdict on /etc/config/ntpgate: {result: 'applied'},
	// {result: 'unchanged'} or {result: 'refused', errors: [...]}.
	reload: function() {
		return callReload().then(reply);
	},

	notUnderstood: notUnderstood,

	// What went wrong with a call. rpc.js reports a JSON-RPC error or a
	// ubus status only in the message of its RPCError.
	explain: function(e) {
		var msg = String((e && e.message) || e), m;
		if (e && e.name == 'NtpgateAnswerError')
			return msg;
		// uhttpd finds no object (-32000), or ubusd no longer has it when
		// the call reaches it (UBUS_STATUS_NOT_FOUND).
		if (/ with error -32000: /.test(msg) || / with ubus code 4: /.test(msg))
			return _('ntpgate is not running: it has no object on ubus. Start it with /etc/init.d/ntpgate start; logread -e ntpgate says why it stopped.');
		if (/ with error -32002: /.test(msg))
			return _('Access denied: this login may not call the ntpgate daemon (ACL luci-app-ntpgate).');
		// A result without a ubus status reads as code 0 (rpc.js's %d).
		if ((m = msg.match(/ with ubus code ([1-9]\d*): (.*)$/)) != null)
			return _('The ntpgate daemon refused the request: %s (ubus status %d). Are ntpgate and luci-app-ntpgate the same version?').format(m[2], +m[1]);
		if (/ with ubus code 0: | returned invalid message frame|^No related RPC reply$/.test(msg))
			return _('The router sent an answer this page does not understand: %s').format(msg);
		return _('No answer from the router: %s').format(msg);
	},

	// A value from the daemon as text, '-' when it is missing.
	text: function(v) {
		return (v == null) ? '-' : String(v);
	}
});
