// A stand-in for LuCI's client runtime (luci-base), written for the tests
// of luci-app-ntpgate: it runs the app's views in headless Chromium without
// a router. It holds only what the views use, each part written from the
// behaviour LuCI documents (its API reference, the JSDoc in luci-base) and
// from what shared/fixtures/luci shows of the real stack; LuCI's sources
// were read for behaviour only, none of their code is here. What each
// part does, and where that is shown:
//
// - Requests to the ubus endpoint (luci.js `Request`): the JSON-RPC
//   requests made together go out as one JSON array, and each caller gets
//   the answer at its own position (luci.js has batched ubus calls so
//   since 2019; uhttpd answers an array element by element,
//   tests/luci/uhttpd.rs). luci.js sends the batch at the next animation
//   frame, the shim at the next task: headless Chromium's virtual time
//   holds animation frames back by seconds. Calls made in the same task
//   (uci save's, or Promise.all's) go together either way. The endpoint is found as luci.js finds it at
//   start: a `list` request to L.env.ubuspath, used when it answers HTTP
//   200, else LuCI's own admin/ubus. A request times out after
//   L.env.rpctimeout (20) seconds.
// - rpc (`LuCI.rpc.declare`): a declared call sends `{"jsonrpc": "2.0",
//   "id", "method": "call", "params": [session, object, method, args]}`,
//   the args named by `params` (an array of names) from the call's first
//   arguments. A JSON-RPC `error` rejects; a ubus status other than 0 in
//   `result[0]` (a missing one too) rejects only when the call was
//   declared with `reject: true`, and otherwise the call RESOLVES with the
//   bare number; with data, the value is `result[1]`
//   (shared/fixtures/luci/README.md, "How rpc.js treats the answer"). Then
//   `expect`, by its first key only: '' keeps the value, another key picks
//   that field; a missing value or one of another kind (Object.prototype.
//   toString) than the expected is replaced by the expected one. Then
//   `filter(value, args, extra arguments...)` makes the result (luci-base
//   rpc.js `declare`, `handleCallReply`). The messages of the rejections
//   are rpc.js's, word for word, because the app reads them: ntpgate.js
//   `explain()` matches "with error -32000: " and "with ubus code N: TEXT"
//   and shows TEXT, rpc.js's name of the status (`getStatusText`).
// - poll (`LuCI.poll.add`): a one-second tick; a function added with
//   interval N (default L.env.pollinterval, 5) runs at once and then on
//   every Nth tick, never while its previous call is still running.
// - view (`LuCI.view`): load(), then render(load's result) into #view, with
//   the Save & Apply / Save / Reset buttons unless the view sets their
//   handlers to null; Save saves every form map in the page (Save & Apply
//   only saves: no `uci apply` here). An exception from load or render is
//   shown as a notification titled with its name (`L.error`).
// - The status overview (luci-mod-status view/status/index.js): each
//   include's load() runs, then render(result), at once and on every poll;
//   an include whose load() rejects is left out.
// - E() and dom (`LuCI.dom.create`, `append`, `content`): the second
//   argument is attributes when it is an object and not an array;
//   attributes that are functions become event listeners, null ones are
//   left out. Children: a node is appended; an array's items are appended
//   as nodes, anything else as text (null and undefined too: the JSDoc
//   says such items are skipped, but luci.js turns them into text, so a
//   view that puts a missing value into an array shows it on a router,
//   and here); any other single value is set as HTML.
// - ui: `addNotification(title, children, classes...)` puts a banner at
//   the top of #maincontent, the title (as HTML) and the children, then a
//   Dismiss button; `createHandlerFn(ctx, fn, args...)` makes an event
//   handler that disables its button until fn's promise settles;
//   `showModal(title, children)` shows a dialog, #modal_overlay, at the
//   end of <body>.
// - Validation of a form widget (ui.js `addValidator`, validation.js): on
//   keyup and blur, an empty value is fine when the option is optional
//   (rmempty, the default, or optional), else "Expecting: non-empty
//   value"; otherwise the datatype decides, failing with "Expecting:
//   <what it wants>", then the option's validate(section_id, value), true
//   or a message. The datatypes the views use: port (an integer 0-65535;
//   "valid port value", a fixture fact), uciname (letters, digits, _),
//   macaddr (six hex pairs, the first octet's low bit clear; validation.js
//   finds a multicast MAC only when its first octet is written in decimal
//   digits: the app's own validate function decides that). A DynamicList
//   validates the entry being typed; its value leaves that entry out when
//   it failed or is in the list already, and the form counts the list as
//   valid (ui.js's check of the list element itself, which has no value,
//   is what the form's checks run).
// - uci (`LuCI.uci`): load is `uci get {config}`, rejecting on a non-zero
//   status; set and unset stage changes (an option is only deleted if it
//   is set); save sends `uci delete` and `uci set` for every section with
//   changes, at once (so in one batch), then loads the config again. The
//   stand-in for rpcd's uci object is tests/luci/rpcd_uci.rs.
// - form (`LuCI.form`): Map.load reads each option through its
//   load(section_id), which views may override. After rendering, and
//   again when Save is pressed, dependencies are checked and every shown
//   widget validated. Save then parses each section: an option whose
//   dependencies are unmet is removed (documented for depends()); an
//   invalid one stops the save, which shows the error in a dialog; an
//   empty Value or DynamicList is removed, a changed one written. A Flag
//   ('1' when checked, else '0'; default '0' unless set) is removed when
//   its value equals its default and rmempty (the default) or optional is
//   set, and written otherwise (shared/fixtures/luci/README.md: "`option
//   ratelimit '1'` disappeared after one Save"). Then uci save, load, and
//   render again. A failed save shows the dialog "Save error" with the
//   reason, 'Option "TITLE" contains an invalid input value. WHY' or
//   'Option "TITLE" must not be empty.', and renders nothing again
//   (form.js `CBIMap.save`, `CBIAbstractValue.parse`). Reset renders
//   again from what was loaded. A GridSection
//   shows a row per section: editable options as widgets, the others as
//   text, none of the `modalonly` ones (README: "they appear only in the
//   section's edit dialog"); its Edit button opens a dialog with every
//   option, on a Map of its own; saving the grid parses only its editable
//   options. Tabs are shown one after the other, each under its title.
// - String.prototype.format (luci-base cbi.js): conversions are read left
//   to right, each with an optional pad (' ', '0', 'c), '-', width and
//   precision; a '%' that starts no conversion ends the formatting and
//   leaves the rest of the text as it is; %s prints the argument as `+`
//   would ("undefined" for undefined); %d and %f read anything that is no
//   number as 0; %.Nf rounds to N places; with no argument left, a
//   conversion prints what the previous one printed.
//
// Not here, because the views do not use them: L and its helpers, form.JSONMap, adding,
// removing or sorting sections, switching tabs, `uci apply`, saving the
// edit dialog, the session's ACL check in Map.load, translations (_()
// returns its text), `params` given as an object, and the conversions of
// String.prototype.format other than %s, %d, %f and %% (they throw here).
//
// Test hooks, no part of LuCI: window.luciView(source) and
// window.luciOverview(sources) open a page as the dispatcher would;
// window.FORM_MAP is the last form.Map a view made;
// window.luciValidate(section_id, option, value) types value into the
// option's widget (in the page, or else in the section's edit dialog) as
// a person would and returns true or the message shown; <body> gets
// data-rendered="yes" once the view rendered, and data-error with the
// message of an exception from load or render.
'use strict';

