// The parts of LuCI's JavaScript API (luci.js, form.js, rpc.js, poll.js,
// ui.js, dom.js) that the ntpgate views use, with LuCI's signatures and
// behaviour, for rendering the views in headless Chromium without a router.
// ubus answers come from window.UBUS (real `ntpgate status` output captured
// by the test), UCI from window.UCI; every rpc call is recorded in
// window.RPC_CALLS, every notification in window.NOTES.
'use strict';

window.RPC_CALLS = [];
window.NOTES = [];
window.POLLS = [];

window._ = function(s) { return s; };

// LuCI's String.prototype.format: %s %d %f with precision, %h (HTML), %%.
String.prototype.format = function() {
	var args = arguments, i = 0;
	return this.replace(/%(%|(\.(\d+))?([sdfhx]))/g, function(m, pct, p, prec, conv) {
		if (pct == '%') return '%';
		var a = args[i++];
		switch (conv) {
		case 's': return String(a);
		case 'd': return String(Math.floor(Number(a)));
		case 'f': return Number(a).toFixed(prec != null ? +prec : 6);
		case 'x': return Number(a).toString(16);
		case 'h': return String(a).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
		}
	});
};

function append(node, children) {
	if (children == null) return;
	if (Array.isArray(children)) { children.forEach(function(c) { append(node, c); }); return; }
	if (children instanceof Node) node.appendChild(children);
	else node.appendChild(document.createTextNode(String(children)));
}

// LuCI's E(): E(tag, attrs, children), E(tag, children), E([], children).
window.E = function(tag, attrs, children) {
	var node;
	if (Array.isArray(tag)) {
		node = document.createDocumentFragment();
		append(node, attrs);
		return node;
	}
	node = document.createElement(tag);
	if (attrs != null && (typeof attrs != 'object' || Array.isArray(attrs) || attrs instanceof Node)) {
		children = attrs;
		attrs = null;
	}
	for (var k in (attrs || {})) {
		var v = attrs[k];
		if (typeof v == 'function') node.addEventListener(k, v);
		else if (v != null) node.setAttribute(k, v);
	}
	append(node, children);
	return node;
};

function extend(base) {
	return function(props) {
		var Class = function() { if (this.__init__) this.__init__.apply(this, arguments); };
		Class.prototype = Object.assign(Object.create(base.prototype || {}), props);
		Class.extend = extend(Class);
		return Class;
	};
}
var baseclass = { extend: extend(function() {}) };

var dom = {
	content: function(node, children) {
		while (node.firstChild) node.removeChild(node.firstChild);
		append(node, children);
		return node;
	},
	parent: function(node, selector) { return node.closest(selector); }
};

var poll = {
	add: function(fn, interval) { window.POLLS.push({ fn: fn, interval: interval }); }
};

var rpc = {
	// LuCI: declare({object, method, params, expect}) returns a function
	// whose call resolves with the answer, unwrapped by `expect`.
	declare: function(d) {
		return function() {
			var args = Array.prototype.slice.call(arguments);
			window.RPC_CALLS.push(d.object + '.' + d.method);
			var answers = window.UBUS[d.object] || {};
			if (!(d.method in answers))
				return Promise.reject(new Error('Access denied or not found: ' + d.object + '.' + d.method));
			var answer = answers[d.method];
			var key = d.expect ? Object.keys(d.expect)[0] : null;
			return Promise.resolve(key != null ? answer[key] : answer);
		};
	}
};

var ui = {
	addNotification: function(title, children, type) {
		var n = E('div', { 'class': 'alert-message ' + (type || '') }, [ title ? E('h4', {}, title) : '', children ]);
		window.NOTES.push(n.textContent);
		document.body.insertBefore(n, document.body.firstChild);
		return n;
	},
	createHandlerFn: function(ctx, fn) {
		return function(ev) { return fn.call(ctx, ev); };
	}
};

var view = {
	extend: function(props) { return props; }
};

