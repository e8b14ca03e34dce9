// LuCI's client runtime, the parts the ntpgate views use, for running the
// views in headless Chromium without a router. Each part behaves as the
// real one; where it is shown:
//
// - rpc (luci-base rpc.js `declare`, `parseCallReply`, `handleCallReply`):
//   a declared call POSTs `{"jsonrpc":"2.0","id":N,"method":"call",
//   "params":[session, object, method, args]}` to the ubus endpoint (here
//   the test's uhttpd stand-in, tests/luci/uhttpd.rs, in front of the real
//   daemon). A JSON-RPC `error` (-32000 object not found, -32002 access
//   denied, ...) rejects. A ubus status other than 0 in `result[0]` rejects
//   only when the call was declared with `reject: true`; otherwise the call
//   RESOLVES with the bare number (shared/fixtures/luci/README.md, "How
//   rpc.js treats the answer"; uhttpd-ubus-capture.txt: `"result":[2]`).
//   With status 0 the reply is `result[1]`, or the number 0 when the
//   object sent no data. `expect` picks its one key from the reply and
//   falls back to its value when the field is missing or of another type
//   (an empty `expect: { }` picks nothing: a number stays a number);
//   `filter` gets the result, the params and the extra arguments. Errors
//   are `RPCError`s with rpc.js's messages ("RPC call to ntpgate/status
//   failed with error -32000: Object not found", "... failed with ubus
//   code 2: Invalid argument").
// - poll (luci.js `Poll`): a one-second tick; a function added with
//   interval N runs on every Nth tick, never while its previous call is
//   still running. luci.js starts the poller (with no work) before a view
//   renders, so `poll.add` during render runs the function at once and
//   then every N seconds (default interval: L.env.pollinterval, 5).
// - view (luci.js `View`): load(), then render(load's result) into #view,
//   with the Save & Apply / Save / Reset footer unless the view sets those
//   handlers to null; an exception from load or render is shown by
//   `L.error` as a notification (its name, then its message).
// - The status overview (luci-mod-status view/status/index.js): each
//   include's load() runs, then render(result), at once and on every poll;
//   an include whose load() rejects is marked failed and never shown.
// - dom and E() (luci.js `dom.create`, `dom.append`, `dom.content`): a
//   single child that is not a node is set as innerHTML; an array of
//   children is appended as nodes or text; attribute values that are
//   functions become event listeners.
// - ui (ui.js): `addNotification` puts an alert-message with a Dismiss
//   button at the top of #maincontent; `createHandlerFn` disables the
//   button until the handler's promise settles; Checkbox is checked when
//   the value equals `value_enabled` (exactly: 'yes' is not '1'); Textfield
//   and DynamicList validate as `ui.addValidator` does: the datatype first,
//   failing with "Expecting: <what the datatype wants>", then the
//   option's validate(section_id, value).
// - validation (validation.js): the datatypes the views use (port,
//   uciname, macaddr, ipaddr, cidr) with validation.js's messages;
//   shared/fixtures/luci/README.md: "The port datatype error reads
//   'Expecting: valid port value'".
// - uci (uci.js): load is `uci get {config}` with `expect: { values: { } }`
//   and `reject: true`; set/unset stage changes (an option is only deleted
//   if it exists); save sends `uci delete {config, section, options}` and
//   `uci set {config, section, values}` through the same rpc layer, then
//   loads the config again. The tests' stand-in for rpcd's uci plugin is
//   tests/luci/rpcd_uci.rs.
// - form (form.js): Map.load reads every option through option.load(sid);
//   Map.save = checkDepends, parse, uci save, load, render again. Value
//   parse: an empty value removes the option, a changed one is written.
//   Flag (`enabled` '1', `disabled` '0', `default` '0' unless set): a value
//   equal to `default` REMOVES the option when `rmempty` (the default) or
//   `optional` is set, any other value is written; an option whose
//   `depends` are not met is removed (shared/fixtures/luci/README.md:
//   "`option ratelimit '1'` disappeared after one Save"). GridSection:
//   options with `modalonly` are no column of the table (README: "they
//   appear only in the section's edit dialog"); editable options are
//   widgets in the row, the others their text value; "Edit" opens the
//   dialog with every option, as clones bound to a Map of their own.
//   Only editable options are parsed when the grid is saved.
//
// Not here, because the views do not use them: adding, removing or
// sorting sections, tab switching, `uci apply` (Save & Apply saves only),
// the session's uci ACL check in Map.load, batched requests, translations.
//
// Test hooks, no part of LuCI: window.RPC_LOG (every request and the
// JSON answer), window.FORM_MAP (the last form.Map made),
// window.luciValidate(section_id, option, value) (set a widget's value as
// a person typing would, validate it, return true or the message), and the
// body's data-rendered / data-error attributes.
'use strict';