(() => {

const env = Object.assign({
	sessionid: '00000000000000000000000000000000',
	ubuspath: '/ubus/',
	pollinterval: 5,
	rpctimeout: 20
}, window.LUCI_ENV || {});

window._ = (text) => text;

// ---- String.prototype.format ----

// One conversion: an optional pad (' ', '0', or a quote and any
// character), '-' to pad on the right, a width, a precision, the type.
const conversion = /^%('.|0| )?(-)?(\d+)?(\.\d+)?([%bcdufosxXqhjtm])/;

// A number argument as LuCI reads it: anything that is no number, or 0, is 0.
const asNumber = (value) => (+value || 0);

String.prototype.format = function(...values) {
	let rest = String(this), out = '', used = 0, last;
	for (let at = rest.indexOf('%'); at >= 0; at = rest.indexOf('%')) {
		const m = conversion.exec(rest.slice(at));
		// A '%' that starts no conversion ends the formatting: the rest
		// of the text stays as it is, conversions and all.
		if (!m)
			break;
		const [ whole, pad, left, width, precision, type ] = m;
		// With no argument left, a conversion repeats what the previous
		// one printed (a '%%' too; nothing printed yet is "undefined").
		if (type == '%')
			last = '%';
		else if (used < values.length)
			last = substitute(type, precision, values[used++]);
		let text = last;
		if (width) {
			const fill = pad ? pad.slice(-1) : ' ';
			text = String(text);
			while (text.length < +width)
				text = left ? text + ' ' : fill + text;
		}
		out += rest.slice(0, at) + text;
		rest = rest.slice(at + whole.length);
	}
	return out + rest;
};

// The views use %s, %d and %f (with or without a precision); the other
// types LuCI knows are refused here rather than printed wrongly.
function substitute(type, precision, value) {
	switch (type) {
	case 's': return value;
	case 'd': return Math.floor(asNumber(value)).toFixed(0);
	case 'f': return precision ? asNumber(value).toFixed(+precision.slice(1)) : asNumber(value);
	default: throw new Error(`the shim formats no %${type}`);
	}
}

// ---- Classes that views extend (LuCI.baseclass) ----

function Base() {}

// A subclass with `members` on its prototype; `new` runs __init__ with
// the constructor's arguments.
Base.extend = function(members) {
	const Parent = this;
	const Derived = function(...args) {
		if (typeof this.__init__ == 'function')
			this.__init__(...args);
	};
	Derived.prototype = Object.assign(Object.create(Parent.prototype), members, { constructor: Derived });
	Derived.extend = Base.extend;
	return Derived;
};

// ---- DOM (E, LuCI.dom) ----

function addChildren(node, children) {
	if (Array.isArray(children))
		for (const item of children)
			node.appendChild(item instanceof Node ? item : document.createTextNode(String(item)));
	else if (children instanceof Node)
		node.appendChild(children);
	else if (children != null)
		node.innerHTML = String(children);
}

function setChildren(node, children) {
	node.textContent = '';
	addChildren(node, children);
}

function E(what, attributes, children) {
	if (arguments.length == 2 && (attributes === null || typeof attributes != 'object' || Array.isArray(attributes)))
		[ attributes, children ] = [ null, attributes ];
	const node = Array.isArray(what) ? document.createDocumentFragment() : document.createElement(what);
	if (Array.isArray(what))
		what.forEach((tag) => node.appendChild(E(tag)));
	for (const [ name, value ] of Object.entries(attributes || {})) {
		if (typeof value == 'function')
			node.addEventListener(name, value);
		else if (value != null)
			node.setAttribute(name, String(value));
	}
	addChildren(node, children);
	return node;
}
window.E = E;

const dom = { content: setChildren };

// ---- Requests to the ubus endpoint (LuCI.request, with luci.js's batching) ----

// POST `body` as JSON: {status, statusText, body (parsed, or null)}, or a
// rejection when no answer comes.
function postJSON(url, body) {
	return new Promise((resolve, reject) => {
		const xhr = new XMLHttpRequest();
		xhr.open('POST', `${url}${url.includes('?') ? '&' : '?'}${Date.now()}`);
		xhr.setRequestHeader('Content-Type', 'application/json');
		xhr.timeout = env.rpctimeout * 1000;
		xhr.onload = () => {
			let parsed = null;
			try { parsed = JSON.parse(xhr.responseText); } catch (e) { parsed = null; }
			resolve({ status: xhr.status, statusText: xhr.statusText, body: parsed });
		};
		xhr.onerror = () => reject(new Error(`the request to ${url} failed`));
		xhr.ontimeout = () => reject(new Error(`no answer from ${url} within ${env.rpctimeout} s`));
		xhr.send(JSON.stringify(body));
	});
}

// The endpoint, found once at start.
const endpoint = postJSON(env.ubuspath, { jsonrpc: '2.0', id: 'init', method: 'list' }).then(
	(answer) => (answer.status == 200 ? env.ubuspath : '/cgi-bin/luci/admin/ubus'),
	() => '/cgi-bin/luci/admin/ubus');

let queued = [];

// Send `request` with the others of this frame: {status, statusText,
// body: its own answer}.
function sendBatched(request) {
	return new Promise((resolve, reject) => {
		if (!queued.length)
			setTimeout(sendQueued, 0);
		queued.push({ request, resolve, reject });
	});
}

function sendQueued() {
	const batch = queued;
	queued = [];
	endpoint.then((url) => postJSON(url, batch.map((q) => q.request))).then((answer) => {
		batch.forEach((q, i) => {
			if (Array.isArray(answer.body) && i < answer.body.length)
				q.resolve(Object.assign({}, answer, { body: answer.body[i] }));
			else
				q.reject(new Error('No related RPC reply'));
		});
	}, (failure) => batch.forEach((q) => q.reject(failure)));
}

// ---- rpc (LuCI.rpc) ----

// rpc.js's names of the ubus statuses, kept word for word: the app shows
// them (see explain() in ntpgate.js).
const UBUS_STATUS_NAMES = [ 'Command OK', 'Invalid command', 'Invalid argument', 'Method not found',
	'Resource not found', 'No data received', 'Permission denied', 'Request timeout',
	'Not supported', 'Unspecified error', 'Connection lost' ];

function rpcFailure(spec, what, ...values) {
	const e = new Error(`RPC call to %s/%s ${what}`.format(spec.object, spec.method, ...values));
	e.name = 'RPCError';
	return e;
}

// What one call's answer means: the value to resolve with, or a throw.
// The messages are rpc.js's, because the app reads them (explain() in
// ntpgate.js matches "with error -32000: " and "with ubus code N: NAME").
function outcome(spec, answer, args, extra) {
	if (answer.status < 200 || answer.status > 299)
		throw rpcFailure(spec, 'failed with HTTP error %d: %s', answer.status, answer.statusText || '?');
	const reply = answer.body;
	if (reply === null || typeof reply != 'object' || reply.jsonrpc != '2.0')
		throw rpcFailure(spec, 'returned invalid message frame');
	if (reply.error && typeof reply.error == 'object' && reply.error.code && reply.error.message)
		throw rpcFailure(spec, 'failed with error %d: %s', reply.error.code, reply.error.message);
	let value = null;
	if (Array.isArray(reply.result)) {
		// A missing status is no 0: it rejects too, as code 0 (%d of nothing).
		if (spec.reject && reply.result[0] !== 0)
			throw rpcFailure(spec, 'failed with ubus code %d: %s', reply.result[0],
				UBUS_STATUS_NAMES[reply.result[0]] || 'Unknown error code');
		value = reply.result.length > 1 ? reply.result[1] : reply.result[0];
	}
	// expect: only its first key counts; '' is the value itself, another
	// key picks that field; a missing value, or one of another kind than
	// the expected one, becomes the expected one.
	const [ key ] = Object.keys(spec.expect || {});
	if (key !== undefined) {
		if (value != null && key !== '')
			value = value[key];
		const kind = (v) => Object.prototype.toString.call(v);
		if (value == null || kind(value) != kind(spec.expect[key]))
			value = spec.expect[key];
	}
	// filter(value, args, the call's arguments beyond its params...).
	return (typeof spec.filter == 'function') ? spec.filter(value, args, ...extra) : value;
}

let requestCount = 0;

const rpc = {
	declare: (spec) => (...values) => {
		const names = spec.params || [];
		const args = {};
		names.forEach((name, i) => { args[name] = values[i]; });
		const request = { jsonrpc: '2.0', id: ++requestCount, method: 'call',
			params: [ env.sessionid, spec.object, spec.method, args ] };
		return sendBatched(request).then((answer) => outcome(spec, answer, args, values.slice(names.length)));
	}
};

// ---- poll (LuCI.poll) ----

const pollJobs = [];
let pollTicks = 0, pollTimer = null;

function pollTick() {
	for (const job of pollJobs) {
		if (job.running || pollTicks % job.every != 0)
			continue;
		job.running = true;
		new Promise((resolve) => resolve(job.fn())).catch(() => {}).then(() => { job.running = false; });
	}
	pollTicks++;
}

const poll = {
	add(fn, interval) {
		if (typeof fn != 'function')
			throw new TypeError('poll.add needs a function');
		if (pollJobs.some((job) => job.fn === fn))
			return false;
		pollJobs.push({ fn, every: (interval > 0 ? interval : env.pollinterval), running: false });
		if (pollTimer == null) {
			pollTimer = setInterval(pollTick, 1000);
			pollTick();
		}
		return true;
	}
};

// ---- ui ----

const ui = {
	addNotification(title, children, ...classes) {
		const text = E('div', { 'style': 'flex:10' });
		if (title != null)
			text.appendChild(E('h4', {}, title));
		addChildren(text, children);
		const banner = E('div', { 'class': [ 'alert-message', ...classes ].join(' '), 'style': 'display:flex' }, [
			text,
			E('button', { 'class': 'btn', 'click': () => banner.remove() }, [ _('Dismiss') ])
		]);
		const main = document.getElementById('maincontent') || document.body;
		main.insertBefore(banner, main.firstChild);
		return banner;
	},

	createHandlerFn(ctx, fn, ...bound) {
		const handler = (typeof fn == 'string') ? ctx[fn] : fn;
		if (typeof handler != 'function')
			return null;
		return (ev) => {
			const button = ev.currentTarget;
			button.disabled = true;
			button.classList.add('spinning');
			const done = () => {
				button.disabled = false;
				button.classList.remove('spinning');
			};
			new Promise((resolve) => resolve(handler.call(ctx, ...bound, ev))).then(done, done);
		};
	},

	showModal(title, children) {
		const overlay = document.getElementById('modal_overlay') ||
			document.body.appendChild(E('div', { 'id': 'modal_overlay' }, E('div', { 'class': 'modal' })));
		const dialog = overlay.firstChild;
		setChildren(dialog, [ E('h4', {}, title) ]);
		addChildren(dialog, children);
		document.body.classList.add('modal-overlay-active');
		return dialog;
	}
};

// ---- Datatypes (validation.js): true, or what the value should be ----

const datatypes = {
	port: (value) => (/^-?\d+$/.test(value) && +value >= 0 && +value <= 65535) || _('valid port value'),
	uciname: (value) => /^[a-zA-Z0-9_]+$/.test(value) || _('valid UCI identifier'),
	macaddr: (value) => (/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(value) && (parseInt(value, 16) & 1) == 0) ||
		_('valid MAC address')
};

// The check of the datatype named `name`.
function datatypeCheck(name) {
	if (!datatypes[name])
		throw new Error(`the shim has no datatype ${name}`);
	return datatypes[name];
}

// ---- Form widgets (ui.Textfield, ui.Checkbox, ui.DynamicList) ----

// The verdict on `text` for a widget of `spec` (optional, datatype,
// validate): null when fine, else the message shown.
function problemWith(spec, text) {
	if (text === '')
		return spec.optional ? null : _('Expecting: %s').format(_('non-empty value'));
	const wanted = spec.datatype ? datatypeCheck(spec.datatype)(text) : true;
	if (wanted !== true)
		return _('Expecting: %s').format(wanted);
	const verdict = spec.validate ? spec.validate(text) : true;
	return verdict === true ? null : String(verdict);
}

function textInput(spec, onEntry) {
	const input = E('input', { 'type': 'text', 'class': 'cbi-input-text', 'placeholder': spec.placeholder });
	input.addEventListener('keyup', onEntry);
	input.addEventListener('blur', onEntry);
	return input;
}

class TextWidget {
	constructor(value, spec) {
		this.spec = spec;
		this.problem = null;
		this.input = textInput(spec, () => this.check());
		this.input.value = (value == null) ? '' : String(value);
		this.node = E('div', { 'id': spec.id }, [ this.input ]);
	}
	check() {
		this.problem = problemWith(this.spec, this.input.value);
		this.input.classList.toggle('cbi-input-invalid', this.problem != null);
	}
	value() { return this.input.value; }
}

class CheckboxWidget {
	constructor(value, spec) {
		this.spec = spec;
		this.problem = null;
		this.input = E('input', { 'type': 'checkbox' });
		this.input.checked = (value == spec.enabled);
		this.node = E('div', { 'id': spec.id, 'class': 'cbi-checkbox' }, [ this.input ]);
	}
	// The views give flags no validate: a checkbox is always fine.
	check() {}
	value() { return this.input.checked ? this.spec.enabled : this.spec.disabled; }
}

class ListWidget {
	constructor(items, spec) {
		this.spec = Object.assign({}, spec, { optional: true });
		this.items = items.slice();
		this.problem = null;
		this.entryProblem = null;
		this.input = textInput(this.spec, () => this.checkEntry());
		this.node = E('div', { 'id': spec.id, 'class': 'cbi-dynlist' },
			this.items.map((item) => E('div', { 'class': 'item' }, [ item ]))
				.concat([ E('div', { 'class': 'add-item' }, [ this.input ]) ]));
	}
	checkEntry() {
		this.problem = this.entryProblem = problemWith(this.spec, this.input.value);
		this.input.classList.toggle('cbi-input-invalid', this.problem != null);
	}
	check() { this.problem = null; }
	value() {
		const typed = this.input.value;
		const kept = /\S/.test(typed) && this.entryProblem == null && !this.items.includes(typed);
		return kept ? [ ...this.items, typed ] : this.items.slice();
	}
}

// ---- uci (LuCI.uci) ----

const callUciGet = rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], reject: true });
const callUciSet = rpc.declare({ object: 'uci', method: 'set', params: [ 'config', 'section', 'values' ], reject: true });
const callUciDelete = rpc.declare({ object: 'uci', method: 'delete', params: [ 'config', 'section', 'options' ], reject: true });