// form: Map, sections and options, rendered as LuCI's CBI markup does in
// outline (a table of label and widget per option, a grid per typed
// section), with each option's validate() callable the way form.js calls
// it: this = the option, arguments (section_id, formvalue).
var form = (function() {
	function Option(section, name, title, description) {
		this.section = section; this.option = name; this.title = title; this.description = description;
		this.deps = [];
	}
	Option.prototype.depends = function(k, v) { this.deps.push([k, v]); };
	Option.prototype.cfgvalue = function(sid) {
		var s = window.UCI[this.section.config][sid] || {};
		return s[this.option];
	};
	function makeOption(kind) {
		var C = function(section, name, title, description) { Option.call(this, section, name, title, description); this.kind = kind; };
		C.prototype = Object.create(Option.prototype);
		return C;
	}
	function Section(map, type, title, description) {
		this.map = map; this.config = map.config; this.sectiontype = type; this.title = title;
		this.description = description; this.children = []; this.tabs = [];
		this.formvalues = {};
	}
	Section.prototype.option = function(Class, name, title, description) {
		var o = new Class(this, name, title, description);
		this.children.push(o);
		return o;
	};
	Section.prototype.tab = function(name, title) { this.tabs.push([name, title]); };
	Section.prototype.taboption = function(tab, Class, name, title, description) {
		var o = this.option(Class, name, title, description);
		o.tab = tab;
		return o;
	};
	Section.prototype.formvalue = function(sid, name) {
		var f = this.formvalues[sid] || {};
		return (name in f) ? f[name] : (window.UCI[this.config][sid] || {})[name];
	};
	Section.prototype.sectionIds = function() {
		var c = window.UCI[this.config], type = this.sectiontype, named = this.named;
		return Object.keys(c).filter(function(sid) {
			return c[sid]['.type'] == type && (named == null || sid == named);
		});
	};
	function widget(o, sid) {
		var v = o.cfgvalue(sid);
		if (o.kind == 'flag')
			return E('input', Object.assign({ 'type': 'checkbox', 'data-option': o.option },
				(v == null ? o.default == '1' : v == '1') ? { 'checked': 'checked' } : {}));
		if (o.kind == 'list')
			return E('div', { 'class': 'cbi-dynlist', 'data-option': o.option },
				(Array.isArray(v) ? v : (v ? [v] : [])).map(function(x) { return E('div', { 'class': 'item' }, x); }));
		return E('input', { 'type': 'text', 'data-option': o.option, 'value': v == null ? '' : v, 'placeholder': o.placeholder || '' });
	}
	Section.prototype.render = function() {
		var self = this, ids = this.sectionIds();
		if (this.grid) {
			return E('div', { 'class': 'cbi-section', 'data-section': this.sectiontype }, [
				E('h3', {}, this.title), E('p', {}, this.description || ''),
				E('table', { 'class': 'table cbi-section-table' }, [
					E('tr', { 'class': 'tr table-titles' }, [ E('th', {}, _('Name')) ].concat(
						this.children.map(function(o) { return E('th', {}, o.title); })))
				].concat(ids.map(function(sid) {
					return E('tr', { 'class': 'tr cbi-section-table-row', 'data-sid': sid },
						[ E('td', {}, sid) ].concat(self.children.map(function(o) { return E('td', {}, widget(o, sid)); })));
				})))
			]);
		}
		var tabs = this.tabs.length ? this.tabs : [[null, null]];
		return E('div', { 'class': 'cbi-section', 'data-section': this.sectiontype }, [
			this.title ? E('h3', {}, this.title) : '', E('p', {}, this.description || '')
		].concat(tabs.map(function(t) {
			return E('div', { 'class': 'cbi-tab', 'data-tab': t[0] || '' }, [ t[1] ? E('h3', {}, t[1]) : '' ].concat(
				ids.length ? self.children.filter(function(o) { return o.tab == t[0] || t[0] == null; }).map(function(o) {
					return E('div', { 'class': 'cbi-value', 'data-name': o.option }, [
						E('label', { 'class': 'cbi-value-title' }, o.title),
						widget(o, ids[0]),
						o.description ? E('div', { 'class': 'cbi-value-description' }, o.description) : ''
					]);
				}) : []));
		})));
	};
	function Map(config, title, description) {
		this.config = config; this.title = title; this.description = description; this.sections = [];
		window.FORM_MAP = this;
	}
	Map.prototype.section = function(Class, a, b, c) {
		var s = new Class(this, a, b, c);
		this.sections.push(s);
		return s;
	};
	Map.prototype.render = function() {
		return Promise.resolve(E('div', { 'class': 'cbi-map' }, [
			E('h2', {}, this.title), E('div', { 'class': 'cbi-map-descr' }, this.description)
		].concat(this.sections.map(function(s) { return s.render(); }))));
	};
	// Run an option's validation as form.js does: the datatype first (the
	// few LuCI datatypes the views use, as validation.js defines them), then
	// validate(); true or the message. The other fields of the section keep
	// their UCI values.
	var datatypes = {
		port: function(v) { return /^[0-9]+$/.test(v) && +v <= 65535; },
		macaddr: function(v) { return /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(v); },
		uciname: function(v) { return /^[a-zA-Z0-9_]+$/.test(v); }
	};
	Map.prototype.validate = function(sid, option, value) {
		for (var i = 0; i < this.sections.length; i++) {
			var s = this.sections[i];
			var o = s.children.filter(function(c) { return c.option == option; })[0];
			if (!o) continue;
			s.formvalues = {};
			s.formvalues[sid] = {};
			s.formvalues[sid][option] = value;
			if (o.datatype && value !== '' && !datatypes[o.datatype](value))
				return 'Expecting: ' + o.datatype;
			return o.validate ? o.validate.call(o, sid, value) : true;
		}
		throw new Error('no option ' + option);
	};
	var NamedSection = function(map, name, type, title, description) {
		Section.call(this, map, type, title, description);
		this.named = name;
	};
	NamedSection.prototype = Object.create(Section.prototype);
	var TypedSection = function(map, type, title, description) { Section.call(this, map, type, title, description); };
	TypedSection.prototype = Object.create(Section.prototype);
	var GridSection = function(map, type, title, description) {
		Section.call(this, map, type, title, description);
		this.grid = true;
	};
	GridSection.prototype = Object.create(Section.prototype);
	return {
		Map: Map, NamedSection: NamedSection, TypedSection: TypedSection, GridSection: GridSection,
		Flag: makeOption('flag'), Value: makeOption('value'), DynamicList: makeOption('list'),
		ListValue: makeOption('value')
	};
})();