(function() {

var env = Object.assign({
	sessionid: '00000000000000000000000000000000',
	ubuspath: '/ubus/',
	pollinterval: 5,
	rpctimeout: 20
}, window.LUCI_ENV || {});

window.RPC_LOG = [];

window._ = function(s) { return s; };
window.N_ = function(n, s, p) { return n == 1 ? s : p; };

// LuCI's String.prototype.format: %s %d %f %x with precision, %h (HTML), %q, %%.
String.prototype.format = function() {
	var args = arguments, i = 0;
	return this.replace(/%(%|(\.(\d+))?([sdfhqx]))/g, function(m, pct, p, prec, conv) {
		if (pct == '%') return '%';
		var a = args[i++];
		switch (conv) {
		case 's': return String(a);
		case 'd': return String(Math.floor(Number(a)));
		case 'f': return Number(a).toFixed(prec != null ? +prec : 6);
		case 'x': return Number(a).toString(16);
		case 'h':
		case 'q': return String(a).replace(/&/g, '&#38;').replace(/</g, '&#60;').replace(/>/g, '&#62;')
			.replace(/"/g, '&#34;').replace(/'/g, '&#39;');
		}
	});
};

// The class system (luci.js `Class`): extend() makes a subclass whose
// constructor calls __init__.
function Class() {}
Class.extend = function(props) {
	var Parent = this;
	var C = function() {
		if (typeof this.__init__ == 'function')
			this.__init__.apply(this, arguments);
	};
	C.prototype = Object.create(Parent.prototype);
	Object.assign(C.prototype, props);
	C.prototype.constructor = C;
	C.extend = Class.extend;
	C.singleton = Class.singleton;
	return C;
};
Class.singleton = function(props) {
	return new (Class.extend.call(this, props))();
};

var registry = new WeakMap();

var dom = {
	elem: function(e) { return (e != null && typeof(e) == 'object' && 'nodeType' in e); },
	matches: function(node, selector) {
		return this.elem(node) && typeof(node.matches) == 'function' && node.matches(selector);
	},
	parent: function(node, selector) {
		return this.elem(node) && node.closest ? node.closest(selector) : null;
	},
	append: function(node, children) {
		if (!this.elem(node))
			return null;
		if (Array.isArray(children)) {
			for (var i = 0; i < children.length; i++)
				if (this.elem(children[i]))
					node.appendChild(children[i]);
				else if (children !== null && children !== undefined)
					node.appendChild(document.createTextNode('' + children[i]));
			return node.lastChild;
		}
		else if (typeof(children) === 'function') {
			return this.append(node, children(node));
		}
		else if (this.elem(children)) {
			return node.appendChild(children);
		}
		else if (children !== null && children !== undefined) {
			node.innerHTML = '' + children;
			return node.lastChild;
		}
		return null;
	},
	content: function(node, children) {
		if (!this.elem(node))
			return null;
		while (node.firstChild)
			node.removeChild(node.firstChild);
		return this.append(node, children);
	},
	attr: function(node, key, val) {
		var attr = null;
		if (typeof(key) === 'object' && key !== null)
			attr = key;
		else if (typeof(key) === 'string')
			attr = {}, attr[key] = val;
		for (key in attr) {
			if (!attr.hasOwnProperty(key) || attr[key] == null)
				continue;
			switch (typeof(attr[key])) {
			case 'function': node.addEventListener(key, attr[key]); break;
			case 'object': node.setAttribute(key, JSON.stringify(attr[key])); break;
			default: node.setAttribute(key, attr[key]);
			}
		}
	},
	create: function() {
		var html = arguments[0], attr = arguments[1], data = arguments[2], elem;
		if (!(attr instanceof Object) || Array.isArray(attr))
			data = attr, attr = null;
		if (Array.isArray(html)) {
			elem = document.createDocumentFragment();
			for (var i = 0; i < html.length; i++)
				elem.appendChild(this.create(html[i]));
		}
		else if (this.elem(html)) {
			elem = html;
		}
		else {
			elem = document.createElement(html);
		}
		this.attr(elem, attr);
		this.append(elem, data);
		return elem;
	},
	bindClassInstance: function(node, inst) { registry.set(node, inst); },
	findClassInstance: function(node) {
		var inst = null;
		do {
			inst = registry.get(node);
			node = node.parentNode;
		} while (!(inst instanceof Class) && node != null);
		return inst;
	},
	callClassMethod: function(node, method) {
		var inst = this.findClassInstance(node);
		if (!inst || typeof(inst[method]) != 'function')
			return null;
		return inst[method].apply(inst, Array.prototype.slice.call(arguments, 2));
	}
};

window.E = function() { return dom.create.apply(dom, arguments); };

// luci.js: L.raise, L.error, L.bind, L.isObject, L.resolveDefault, L.toArray.
var L = window.L = {
	env: env,
	raise: function(type, fmt) {
		var msg = fmt ? String.prototype.format.apply(fmt, Array.prototype.slice.call(arguments, 2)) : null;
		var e;
		if (type instanceof Error) {
			e = type;
			if (msg)
				e.message = msg + ': ' + e.message;
		}
		else {
			e = new (window[type || 'Error'] || Error)(msg || 'Unspecified error');
			e.name = type || 'Error';
		}
		throw e;
	},
	error: function(type, fmt) {
		try {
			L.raise.apply(L, arguments);
		}
		catch (e) {
			if (!e.reported) {
				ui.addNotification(e.name || _('Runtime error'), E('pre', {}, e.message), 'danger');
				e.reported = true;
			}
			throw e;
		}
	},
	bind: function(fn, self) {
		var args = Array.prototype.slice.call(arguments, 2);
		return function() { return fn.apply(self, args.concat(Array.prototype.slice.call(arguments))); };
	},
	isObject: function(val) { return (val != null && typeof(val) == 'object'); },
	toArray: function(val) {
		if (val == null) return [];
		if (Array.isArray(val)) return val;
		if (L.isObject(val)) return [ val ];
		var s = String(val).trim();
		return s == '' ? [] : s.split(/\s+/);
	},
	resolveDefault: function(value, defvalue) {
		return Promise.resolve(value).catch(function() { return defvalue; });
	}
};

// request.js over XMLHttpRequest, as LuCI's Request does it.
var request = {
	post: function(url, data, options) {
		return new Promise(function(resolve, reject) {
			var xhr = new XMLHttpRequest();
			xhr.open('POST', url, true);
			xhr.timeout = (options && options.timeout) || 0;
			xhr.setRequestHeader('Content-Type', 'application/json');
			xhr.onload = function() {
				resolve({
					ok: (xhr.status >= 200 && xhr.status <= 299),
					status: xhr.status,
					statusText: xhr.statusText,
					json: function() { return JSON.parse(xhr.responseText); }
				});
			};
			xhr.onerror = function() { reject(new Error('XHR request aborted by browser')); };
			xhr.ontimeout = function() { reject(new Error('XHR request timed out')); };
			xhr.send(JSON.stringify(data));
		});
	}
};

var rpcRequestID = 1;
var rpcBaseURL = env.ubuspath;

var rpc = Class.singleton({
	call: function(req, cb) {
		return request.post(rpcBaseURL, req, {
			timeout: (L.env.rpctimeout || 20) * 1000
		}).then(cb, cb);
	},

	parseCallReply: function(req, res) {
		var msg = null;
		if (res instanceof Error)
			return req.reject(res);
		try {
			if (!res.ok)
				L.raise('RPCError', 'RPC call to %s/%s failed with HTTP error %d: %s',
					req.object, req.method, res.status, res.statusText || '?');
			msg = res.json();
		}
		catch (e) {
			return req.reject(e);
		}
		window.RPC_LOG.push({ request: req.message, reply: msg });
		Promise.resolve()
			.then(this.handleCallReply.bind(this, req, msg))
			.catch(req.reject);
	},

	handleCallReply: function(req, msg) {
		var type = Object.prototype.toString, ret = null;
		try {
			if (!L.isObject(msg) || msg.jsonrpc != '2.0')
				L.raise('RPCError', 'RPC call to %s/%s returned invalid message frame',
					req.object, req.method);
			if (L.isObject(msg.error) && msg.error.code && msg.error.message)
				L.raise('RPCError', 'RPC call to %s/%s failed with error %d: %s',
					req.object, req.method, msg.error.code, msg.error.message || '?');
		}
		catch (e) {
			return req.reject(e);
		}
		if (!req.object && !req.method) {
			ret = msg.result;
		}
		else if (Array.isArray(msg.result)) {
			if (req.raise && msg.result[0] !== 0) {
				try {
					L.raise('RPCError', 'RPC call to %s/%s failed with ubus code %d: %s',
						req.object, req.method, msg.result[0], this.getStatusText(msg.result[0]));
				}
				catch (e) {
					return req.reject(e);
				}
			}
			ret = (msg.result.length > 1) ? msg.result[1] : msg.result[0];
		}
		if (req.expect) {
			for (var key in req.expect) {
				if (ret != null && key != '')
					ret = ret[key];
				if (ret == null || type.call(ret) != type.call(req.expect[key]))
					ret = req.expect[key];
				break;
			}
		}
		if (typeof(req.filter) == 'function') {
			req.priv[0] = ret;
			req.priv[1] = req.params;
			ret = req.filter.apply(this, req.priv);
		}
		req.resolve(ret);
	},

	declare: function(options) {
		var self = this;
		return function() {
			var args = Array.prototype.slice.call(arguments);
			return new Promise(function(resolve, reject) {
				var p_off = 0, params = {};
				if (Array.isArray(options.params))
					for (p_off = 0; p_off < options.params.length; p_off++)
						params[options.params[p_off]] = args[p_off];
				var priv = [ undefined, undefined ];
				for (; p_off < args.length; p_off++)
					priv.push(args[p_off]);
				var msg = {
					jsonrpc: '2.0',
					id: rpcRequestID++,
					method: 'call',
					params: [ env.sessionid, options.object, options.method, params ]
				};
				var req = {
					expect: options.expect, filter: options.filter,
					resolve: resolve, reject: reject, params: params, priv: priv,
					object: options.object, method: options.method, raise: options.reject,
					message: msg
				};
				self.call(msg, self.parseCallReply.bind(self, req));
			});
		};
	},

	getSessionID: function() { return env.sessionid; },

	getStatusText: function(statusCode) {
		switch (statusCode) {
		case 0: return _('Command OK');
		case 1: return _('Invalid command');
		case 2: return _('Invalid argument');
		case 3: return _('Method not found');
		case 4: return _('Resource not found');
		case 5: return _('No data received');
		case 6: return _('Permission denied');
		case 7: return _('Request timeout');
		case 8: return _('Not supported');
		case 9: return _('Unspecified error');
		case 10: return _('Connection lost');
		default: return _('Unknown error code');
		}
	}
});

var Poll = Class.singleton({
	queue: [],

	add: function(fn, interval) {
		if (interval == null || interval <= 0)
			interval = env.pollinterval || null;
		if (isNaN(interval) || typeof(fn) != 'function')
			throw new TypeError('Invalid argument to LuCI.poll.add()');
		for (var i = 0; i < this.queue.length; i++)
			if (this.queue[i].fn === fn)
				return false;
		this.queue.push({ r: true, i: interval >>> 0, fn: fn });
		if (this.tick != null && !this.active())
			this.start();
		return true;
	},

	remove: function(fn) {
		var len = this.queue.length;
		for (var i = len; i > 0; i--)
			if (this.queue[i-1].fn === fn)
				this.queue.splice(i-1, 1);
		if (!this.queue.length && this.stop())
			this.tick = 0;
		return (this.queue.length != len);
	},

	start: function() {
		if (this.active())
			return false;
		this.tick = 0;
		if (this.queue.length) {
			this.timer = window.setInterval(this.step, 1000);
			this.step();
		}
		return true;
	},

	stop: function() {
		if (!this.active())
			return false;
		window.clearInterval(this.timer);
		delete this.timer;
		delete this.tick;
		return true;
	},

	step: function() {
		for (var i = 0, e = null; (e = Poll.queue[i]) != null; i++) {
			if ((Poll.tick % e.i) != 0)
				continue;
			if (!e.r)
				continue;
			e.r = false;
			Promise.resolve(e.fn()).finally((function() { this.r = true; }).bind(e));
		}
		Poll.tick = (Poll.tick + 1) % Math.pow(2, 32);
	},

	active: function() { return (this.timer != null); }
});

// validation.js: the datatypes the views use, with its messages.
var validation = (function() {
	function parseInteger(x) { return (/^-?\d+$/.test(x) ? +x : NaN); }
	function parseIPv4(x) {
		var m = x.match(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/);
		if (!m || m[1] > 255 || m[2] > 255 || m[3] > 255 || m[4] > 255)
			return null;
		return [ +m[1], +m[2], +m[3], +m[4] ];
	}
	function parseIPv6(x) {
		var m = x.match(/^([a-fA-F0-9:]+):(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/);
		if (m) {
			var v4 = parseIPv4(m[2]);
			if (!v4)
				return null;
			x = m[1] + ':' + (v4[0] * 256 + v4[1]).toString(16) + ':' + (v4[2] * 256 + v4[3]).toString(16);
		}
		if (!x.match(/^[a-fA-F0-9:]+$/))
			return null;
		var prefix_suffix = x.split(/::/);
		if (prefix_suffix.length > 2)
			return null;
		var prefix = (prefix_suffix[0] || '0').split(/:/);
		var suffix = prefix_suffix.length > 1 ? (prefix_suffix[1] || '0').split(/:/) : [];
		if (suffix.length ? (prefix.length + suffix.length > 7)
			: ((prefix_suffix.length < 2 && prefix.length < 8) || prefix.length > 8))
			return null;
		var words = [], i, word;
		for (i = 0; i < prefix.length; i++) {
			word = parseInt(prefix[i], 16);
			if (!(prefix[i].length <= 4 && !isNaN(word) && word <= 0xFFFF)) return null;
			words.push(word);
		}
		for (i = 0; i < (8 - prefix.length - suffix.length); i++)
			words.push(0);
		for (i = 0; i < suffix.length; i++) {
			word = parseInt(suffix[i], 16);
			if (!(suffix[i].length <= 4 && !isNaN(word) && word <= 0xFFFF)) return null;
			words.push(word);
		}
		return words;
	}
	function prefixOk(v, max) { return !isNaN(v) && v >= 0 && v <= max; }
	var types = {
		string: function() { return true; },
		port: function(v) { var p = parseInteger(v); return (p >= 0 && p <= 65535) || _('valid port value'); },
		uciname: function(v) { return /^[a-zA-Z0-9_]+$/.test(v) || _('valid UCI identifier'); },
		macaddr: function(v) {
			var m = v.match(/^([a-fA-F0-9]{2}):([a-fA-F0-9]{2}:){4}[a-fA-F0-9]{2}$/);
			return (m != null && !(+m[1] & 1)) || _('valid MAC address');
		},
		ipaddr: function(v) {
			var m4 = v.match(/^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+\.\d+\.\d+\.\d+)|\/(\d{1,2}))?$/);
			var m6 = v.match(/^([0-9a-fA-F:.]+)(?:\/(\d{1,3}))?$/);
			var ok4 = m4 && parseIPv4(m4[1]) && (m4[2] ? parseIPv4(m4[2]) : (m4[3] ? prefixOk(m4[3], 32) : true));
			var ok6 = m6 && parseIPv6(m6[1]) && (m6[2] ? prefixOk(m6[2], 128) : true);
			return !!(ok4 || ok6) || _('valid IP address or prefix');
		},
		cidr: function(v) {
			var m4 = v.match(/^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\/(-)?(\d{1,2})$/);
			var m6 = v.match(/^([0-9a-fA-F:.]+)\/(-)?(\d{1,3})$/);
			var ok4 = m4 && parseIPv4(m4[1]) && !m4[2] && prefixOk(m4[3], 32);
			var ok6 = m6 && parseIPv6(m6[1]) && !m6[2] && prefixOk(m6[3], 128);
			return !!(ok4 || ok6) || _('valid IPv4 or IPv6 CIDR');
		}
	};
	// Validator.validate(): empty is fine when optional; else the datatype,
	// then vfunc. The message goes out in a validation-failure event.
	return {
		create: function(field, type, optional, vfunc) {
			if (!types[type])
				throw new Error('the shim has no datatype ' + type);
			return function() {
				if (!document.body.contains(field))
					return true;
				var value = (field.value != null) ? field.value : '';
				var verdict = value.length === 0 ? (optional || _('non-empty value')) : types[type](value);
				var message = null;
				if (verdict !== true)
					message = _('Expecting: %s').format(verdict);
				else if (typeof(vfunc) == 'function' && (verdict = vfunc(value)) !== true)
					message = verdict;
				field.dispatchEvent(message == null
					? new CustomEvent('validation-success', { bubbles: true })
					: new CustomEvent('validation-failure', { bubbles: true, detail: { message: message } }));
				return message == null;
			};
		}
	};
})();

// ui.js: notifications, handlers, a modal, and the widgets form.js renders.
var UIElement = Class.extend({
	isValid: function() { return (this.validState !== false); },
	getValidationError: function() { return this.validationError || ''; },
	triggerValidation: function() {
		if (typeof(this.vfunc) != 'function')
			return false;
		var wasValid = this.isValid();
		this.vfunc();
		return (wasValid != this.isValid());
	},
	setUpdateEvents: function(targetNode) {
		var events = Array.prototype.slice.call(arguments, 1);
		var optional = this.options.hasOwnProperty('optional') ? this.options.optional : true;
		if (!this.options.datatype && !this.options.validate)
			return;
		this.vfunc = validation.create(targetNode, this.options.datatype || 'string', optional, this.options.validate);
		for (var i = 0; i < events.length; i++)
			targetNode.addEventListener(events[i], this.vfunc);
		this.node.addEventListener('validation-success', L.bind(function() {
			this.validState = true;
			this.validationError = '';
		}, this));
		this.node.addEventListener('validation-failure', L.bind(function(ev) {
			this.validState = false;
			this.validationError = ev.detail.message;
		}, this));
	}
});

var UITextfield = UIElement.extend({
	__init__: function(value, options) { this.value = value; this.options = Object.assign({}, options); },
	render: function() {
		var frameEl = E('div', { 'id': this.options.id });
		frameEl.appendChild(E('input', {
			'id': this.options.id ? 'widget.' + this.options.id : null,
			'type': 'text', 'class': 'cbi-input-text',
			'placeholder': this.options.placeholder, 'value': this.value
		}));
		this.node = frameEl;
		this.setUpdateEvents(frameEl.querySelector('input'), 'keyup', 'blur');
		dom.bindClassInstance(frameEl, this);
		return frameEl;
	},
	getValue: function() { return this.node.querySelector('input').value; },
	setValue: function(value) { this.node.querySelector('input').value = value; }
});

var UICheckbox = UIElement.extend({
	__init__: function(value, options) {
		this.value = value;
		this.options = Object.assign({ value_enabled: '1', value_disabled: '0' }, options);
	},
	render: function() {
		var frameEl = E('div', { 'id': this.options.id, 'class': 'cbi-checkbox' });
		frameEl.appendChild(E('input', {
			'type': 'checkbox', 'value': this.options.value_enabled,
			'checked': (this.value == this.options.value_enabled) ? '' : null
		}));
		frameEl.appendChild(E('label', {}));
		this.node = frameEl;
		this.setUpdateEvents(frameEl.querySelector('input'), 'click', 'blur');
		dom.bindClassInstance(frameEl, this);
		return frameEl;
	},
	isChecked: function() { return this.node.querySelector('input[type="checkbox"]').checked; },
	getValue: function() { return this.isChecked() ? this.options.value_enabled : this.options.value_disabled; },
	setValue: function(value) { this.node.querySelector('input[type="checkbox"]').checked = (value == this.options.value_enabled); }
});

// The list's items, and an input to add one (validated like a Textfield).
var UIDynamicList = UIElement.extend({
	__init__: function(values, options) { this.values = L.toArray(values); this.options = Object.assign({}, options); },
	render: function() {
		var frameEl = E('div', { 'id': this.options.id, 'class': 'cbi-dynlist' }, this.values.map(function(v) {
			return E('div', { 'class': 'item', 'data-value': v }, [ E('span', {}, [ v ]) ]);
		}));
		frameEl.appendChild(E('div', { 'class': 'add-item' }, E('input', {
			'type': 'text', 'class': 'cbi-input-text', 'placeholder': this.options.placeholder
		})));
		this.node = frameEl;
		this.setUpdateEvents(frameEl.querySelector('.add-item input'), 'keyup', 'blur');
		dom.bindClassInstance(frameEl, this);
		return frameEl;
	},
	getValue: function() {
		var items = Array.prototype.map.call(this.node.querySelectorAll('.item'), function(i) { return i.getAttribute('data-value'); });
		var pending = this.node.querySelector('.add-item input').value;
		return pending ? items.concat([ pending ]) : items;
	},
	setValue: function(value) { this.node.querySelector('.add-item input').value = value; }
});

var ui = Class.singleton({
	addNotification: function(title, children) {
		var classes = Array.prototype.slice.call(arguments, 2);
		var mc = document.querySelector('#maincontent') || document.body;
		var msg = E('div', { 'class': 'alert-message fade-in', 'style': 'display:flex' }, [
			E('div', { 'style': 'flex:10' }),
			E('div', { 'style': 'flex:1 1 auto; display:flex' }, [
				E('button', { 'class': 'btn', 'click': function(ev) {
					dom.parent(ev.target, '.alert-message').remove();
				} }, [ _('Dismiss') ])
			])
		]);
		if (title != null)
			dom.append(msg.firstElementChild, E('h4', {}, title));
		dom.append(msg.firstElementChild, children);
		for (var i = 0; i < classes.length; i++)
			msg.classList.add(classes[i]);
		mc.insertBefore(msg, mc.firstElementChild);
		return msg;
	},
	createHandlerFn: function(ctx, fn) {
		var args = Array.prototype.slice.call(arguments, 2);
		if (typeof(fn) == 'string')
			fn = ctx[fn];
		if (typeof(fn) != 'function')
			return null;
		return function() {
			var callArgs = args.concat(Array.prototype.slice.call(arguments));
			var t = callArgs[args.length].currentTarget;
			t.classList.add('spinning');
			t.disabled = true;
			Promise.resolve(fn.apply(ctx, callArgs)).finally(function() {
				t.classList.remove('spinning');
				t.disabled = false;
			});
		};
	},
	showModal: function(title, children) {
		var dlg = document.getElementById('modal_overlay') ||
			document.body.appendChild(E('div', { 'id': 'modal_overlay' }, E('div', { 'class': 'modal' })));
		dom.content(dlg.firstElementChild, [ title ? E('h4', {}, title) : '' ].concat(children));
		document.body.classList.add('modal-overlay-active');
		return dlg.firstElementChild;
	},
	hideModal: function() { document.body.classList.remove('modal-overlay-active'); },
	Textfield: UITextfield, Checkbox: UICheckbox, DynamicList: UIDynamicList, AbstractElement: UIElement
});

// uci.js: the config cache, staged changes and save through rpc.
var uci = Class.singleton({
	__init__: function() {
		this.state = { values: {}, changes: {}, deletes: {} };
		this.loaded = {};
	},
	callLoad: rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], expect: { values: { } }, reject: true }),
	callSet: rpc.declare({ object: 'uci', method: 'set', params: [ 'config', 'section', 'values' ], reject: true }),
	callDelete: rpc.declare({ object: 'uci', method: 'delete', params: [ 'config', 'section', 'options' ], reject: true }),

	load: function(config) {
		var self = this;
		if (!self.loaded[config])
			self.loaded[config] = self.callLoad(config).then(function(values) {
				self.state.values[config] = values;
				return config;
			});
		return self.loaded[config];
	},
	unload: function(config) {
		delete this.state.values[config];
		delete this.state.changes[config];
		delete this.state.deletes[config];
		delete this.loaded[config];
	},
	sections: function(conf, type) {
		var v = this.state.values[conf] || {};
		return Object.keys(v).map(function(sid) { return v[sid]; }).filter(function(s) {
			return type == null || s['.type'] == type;
		}).sort(function(a, b) { return a['.index'] - b['.index']; });
	},
	get: function(conf, sid, opt) {
		var v = this.state.values, c = this.state.changes, d = this.state.deletes;
		if (sid == null)
			return null;
		if (opt == null)
			return (v[conf] && v[conf][sid]) || null;
		if (d[conf] && d[conf][sid] && (d[conf][sid] === true || d[conf][sid][opt]))
			return null;
		if (c[conf] && c[conf][sid] && c[conf][sid][opt] !== undefined)
			return c[conf][sid][opt];
		return (v[conf] && v[conf][sid]) ? v[conf][sid][opt] : undefined;
	},
	set: function(conf, sid, opt, val) {
		var v = this.state.values, c = this.state.changes, d = this.state.deletes;
		if (sid == null || opt == null || opt.charAt(0) == '.')
			return;
		if (val != null && val !== '') {
			if (!(v[conf] && v[conf][sid]))
				return;
			c[conf] = c[conf] || {};
			c[conf][sid] = c[conf][sid] || {};
			if (d[conf] && d[conf][sid])
				delete d[conf][sid][opt];
			c[conf][sid][opt] = val;
		}
		else {
			if (c[conf] && c[conf][sid])
				delete c[conf][sid][opt];
			if (v[conf] && v[conf][sid] && v[conf][sid].hasOwnProperty(opt)) {
				d[conf] = d[conf] || {};
				d[conf][sid] = d[conf][sid] || {};
				d[conf][sid][opt] = true;
			}
		}
	},
	unset: function(conf, sid, opt) { return this.set(conf, sid, opt, null); },
	save: function() {
		var self = this, c = this.state.changes, d = this.state.deletes, tasks = [], pkgs = {};
		for (var conf in d) {
			for (var sid in d[conf])
				if (Object.keys(d[conf][sid]).length)
					tasks.push(self.callDelete(conf, sid, Object.keys(d[conf][sid])));
			pkgs[conf] = true;
		}
		for (conf in c) {
			for (sid in c[conf])
				if (Object.keys(c[conf][sid]).length)
					tasks.push(self.callSet(conf, sid, c[conf][sid]));
			pkgs[conf] = true;
		}
		return Promise.all(tasks).then(function() {
			pkgs = Object.keys(pkgs);
			pkgs.forEach(function(p) { self.unload(p); });
			return Promise.all(pkgs.map(function(p) { return self.load(p); }));
		});
	}
});