// Per config: the values as loaded, and the changes and deletions staged
// per section.
const configs = {};
const loading = {};

const uci = {
	load(config) {
		if (!loading[config])
			loading[config] = callUciGet(config).then((reply) => {
				configs[config] = { values: (reply && reply.values) || {}, changes: {}, deletions: {} };
				return config;
			});
		return loading[config];
	},

	// The sections of `config` in file order, only those of `type` if given.
	sections(config, type) {
		return Object.values(configs[config] ? configs[config].values : {})
			.filter((s) => type == null || s['.type'] == type)
			.sort((a, b) => a['.index'] - b['.index']);
	},

	get(config, sid, option) {
		const c = configs[config];
		const section = c && c.values[sid];
		if (option == null)
			return section || null;
		if (!section || (c.deletions[sid] || {})[option])
			return null;
		const staged = (c.changes[sid] || {})[option];
		return (staged !== undefined) ? staged : section[option];
	},

	set(config, sid, option, value) {
		const c = configs[config];
		if (!c || !c.values[sid] || option.startsWith('.'))
			return;
		const changes = c.changes[sid] || (c.changes[sid] = {});
		const deletions = c.deletions[sid] || (c.deletions[sid] = {});
		if (value == null || value === '') {
			delete changes[option];
			if (option in c.values[sid])
				deletions[option] = true;
		}
		else {
			delete deletions[option];
			changes[option] = value;
		}
	},

	unset(config, sid, option) { uci.set(config, sid, option, null); },

	save() {
		const names = Object.keys(configs);
		const calls = [];
		for (const config of names)
			for (const [ sid, options ] of Object.entries(configs[config].deletions))
				if (Object.keys(options).length)
					calls.push(callUciDelete(config, sid, Object.keys(options)));
		for (const config of names)
			for (const [ sid, values ] of Object.entries(configs[config].changes))
				if (Object.keys(values).length)
					calls.push(callUciSet(config, sid, values));
		return Promise.all(calls).then(() => {
			names.forEach((config) => { delete loading[config]; });
			return Promise.all(names.map((config) => uci.load(config)));
		});
	}
};