var modules = { baseclass: baseclass, dom: dom, poll: poll, rpc: rpc, ui: ui, view: view, form: form };

// LuCI's loader: a view file is the body of a function whose parameters are
// its 'require' lines (the module's last name, or the `as` name).
window.loadView = function(source) {
	var names = [], values = [], re = /^'require ([\w.]+)(?: as (\w+))?';/gm, m;
	while ((m = re.exec(source)) != null) {
		var name = m[2] || m[1].split('.').pop();
		if (!(m[1] in modules)) throw new Error('the shim has no module ' + m[1]);
		names.push(name);
		values.push(modules[m[1]]);
	}
	return Function.apply(null, names.concat([source])).apply(null, values);
};

// Load and render a view into #maincontent, as LuCI's dispatcher does.
window.renderView = function(source) {
	var v = window.loadView(source);
	// Status overview includes are classes, which LuCI instantiates.
	if (typeof v == 'function') v = new v();
	return Promise.resolve(v.load ? v.load() : null).then(function(data) {
		return v.render(data);
	}).then(function(node) {
		document.getElementById('maincontent').appendChild(node);
		document.body.setAttribute('data-rendered', 'yes');
	}).catch(function(e) {
		document.body.setAttribute('data-error', String(e && e.stack || e));
	});
};