var View = Class.extend({
	__init__: function() {
		var vp = document.getElementById('view');
		dom.content(vp, E('div', { 'class': 'spinning' }, _('Loading view…')));
		return Promise.resolve()
			.then(L.bind(this.load, this))
			.then(L.bind(this.render, this))
			.then(L.bind(function(nodes) {
				dom.content(vp, nodes);
				dom.append(vp, this.addFooter());
				document.body.setAttribute('data-rendered', 'yes');
			}, this)).catch(function(e) {
				document.body.setAttribute('data-rendered', 'yes');
				document.body.setAttribute('data-error', String(e && e.message || e));
				try { L.error(e); } catch (reported) { return; }
			});
	},
	load: function() {},
	render: function() {},
	handleSave: function() {
		var tasks = [];
		document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach(function(map) {
			tasks.push(dom.callClassMethod(map, 'save'));
		});
		return Promise.all(tasks);
	},
	handleSaveApply: function(ev) { return this.handleSave(ev); },
	handleReset: function() {
		var tasks = [];
		document.getElementById('maincontent').querySelectorAll('.cbi-map').forEach(function(map) {
			tasks.push(dom.callClassMethod(map, 'reset'));
		});
		return Promise.all(tasks);
	},
	addFooter: function() {
		var footer = E([]);
		if (this.handleSaveApply || this.handleSave || this.handleReset) {
			footer.appendChild(E('div', { 'class': 'cbi-page-actions' }, [
				this.handleSaveApply ? E('button', { 'class': 'btn cbi-button cbi-button-apply important',
					'click': ui.createHandlerFn(this, 'handleSaveApply') }, [ _('Save & Apply') ]) : '', ' ',
				this.handleSave ? E('button', { 'class': 'cbi-button cbi-button-save',
					'click': ui.createHandlerFn(this, 'handleSave') }, [ _('Save') ]) : '', ' ',
				this.handleReset ? E('button', { 'class': 'cbi-button cbi-button-reset',
					'click': ui.createHandlerFn(this, 'handleReset') }, [ _('Reset') ]) : ''
			]));
		}
		return footer;
	}
});