// ---- form (LuCI.form) ----

// A map's root element -> the map, for the view's Save and Reset.
const mapOfRoot = new WeakMap();

const listOf = (value) => (Array.isArray(value) ? value
	: (value == null || String(value).trim() === '') ? [] : String(value).trim().split(/\s+/));

// form.js writes an option whose value differs from the loaded one: a
// list item by item, anything else by type and value.
const sameValue = (a, b) => (Array.isArray(a) && Array.isArray(b))
	? a.length == b.length && a.every((item, i) => item === b[i])
	: a === b;

const isEmpty = (value) => value == null || value === '' || (Array.isArray(value) && value.length == 0);

const plainTitle = (option) => String(option.title || '').replace(/<[^>]*>/g, '').trim() || option.option;

class FormMap {
	constructor(config, title, description) {
		this.config = config;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.root = E('div', { 'id': `cbi-${config}`, 'class': 'cbi-map', 'change': () => this.review() });
		mapOfRoot.set(this.root, this);
		window.FORM_MAP = this;
	}

	section(SectionClass, ...args) {
		const section = new SectionClass(this, ...args);
		this.children.push(section);
		return section;
	}

	// The option `name` of a section holding `sid`.
	lookup(name, sid) {
		for (const section of this.children)
			if (section.sectionIds().includes(sid)) {
				const option = section.children.find((o) => o.option == name);
				if (option)
					return option;
			}
		return null;
	}

	load() {
		return uci.load(this.config).then(() => this.children.forEach((section) => section.load()));
	}

	render() {
		return this.load().then(() => this.draw());
	}

	draw() {
		return Promise.all(this.children.map((section) => section.draw())).then((nodes) => {
			setChildren(this.root, [
				this.title ? E('h2', {}, this.title) : '',
				this.description ? E('div', { 'class': 'cbi-map-descr' }, this.description) : '',
				...nodes
			]);
			this.review();
			return this.root;
		});
	}

	// Show the options whose dependencies are met (settling chains of
	// them), then validate every shown widget.
	review() {
		const places = [];
		for (const section of this.children)
			for (const sid of section.sectionIds())
				for (const option of section.children)
					if (option.widgets[sid])
						places.push([ option, sid ]);
		for (let round = 0, changed = true; changed && round <= places.length; round++) {
			changed = false;
			for (const [ option, sid ] of places)
				if (option.shown[sid] != option.dependenciesMet(sid)) {
					option.show(sid, !option.shown[sid]);
					changed = true;
				}
		}
		for (const [ option, sid ] of places)
			if (option.shown[sid])
				option.widgets[sid].check();
	}

	save() {
		this.review();
		return Promise.all(this.children.map((section) => section.parse()))
			.then(() => uci.save())
			.then(() => this.load())
			.then(() => this.draw(), (e) => {
				ui.showModal(_('Save error'), [
					E('p', {}, [ _('An error occurred while saving the form:') ]),
					E('p', {}, [ E('em', {}, [ e.message ]) ])
				]);
				throw e;
			});
	}