// form.js
var form = (function() {
	var CBIAbstractElement = Class.extend({
		__init__: function(title, description) {
			this.title = title || '';
			this.description = description || '';
			this.children = [];
		},
		append: function(obj) { this.children.push(obj); },
		stripTags: function(s) { return String(s == null ? '' : s).replace(/<[^>]*>/g, ''); }
	});

	var CBIMap = CBIAbstractElement.extend({
		__init__: function(config, title, description) {
			CBIAbstractElement.prototype.__init__.call(this, title, description);
			this.config = config;
			this.data = uci;
			window.FORM_MAP = this;
		},
		findElements: function(attr, value) {
			return this.root ? this.root.querySelectorAll('[' + attr + '="' + value + '"]') : [];
		},
		findElement: function(attr, value) {
			var elems = this.findElements(attr, value);
			return elems.length ? elems[0] : null;
		},
		section: function(cbiClass) {
			var obj = Object.create(cbiClass.prototype);
			cbiClass.apply(obj, [ this ].concat(Array.prototype.slice.call(arguments, 1)));
			this.append(obj);
			return obj;
		},
		load: function() {
			var self = this;
			return this.data.load(this.config).then(function() {
				return Promise.all(self.children.map(function(s) { return s.load(); }));
			});
		},
		parse: function() {
			return Promise.all(this.children.map(function(s) { return s.parse(); }));
		},
		save: function(cb, silent) {
			var self = this;
			this.checkDepends();
			return this.parse()
				.then(cb)
				.then(function() { return self.data.save(); })
				.then(function() { return self.load(); })
				.catch(function(e) {
					if (!silent)
						ui.showModal(_('Save error'), [
							E('p', {}, [ _('An error occurred while saving the form:') ]),
							E('p', {}, [ E('em', { 'style': 'white-space:pre-wrap' }, [ e.message ]) ])
						]);
					return Promise.reject(e);
				}).then(function() { return self.renderContents(); });
		},
		reset: function() { return this.render(); },
		render: function() {
			var self = this;
			return this.load().then(function() { return self.renderContents(); });
		},
		renderContents: function() {
			var self = this;
			var mapEl = this.root || (this.root = E('div', { 'id': 'cbi-' + this.config, 'class': 'cbi-map' }));
			dom.bindClassInstance(mapEl, this);
			return Promise.all(this.children.map(function(s) { return s.render(); })).then(function(nodes) {
				dom.content(mapEl, null);
				if (self.title != null && self.title != '')
					mapEl.appendChild(E('h2', { 'name': 'content' }, self.title));
				if (self.description != null && self.description != '')
					mapEl.appendChild(E('div', { 'class': 'cbi-map-descr' }, self.description));
				dom.append(mapEl, nodes);
				self.checkDepends();
				return mapEl;
			});
		},
		checkDepends: function(ev, n) {
			var changed = false;
			for (var i = 0; i < this.children.length; i++)
				if (this.children[i].checkDepends(ev, n))
					changed = true;
			if (changed && (n || 0) < 10)
				this.checkDepends(ev, (n || 10) + 1);
		},
		lookupOption: function(name, section_id) {
			for (var i = 0; i < this.children.length; i++) {
				var s = this.children[i];
				if (s.cfgsections().indexOf(section_id) < 0)
					continue;
				for (var j = 0; j < s.children.length; j++)
					if (s.children[j].option == name)
						return [ s.children[j], section_id ];
			}
			return null;
		},
		isDependencySatisfied: function(depends, config_name, section_id) {
			if (!Array.isArray(depends) || !depends.length)
				return true;
			for (var i = 0; i < depends.length; i++) {
				var istat = true, reverse = depends[i]['!reverse'];
				for (var dep in depends[i]) {
					if (dep == '!reverse' || dep == '!default')
						continue;
					var res = this.lookupOption(dep, section_id);
					var val = (res && res[0].isActive(res[1])) ? res[0].formvalue(res[1]) : null;
					istat = istat && (val == depends[i][dep]);
				}
				if (istat ^ !!reverse)
					return true;
			}
			return false;
		}
	});

	var CBIAbstractSection = CBIAbstractElement.extend({
		__init__: function(map, sectionType, title, description) {
			CBIAbstractElement.prototype.__init__.call(this, title, description);
			this.sectiontype = sectionType;
			this.map = map;
			this.config = map.config;
			this.optional = true;
			this.addremove = false;
			this.dynamic = false;
		},
		cfgsections: function() { return []; },
		filter: function() { return true; },
		tab: function(name, title, description) {
			this.tabs = this.tabs || {};
			this.tab_names = this.tab_names || [];
			this.tab_names.push(name);
			this.tabs[name] = { name: name, title: title, description: description, children: [] };
		},
		option: function(cbiClass) {
			var obj = Object.create(cbiClass.prototype);
			cbiClass.apply(obj, [ this.map, this ].concat(Array.prototype.slice.call(arguments, 1)));
			this.append(obj);
			return obj;
		},
		taboption: function(tabName) {
			if (!this.tabs || !this.tabs[tabName])
				throw new ReferenceError('Associated tab not declared');
			var obj = this.option.apply(this, Array.prototype.slice.call(arguments, 1));
			obj.tab = tabName;
			this.tabs[tabName].children.push(obj);
			return obj;
		},
		load: function() {
			var self = this;
			this.cfgsections().forEach(function(sid) {
				self.children.forEach(function(o) { o.cfgvalue(sid, o.load(sid)); });
			});
			return Promise.resolve();
		},
		parse: function() {
			var self = this, tasks = [];
			this.cfgsections().forEach(function(sid) {
				self.children.forEach(function(o) { tasks.push(o.parse(sid)); });
			});
			return Promise.all(tasks);
		},
		formvalue: function(section_id, option) {
			for (var i = 0, o; (o = this.children[i]) != null; i++)
				if (o.option == option)
					return this.map.root ? o.formvalue(section_id) : o.cfgvalue(section_id);
			return null;
		},
		cfgvalue: function(section_id, option) {
			for (var i = 0, o; (o = this.children[i]) != null; i++)
				if (o.option == option)
					return o.cfgvalue(section_id);
			return null;
		},
		checkDepends: function(ev, n) {
			var changed = false, sids = this.cfgsections();
			for (var i = 0; i < sids.length; i++)
				for (var j = 0, o; (o = this.children[j]) != null; j++) {
					var isActive = o.isActive(sids[i]), isSatisfied = o.checkDepends(sids[i]);
					if (isActive != isSatisfied) {
						o.setActive(sids[i], !isActive);
						changed = true;
					}
				}
			return changed;
		},
		renderOptions: function(tab_name, section_id) {
			var children = this.children.filter(function(o) {
				return !o.disable && (tab_name == null || o.tab == tab_name);
			});
			return Promise.all(children.map(function(o, i) { return o.render(i, section_id, false); }));
		},
		renderUCISection: function(section_id) {
			var self = this;
			if (!this.tabs)
				return this.renderOptions(null, section_id);
			// ui.tabs.initTabGroup: a menu of the tabs' titles above the panes.
			var menu = E('ul', { 'class': 'cbi-tabmenu' }, this.tab_names.map(function(name, i) {
				return E('li', { 'class': i ? 'cbi-tab-disabled' : 'cbi-tab', 'data-tab': name },
					[ E('a', { 'href': '#' }, [ self.tabs[name].title ]) ]);
			}));
			return Promise.all(this.tab_names.map(function(name) {
				var tab = self.tabs[name];
				return self.renderOptions(name, section_id).then(function(nodes) {
					return E('div', { 'id': 'container.%s.%s.%s'.format(self.config, section_id, name),
						'data-tab': name, 'data-tab-title': tab.title }, [
						tab.description ? E('div', { 'class': 'cbi-tab-descr' }, tab.description) : ''
					].concat(nodes));
				});
			})).then(function(panes) { return [ menu ].concat(panes); });
		},
		render: function() {
			var self = this, sids = this.cfgsections();
			return Promise.all(sids.map(function(sid) { return self.renderUCISection(sid); })).then(function(nodes) {
				return self.renderContents(sids, nodes);
			});
		}
	});

	var CBITypedSection = CBIAbstractSection.extend({
		cfgsections: function() {
			var self = this;
			return this.map.data.sections(this.config, this.sectiontype).map(function(s) { return s['.name']; })
				.filter(function(sid) { return self.filter(sid); });
		},
		renderContents: function(cfgsections, nodes) {
			var sectionEl = E('div', { 'id': 'cbi-%s-%s'.format(this.config, this.sectiontype), 'class': 'cbi-section' });
			if (this.title != null && this.title != '')
				sectionEl.appendChild(E('h3', {}, this.title));
			if (this.description != null && this.description != '')
				sectionEl.appendChild(E('div', { 'class': 'cbi-section-descr' }, this.description));
			for (var i = 0; i < nodes.length; i++) {
				if (!this.anonymous)
					sectionEl.appendChild(E('h3', cfgsections[i].toUpperCase()));
				sectionEl.appendChild(E('div', { 'id': 'cbi-%s-%s'.format(this.config, cfgsections[i]),
					'data-section-id': cfgsections[i] }, nodes[i]));
			}
			if (nodes.length == 0)
				sectionEl.appendChild(E('em', _('This section contains no values yet')));
			dom.bindClassInstance(sectionEl, this);
			return sectionEl;
		}
	});

	var CBINamedSection = CBIAbstractSection.extend({
		__init__: function(map, section_id) {
			CBIAbstractSection.prototype.__init__.apply(this, [ map ].concat(Array.prototype.slice.call(arguments, 2)));
			this.section = section_id;
		},
		cfgsections: function() { return [ this.section ]; },
		load: function() {
			return this.map.data.get(this.config, this.section) ? CBIAbstractSection.prototype.load.call(this) : Promise.resolve();
		},
		parse: function() {
			return this.map.data.get(this.config, this.section) ? CBIAbstractSection.prototype.parse.call(this) : Promise.resolve();
		},
		render: function() {
			var self = this, sid = this.section;
			var ucidata = this.map.data.get(this.config, sid);
			return Promise.resolve(ucidata ? this.renderUCISection(sid) : null).then(function(nodes) {
				var sectionEl = E('div', { 'id': ucidata ? null : 'cbi-%s-%s'.format(self.config, sid), 'class': 'cbi-section' });
				if (typeof(self.title) === 'string' && self.title !== '')
					sectionEl.appendChild(E('h3', {}, self.title));
				if (typeof(self.description) === 'string' && self.description !== '')
					sectionEl.appendChild(E('div', { 'class': 'cbi-section-descr' }, self.description));
				if (ucidata)
					sectionEl.appendChild(E('div', { 'id': 'cbi-%s-%s'.format(self.config, sid),
						'class': self.tabs ? 'cbi-section-node cbi-section-node-tabbed' : 'cbi-section-node',
						'data-section-id': sid }, nodes));
				dom.bindClassInstance(sectionEl, self);
				return sectionEl;
			});
		}
	});

	var CBIGridSection = CBITypedSection.extend({
		renderUCISection: function(section_id) {
			var tasks = [], index = 0;
			for (var i = 0, opt; (opt = this.children[i]) != null; i++) {
				if (opt.disable || opt.modalonly)
					continue;
				if (opt.editable)
					tasks.push(opt.render(index++, section_id, true));
				else
					tasks.push(this.renderTextValue(section_id, opt));
			}
			return Promise.all(tasks);
		},
		renderTextValue: function(section_id, opt) {
			var value = opt.textvalue(section_id);
			return E('td', { 'class': 'td cbi-value-field', 'data-title': this.stripTags(opt.title).trim() || null,
				'data-name': opt.option, 'data-widget': 'CBI.DummyValue' }, (value != null) ? value : E('em', _('none')));
		},
		renderContents: function(cfgsections, nodes) {
			var self = this;
			var sectionEl = E('div', { 'id': 'cbi-%s-%s'.format(this.config, this.sectiontype), 'class': 'cbi-section cbi-tblsection' });
			var tableEl = E('table', { 'class': 'table cbi-section-table' });
			if (this.title != null && this.title != '')
				sectionEl.appendChild(E('h3', {}, this.title));
			if (this.description != null && this.description != '')
				sectionEl.appendChild(E('div', { 'class': 'cbi-section-descr' }, this.description));
			var titles = E('tr', { 'class': 'tr cbi-section-table-titles' });
			if (!this.anonymous)
				titles.appendChild(E('th', { 'class': 'th cbi-section-table-cell' }, _('Name')));
			this.children.forEach(function(opt) {
				if (opt.modalonly || opt.disable)
					return;
				titles.appendChild(E('th', { 'class': 'th cbi-section-table-cell', 'data-widget': opt.__name__ }, opt.title));
			});
			titles.appendChild(E('th', { 'class': 'th cbi-section-table-cell cbi-section-actions' }));
			tableEl.appendChild(titles);
			cfgsections.forEach(function(sid, i) {
				var trEl = E('tr', { 'class': 'tr cbi-section-table-row', 'id': 'cbi-%s-%s'.format(self.config, sid), 'data-sid': sid });
				if (!self.anonymous)
					trEl.appendChild(E('td', { 'class': 'td cbi-value-field cbi-section-table-titles' }, sid));
				dom.append(trEl, nodes[i]);
				trEl.appendChild(E('td', { 'class': 'td cbi-section-table-cell nowrap cbi-section-actions' }, E('div', {}, [
					E('button', { 'class': 'btn cbi-button cbi-button-edit',
						'click': ui.createHandlerFn(self, 'renderMoreOptionsModal', sid) }, [ _('Edit') ])
				])));
				tableEl.appendChild(trEl);
			});
			if (nodes.length == 0)
				tableEl.appendChild(E('tr', { 'class': 'tr cbi-section-table-row placeholder' },
					E('td', { 'class': 'td' }, E('em', {}, _('This section contains no values yet')))));
			sectionEl.appendChild(tableEl);
			dom.bindClassInstance(sectionEl, this);
			return sectionEl;
		},
		parse: function() {
			var self = this, tasks = [];
			this.cfgsections().forEach(function(sid) {
				self.children.forEach(function(o) {
					if (o.editable && !o.modalonly)
						tasks.push(o.parse(sid));
				});
			});
			return Promise.all(tasks);
		},
		// The edit dialog: every option of the section, cloned onto a Map of
		// its own (form.js cloneOptions, renderMoreOptionsModal).
		renderMoreOptionsModal: function(section_id) {
			var m = new CBIMap(this.map.config, null, null);
			window.FORM_MAP = this.map;
			var s = m.section(CBINamedSection, section_id, this.sectiontype);
			m.parent = this.map;
			this.children.forEach(function(o) {
				var clone = Object.create(o);
				clone.map = m;
				clone.section = s;
				clone.data = {};
				s.children.push(clone);
			});
			this.modalMap = m;
			return m.render().then(function(node) {
				ui.showModal(section_id, [ node ]);
				return node;
			});
		}
	});

	var CBIAbstractValue = CBIAbstractElement.extend({
		__init__: function(map, section, option, title, description) {
			CBIAbstractElement.prototype.__init__.call(this, title, description);
			this.section = section;
			this.option = option;
			this.map = map;
			this.config = map.config;
			this.deps = [];
			this.rmempty = true;
			this.default = null;
			this.optional = false;
		},
		depends: function(field, value) {
			var deps;
			if (typeof(field) === 'string')
				deps = {}, deps[field] = value;
			else
				deps = field;
			this.deps.push(deps);
		},
		cbid: function(section_id) { return 'cbid.%s.%s.%s'.format(this.config, section_id, this.option); },
		load: function(section_id) { return this.map.data.get(this.config, section_id, this.option); },
		cfgvalue: function(section_id, set_value) {
			if (arguments.length == 2) {
				this.data = this.data || {};
				this.data[section_id] = set_value;
			}
			return this.data ? this.data[section_id] : undefined;
		},
		getUIElement: function(section_id) {
			var node = this.map.findElement('id', this.cbid(section_id));
			var inst = node ? dom.findClassInstance(node) : null;
			return (inst instanceof UIElement) ? inst : null;
		},
		formvalue: function(section_id) {
			var elem = this.getUIElement(section_id);
			return elem ? elem.getValue() : null;
		},
		textvalue: function(section_id) {
			var cval = this.cfgvalue(section_id);
			if (cval == null)
				cval = this.default;
			if (Array.isArray(cval))
				cval = cval.join(' ');
			return (cval != null) ? '%h'.format(cval) : null;
		},
		validate: function() { return true; },
		getValidator: function(section_id) { return L.bind(this.validate, this, section_id); },
		isValid: function(section_id) {
			var elem = this.getUIElement(section_id);
			return elem ? elem.isValid() : true;
		},
		getValidationError: function(section_id) {
			var elem = this.getUIElement(section_id);
			return elem ? elem.getValidationError() : '';
		},
		isActive: function(section_id) {
			var field = this.map.findElement('data-field', this.cbid(section_id));
			return (field != null && !field.classList.contains('hidden'));
		},
		setActive: function(section_id, active) {
			var field = this.map.findElement('data-field', this.cbid(section_id));
			if (field && field.classList.contains('hidden') == active)
				field.classList[active ? 'remove' : 'add']('hidden');
		},
		checkDepends: function(section_id) {
			return this.map.isDependencySatisfied(this.deps, this.config, section_id);
		},
		render: function(option_index, section_id, in_table) {
			var self = this;
			return Promise.resolve(this.renderWidget(section_id, option_index, this.cfgvalue(section_id))).then(function(widget) {
				return self.renderFrame(section_id, in_table, option_index, widget);
			});
		},
		renderFrame: function(section_id, in_table, option_index, nodes) {
			var id = 'cbi-%s-%s-%s'.format(this.config, section_id, this.option), optionEl;
			if (in_table) {
				optionEl = E('td', { 'class': 'td cbi-value-field', 'data-title': this.stripTags(this.title).trim() || null,
					'data-name': this.option, 'data-widget': this.__name__ },
					E('div', { 'id': id, 'data-index': option_index, 'data-field': this.cbid(section_id) }));
			}
			else {
				optionEl = E('div', { 'class': 'cbi-value', 'id': id, 'data-index': option_index,
					'data-field': this.cbid(section_id), 'data-name': this.option, 'data-widget': this.__name__ });
				if (typeof(this.title) === 'string' && this.title !== '') {
					optionEl.appendChild(E('label', { 'class': 'cbi-value-title' }, this.title));
					optionEl.appendChild(E('div', { 'class': 'cbi-value-field' }));
				}
			}
			if (nodes)
				(optionEl.lastChild || optionEl).appendChild(nodes);
			if (!in_table && typeof(this.description) === 'string' && this.description !== '')
				dom.append(optionEl.lastChild || optionEl, E('div', { 'class': 'cbi-value-description' }, this.description.trim()));
			if (this.deps.length)
				((in_table ? optionEl.firstChild : optionEl)).classList.add('hidden');
			return optionEl;
		},
		parse: function(section_id) {
			var active = this.isActive(section_id);
			if (active && !this.isValid(section_id)) {
				var title = this.stripTags(this.title).trim();
				return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.').format(title || this.option)
					+ ' ' + this.getValidationError(section_id)));
			}
			if (active) {
				var cval = this.cfgvalue(section_id), fval = this.formvalue(section_id);
				if (fval == null || fval == '') {
					if (this.rmempty || this.optional)
						return Promise.resolve(this.remove(section_id));
					return Promise.reject(new TypeError(_('Option "%s" must not be empty.').format(this.stripTags(this.title).trim() || this.option)));
				}
				else if (this.forcewrite || JSON.stringify(cval) !== JSON.stringify(fval)) {
					return Promise.resolve(this.write(section_id, fval));
				}
			}
			else if (!this.retain) {
				return Promise.resolve(this.remove(section_id));
			}
			return Promise.resolve();
		},
		write: function(section_id, formvalue) { return this.map.data.set(this.config, section_id, this.option, formvalue); },
		remove: function(section_id) { return this.map.data.unset(this.config, section_id, this.option); }
	});

	var CBIValue = CBIAbstractValue.extend({
		__name__: 'CBI.Value',
		renderWidget: function(section_id, option_index, cfgvalue) {
			var value = (cfgvalue != null) ? cfgvalue : this.default;
			return new UITextfield(Array.isArray(value) ? value.join(' ') : value, {
				id: this.cbid(section_id), optional: this.optional || this.rmempty,
				datatype: this.datatype, placeholder: this.placeholder, validate: this.getValidator(section_id)
			}).render();
		}
	});

	var CBIDynamicList = CBIValue.extend({
		__name__: 'CBI.DynamicList',
		renderWidget: function(section_id, option_index, cfgvalue) {
			var value = (cfgvalue != null) ? cfgvalue : this.default;
			return new UIDynamicList(L.toArray(value), {
				id: this.cbid(section_id), optional: this.optional || this.rmempty,
				datatype: this.datatype, placeholder: this.placeholder, validate: this.getValidator(section_id)
			}).render();
		}
	});

	var CBIFlagValue = CBIValue.extend({
		__name__: 'CBI.FlagValue',
		__init__: function() {
			CBIValue.prototype.__init__.apply(this, arguments);
			this.enabled = '1';
			this.disabled = '0';
			this.default = this.disabled;
		},
		renderWidget: function(section_id, option_index, cfgvalue) {
			return new UICheckbox((cfgvalue != null) ? cfgvalue : this.default, {
				id: this.cbid(section_id), value_enabled: this.enabled, value_disabled: this.disabled,
				validate: this.getValidator(section_id)
			}).render();
		},
		formvalue: function(section_id) {
			var elem = this.getUIElement(section_id);
			var checked = elem ? elem.isChecked() : false;
			return checked ? this.enabled : this.disabled;
		},
		textvalue: function(section_id) {
			var cval = this.cfgvalue(section_id);
			if (cval == null)
				cval = this.default;
			return (cval == this.enabled) ? _('Yes') : _('No');
		},
		parse: function(section_id) {
			if (this.isActive(section_id)) {
				var fval = this.formvalue(section_id);
				if (!this.isValid(section_id))
					return Promise.reject(new TypeError(_('Option "%s" contains an invalid input value.').format(this.option)));
				if (fval == this.default && (this.optional || this.rmempty))
					return Promise.resolve(this.remove(section_id));
				return Promise.resolve(this.write(section_id, fval));
			}
			else if (!this.retain) {
				return Promise.resolve(this.remove(section_id));
			}
			return Promise.resolve();
		}
	});

	return Class.singleton({
		Map: CBIMap, TypedSection: CBITypedSection, NamedSection: CBINamedSection, GridSection: CBIGridSection,
		Value: CBIValue, DynamicList: CBIDynamicList, Flag: CBIFlagValue
	});
})();