	reset() {
		return this.draw();
	}
}

class FormSection {
	constructor(map, type, title, description) {
		this.map = map;
		this.sectiontype = type;
		this.title = title || '';
		this.description = description || '';
		this.children = [];
		this.tabs = null;
	}

	tab(name, title) {
		(this.tabs || (this.tabs = [])).push({ name, title });
	}

	option(OptionClass, ...args) {
		const option = new OptionClass(this.map, this, ...args);
		this.children.push(option);
		return option;
	}

	taboption(tab, ...args) {
		if (!(this.tabs || []).some((t) => t.name == tab))
			throw new ReferenceError(`no tab ${tab}`);
		const option = this.option(...args);
		option.tab = tab;
		return option;
	}

	sectionIds() { return []; }

	// The current value of option `name` in this section's `sid`.
	formvalue(sid, name) {
		const option = this.children.find((o) => o.option == name);
		return option ? option.formvalue(sid) : null;
	}

	load() {
		for (const sid of this.sectionIds())
			for (const option of this.children)
				option.loaded[sid] = option.load(sid);
	}

	parse() {
		return Promise.all(this.sectionIds().flatMap((sid) => this.children.map((option) => option.parse(sid))));
	}

	// The options of `sid`, under their tabs' titles if the section has tabs.
	drawOptions(sid) {
		if (!this.tabs)
			return this.children.map((option) => option.draw(sid, false));
		return this.tabs.map((tab) => E('div', { 'class': 'cbi-tab', 'data-tab': tab.name }, [
			E('h4', {}, [ tab.title ]),
			...this.children.filter((option) => option.tab == tab.name).map((option) => option.draw(sid, false))
		]));
	}

	heading() {
		return [
			this.title ? E('h3', {}, this.title) : '',
			this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : ''
		];
	}
}

class NamedSection extends FormSection {
	constructor(map, sid, type, title, description) {
		super(map, type, title, description);
		this.sid = sid;
	}

	sectionIds() {
		return uci.get(this.map.config, this.sid) ? [ this.sid ] : [];
	}

	draw() {
		return E('div', { 'class': 'cbi-section', 'id': `cbi-${this.map.config}-${this.sid}` },
			[ ...this.heading(), ...this.sectionIds().flatMap((sid) => this.drawOptions(sid)) ]);
	}
}

class TypedSection extends FormSection {
	sectionIds() {
		return uci.sections(this.map.config, this.sectiontype).map((s) => s['.name']);
	}

	draw() {
		return E('div', { 'class': 'cbi-section', 'id': `cbi-${this.map.config}-${this.sectiontype}` }, [
			...this.heading(),
			...this.sectionIds().flatMap((sid) => [ this.anonymous ? '' : E('h3', {}, [ sid ]), ...this.drawOptions(sid) ])
		]);
	}
}

class GridSection extends TypedSection {
	columns() {
		return this.children.filter((option) => !option.modalonly);
	}

	draw() {
		const header = E('tr', { 'class': 'tr cbi-section-table-titles' }, [
			this.anonymous ? '' : E('th', { 'class': 'th' }, [ _('Name') ]),
			...this.columns().map((option) => E('th', { 'class': 'th' }, option.title)),
			E('th', { 'class': 'th cbi-section-actions' })
		]);
		const rows = this.sectionIds().map((sid) => E('tr', { 'class': 'tr cbi-section-table-row', 'data-sid': sid }, [
			this.anonymous ? '' : E('td', { 'class': 'td' }, [ sid ]),
			...this.columns().map((option) => (option.editable ? option.draw(sid, true)
				: E('td', { 'class': 'td' }, [ option.textvalue(sid) ]))),
			E('td', { 'class': 'td cbi-section-actions' }, [
				E('button', { 'class': 'btn cbi-button-edit', 'click': ui.createHandlerFn(this, 'openDialog', sid) }, [ _('Edit') ])
			])
		]));
		return E('div', { 'class': 'cbi-section cbi-tblsection', 'id': `cbi-${this.map.config}-${this.sectiontype}` },
			[ ...this.heading(), E('table', { 'class': 'table cbi-section-table' }, [ header, ...rows ]) ]);
	}

	parse() {
		const editable = this.children.filter((option) => option.editable && !option.modalonly);
		return Promise.all(this.sectionIds().flatMap((sid) => editable.map((option) => option.parse(sid))));
	}