var modules = { baseclass: Class, dom: dom, poll: Poll, rpc: rpc, ui: ui, view: View, form: form, uci: uci, request: request };

// LuCI's loader: a module is the body of a function whose parameters are
// its 'require' lines (the module's last name, or the `as` name); a class
// it returns is instantiated. The app's own modules (window.LUCI_SOURCES,
// by name) load once, as L.require caches them.
function require(source) {
	var names = [], values = [], re = /^'require ([\w.]+)(?: as (\w+))?';/gm, m;
	while ((m = re.exec(source)) != null) {
		if (!(m[1] in modules) && window.LUCI_SOURCES && m[1] in window.LUCI_SOURCES)
			modules[m[1]] = require(window.LUCI_SOURCES[m[1]]);
		if (!(m[1] in modules))
			throw new Error('the shim has no module ' + m[1]);
		names.push(m[2] || m[1].split('.').pop());
		values.push(modules[m[1]]);
	}
	var v = Function.apply(null, names.concat([ source ])).apply(null, values);
	return (typeof(v) == 'function' && v.prototype instanceof Class) ? new v() : v;
}

// luci.js initDOM: the poller starts (with nothing to do) before any view.
Poll.start();

// Open a view as the dispatcher does.
window.luciView = function(source) { require(source); };