	// Every option of `sid` in a dialog, on a Map of its own; that map.
	openDialog(sid) {
		const pageMap = window.FORM_MAP;
		const dialogMap = new FormMap(this.map.config);
		window.FORM_MAP = pageMap;
		const section = dialogMap.section(NamedSection, sid, this.sectiontype);
		section.children = this.children.map((option) => Object.assign(Object.create(option), {
			map: dialogMap, section, loaded: {}, widgets: {}, frames: {}, shown: {}
		}));
		return dialogMap.render().then((node) => {
			ui.showModal(`${this.map.title} - ${sid}`, [ node ]);
			return dialogMap;
		});
	}
}

class FormOption {
	constructor(map, section, option, title, description) {
		this.map = map;
		this.section = section;
		this.option = option;
		this.title = title || '';
		this.description = description || '';
		this.rmempty = true;
		this.optional = false;
		this.default = null;
		this.deps = [];
		this.loaded = {};
		this.widgets = {};
		this.frames = {};
		this.shown = {};
	}

	depends(field, value) {
		this.deps.push(typeof field == 'string' ? { [field]: value } : field);
	}

	load(sid) {
		return uci.get(this.map.config, sid, this.option);
	}

	cfgvalue(sid) {
		return this.loaded[sid];
	}

	formvalue(sid) {
		const widget = this.widgets[sid];
		return widget ? widget.value() : null;
	}

	textvalue(sid) {
		const value = (this.cfgvalue(sid) != null) ? this.cfgvalue(sid) : this.default;
		return (value == null) ? '-' : listOf(value).join(' ');
	}

	validate() {
		return true;
	}

	widgetSpec(sid) {
		return {
			id: `cbid.${this.map.config}.${sid}.${this.option}`,
			optional: this.optional || this.rmempty,
			datatype: this.datatype,
			placeholder: this.placeholder,
			validate: (value) => this.validate(sid, value)
		};
	}

	// The widget for `sid` in its frame: a table cell, or a labelled row.
	draw(sid, inTable) {
		const widget = this.widgets[sid] = this.makeWidget(sid);
		this.shown[sid] = (this.deps.length == 0);
		const frame = inTable
			? E('td', { 'class': 'td cbi-value-field', 'data-name': this.option }, [ widget.node ])
			: E('div', { 'class': 'cbi-value', 'data-name': this.option }, [
				E('label', { 'class': 'cbi-value-title' }, this.title),
				E('div', { 'class': 'cbi-value-field' }, [
					widget.node,
					this.description ? E('div', { 'class': 'cbi-value-description' }, this.description) : ''
				])
			]);
		this.frames[sid] = frame;
		this.show(sid, this.shown[sid]);
		return frame;
	}

	show(sid, shown) {
		this.shown[sid] = shown;
		this.frames[sid].classList.toggle('hidden', !shown);
		this.frames[sid].style.display = shown ? '' : 'none';
	}

	dependenciesMet(sid) {
		return this.deps.length == 0 || this.deps.some((wanted) => Object.entries(wanted).every(([ name, value ]) => {
			const other = this.section.children.find((o) => o.option == name);
			const current = (other && other.shown[sid]) ? other.formvalue(sid) : null;
			return current != null && String(current) === String(value);
		}));
	}

	// Why the widget's value cannot be saved, or null.
	problem(sid) {
		const widget = this.widgets[sid];
		return (widget && widget.problem)
			? `${_('Option "%s" contains an invalid input value.').format(plainTitle(this))} ${widget.problem}` : null;
	}

	parse(sid) {
		if (!this.shown[sid])
			return Promise.resolve(this.remove(sid));
		const problem = this.problem(sid);
		if (problem)
			return Promise.reject(new TypeError(problem));
		const value = this.formvalue(sid);
		if (isEmpty(value)) {
			if (this.rmempty || this.optional)
				return Promise.resolve(this.remove(sid));
			return Promise.reject(new TypeError(_('Option "%s" must not be empty.').format(plainTitle(this))));
		}
		if (!sameValue(this.cfgvalue(sid), value))
			this.write(sid, value);
		return Promise.resolve();
	}

	write(sid, value) {
		uci.set(this.map.config, sid, this.option, value);
	}

	remove(sid) {
		uci.unset(this.map.config, sid, this.option);
	}
}

class ValueOption extends FormOption {
	makeWidget(sid) {
		const value = (this.cfgvalue(sid) != null) ? this.cfgvalue(sid) : this.default;
		return new TextWidget(Array.isArray(value) ? value.join(' ') : value, this.widgetSpec(sid));
	}
}

class ListOption extends FormOption {
	makeWidget(sid) {
		const value = (this.cfgvalue(sid) != null) ? this.cfgvalue(sid) : this.default;
		return new ListWidget(listOf(value), this.widgetSpec(sid));
	}
}

class FlagOption extends FormOption {
	constructor(...args) {
		super(...args);
		this.enabled = '1';
		this.disabled = '0';
		this.default = this.disabled;
	}

	makeWidget(sid) {
		const value = (this.cfgvalue(sid) != null) ? this.cfgvalue(sid) : this.default;
		return new CheckboxWidget(value, Object.assign(this.widgetSpec(sid), { enabled: this.enabled, disabled: this.disabled }));
	}

	formvalue(sid) {
		const widget = this.widgets[sid];
		return widget ? widget.value() : this.disabled;
	}

	textvalue(sid) {
		const value = (this.cfgvalue(sid) != null) ? this.cfgvalue(sid) : this.default;
		return (value == this.enabled) ? _('Yes') : _('No');
	}