// Status > Overview with these includes (luci-mod-status view/status/index.js).
window.luciOverview = function(sources) {
	var Overview = View.extend({
		load: function() { return sources.map(require); },
		poll_status: function(includes, containers) {
			return Promise.all(includes.map(function(inc) {
				return typeof(inc.load) == 'function'
					? inc.load().catch(function() { inc.failed = true; }) : null;
			})).then(function(results) {
				for (var i = 0; i < includes.length; i++) {
					if (includes[i].failed)
						continue;
					var content = includes[i].render(results[i]);
					if (content != null) {
						containers[i].parentNode.style.display = '';
						dom.content(containers[i], content);
					}
				}
			});
		},
		render: function(includes) {
			var rv = E([]), containers = [];
			includes.forEach(function(inc) {
				var container = E('div');
				rv.appendChild(E('div', { 'class': 'cbi-section', 'style': 'display: none' }, [
					E('div', { 'class': 'cbi-title' }, [ E('h3', {}, [ inc.title || '-' ]) ]),
					container
				]));
				containers.push(container);
			});
			return this.poll_status(includes, containers).then(L.bind(function() {
				return Poll.add(L.bind(this.poll_status, this, includes, containers));
			}, this)).then(function() { return rv; });
		},
		handleSaveApply: null,
		handleSave: null,
		handleReset: null
	});
	new Overview();
};

// Test hook: type `value` into the widget of `option` in `section_id` (in
// the page, or else in the section's edit dialog) and validate it as the
// widget does on keyup; true or the message a person sees.
window.luciValidate = function(section_id, option, value) {
	var map = window.FORM_MAP;
	var found = map.lookupOption(option, section_id);
	if (!found)
		throw new Error('no option ' + option + ' in ' + section_id);
	var o = found[0], elem = o.getUIElement(section_id);
	var ready = Promise.resolve(elem);
	if (!elem)
		ready = o.section.renderMoreOptionsModal(section_id).then(function() {
			return o.section.modalMap.lookupOption(option, section_id)[0].getUIElement(section_id);
		});
	return ready.then(function(widget) {
		widget.setValue(value);
		widget.triggerValidation();
		return widget.isValid() ? true : widget.getValidationError();
	});
};

})();