	parse(sid) {
		if (!this.shown[sid])
			return Promise.resolve(this.remove(sid));
		const problem = this.problem(sid);
		if (problem)
			return Promise.reject(new TypeError(problem));
		const value = this.formvalue(sid);
		if (value == this.default && (this.rmempty || this.optional))
			this.remove(sid);
		else
			this.write(sid, value);
		return Promise.resolve();
	}
}

const form = {
	Map: FormMap,
	NamedSection,
	TypedSection,
	GridSection,
	Value: ValueOption,
	DynamicList: ListOption,
	Flag: FlagOption
};

// ---- view (LuCI.view) ----

const formMapsInPage = () => Array.from(document.querySelectorAll('#maincontent .cbi-map'))
	.map((root) => mapOfRoot.get(root)).filter(Boolean);

const View = Base.extend({
	__init__() {
		const place = document.getElementById('view');
		setChildren(place, E('div', { 'class': 'spinning' }, _('Loading view…')));
		const rendered = (attribute, value) => {
			document.body.setAttribute('data-rendered', 'yes');
			if (attribute)
				document.body.setAttribute(attribute, value);
		};
		Promise.resolve()
			.then(() => this.load())
			.then((data) => this.render(data))
			.then((nodes) => {
				setChildren(place, nodes);
				place.appendChild(this.footer());
				rendered();
			})
			.catch((e) => {
				rendered('data-error', String((e && e.message) || e));
				ui.addNotification((e && e.name) || 'Error', E('pre', {}, [ String((e && e.message) || e) ]), 'danger');
			});
	},

	load() {},
	render() {},

	handleSave() {
		return Promise.all(formMapsInPage().map((map) => map.save()));
	},

	handleSaveApply(ev) {
		return this.handleSave(ev);
	},

	handleReset() {
		return Promise.all(formMapsInPage().map((map) => map.reset()));
	},

	footer() {
		const buttons = [
			[ 'handleSaveApply', 'btn cbi-button-apply', _('Save & Apply') ],
			[ 'handleSave', 'btn cbi-button-save', _('Save') ],
			[ 'handleReset', 'btn cbi-button-reset', _('Reset') ]
		].filter(([ handler ]) => this[handler]);
		if (!buttons.length)
			return E([]);
		return E('div', { 'class': 'cbi-page-actions' }, buttons.map(([ handler, classes, label ]) =>
			E('button', { 'class': classes, 'click': ui.createHandlerFn(this, handler) }, [ label ])));
	}
});

// ---- Loading modules (LuCI.require) ----

const modules = { baseclass: Base, dom, form, poll, rpc, uci, ui, view: View };

// A module's source is the body of a function whose parameters are its
// 'require NAME' lines (NAME's last part, or the name after `as`); what
// it returns is the module, a class instantiated. The app's own modules
// come from window.LUCI_SOURCES by name and load once.
function requireModule(source) {
	const names = [], values = [];
	for (const [ , name, alias ] of source.matchAll(/^'require ([\w.]+)(?: as (\w+))?';/gm)) {
		if (!(name in modules) && window.LUCI_SOURCES && name in window.LUCI_SOURCES)
			modules[name] = requireModule(window.LUCI_SOURCES[name]);
		if (!(name in modules))
			throw new Error(`the shim has no module ${name}`);
		names.push(alias || name.split('.').pop());
		values.push(modules[name]);
	}
	const made = new Function(...names, source)(...values);
	return (typeof made == 'function' && made.prototype instanceof Base) ? new made() : made;
}

// ---- Test hooks ----

window.luciView = (source) => endpoint.then(() => requireModule(source));

// Status > Overview with these includes.
window.luciOverview = (sources) => endpoint.then(() => {
	const Overview = View.extend({
		load: () => sources.map(requireModule),

		refresh(includes, boxes) {
			return Promise.all(includes.map((include) => (typeof include.load == 'function')
				? include.load().catch(() => { include.failed = true; }) : null)).then((results) => {
				includes.forEach((include, i) => {
					const content = include.failed ? null : include.render(results[i]);
					if (content != null) {
						boxes[i].parentNode.style.display = '';
						setChildren(boxes[i], content);
					}
				});
			});
		},

		render(includes) {
			const boxes = includes.map(() => E('div'));
			const page = E([], includes.map((include, i) => E('div', { 'class': 'cbi-section', 'style': 'display:none' }, [
				E('h3', {}, [ include.title || '-' ]), boxes[i]
			])));
			return this.refresh(includes, boxes)
				.then(() => poll.add(() => this.refresh(includes, boxes)))
				.then(() => page);
		},

		handleSaveApply: null,
		handleSave: null,
		handleReset: null
	});
	return new Overview();
});

window.luciValidate = (sid, name, text) => {
	const option = window.FORM_MAP.lookup(name, sid);
	if (!option)
		throw new Error(`no option ${name} in ${sid}`);
	const opened = option.widgets[sid] ? Promise.resolve(option)
		: option.section.openDialog(sid).then((dialog) => dialog.lookup(name, sid));
	return opened.then((shown) => {
		const widget = shown.widgets[sid];
		widget.input.value = text;
		widget.input.dispatchEvent(new Event('keyup'));
		return widget.problem == null ? true : widget.problem;
	});
};

})();
