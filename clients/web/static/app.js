/* lc-web's dashboard: the seed's Output list and Trigger action, the modules, the GPIO lines,
 * a panel to send calls, tasks and events, and the live feed of the bus. Plain JavaScript on
 * lc-web's HTTP API (docs/modules/web.md); no framework, no build step. */
'use strict';

const POLL_MS = 2000;          /* modules, stats and GPIO lines are read again this often */
const FEED_MAX = 300;          /* rows kept in the live feed: the oldest go first */
const GPIO_STATES = ['off', 'blink_veryslow', 'blink_slow', 'blink', 'blink_fast',
                     'blink_veryfast', 'on'];

const S = {
  self: 'web',                 /* this module's name on the bus, from /api/info */
  gpio: 'gpio',                /* the gpio module the GPIO view shows */
  log: new Map(),              /* position -> text */
  emptyText: '',
  methods: new Map(),          /* module -> [method names], for the panel's suggestions */
  events: new Set(),           /* event names some module subscribes to */
  feedSource: null,
  paused: false,
  missed: 0,
  ownIds: new Set(),           /* ids of this page's polling calls, to hide their answers too */
  timers: {},
};

/* ---- Small helpers ---- */

const $ = (id) => document.getElementById(id);

/* An element with attributes and children (strings become text: nothing is parsed as HTML). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/* One request to the API. Never throws: a network failure comes back as status 0. */
async function api(method, path, body) {
  const opts = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const started = performance.now();
  let res;
  try {
    res = await fetch(path, opts);
  } catch (err) {
    return { status: 0, ok: false, statusText: 'no answer', json: null,
             text: `the server did not answer (${err.message}): is lc-web running?`, ms: 0 };
  }
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* shown as text */ }
  return { status: res.status, ok: res.ok, statusText: res.statusText, json, text,
           ms: Math.round(performance.now() - started) };
}

/* The message of an API error answer, or the text of whatever came. */
function errorText(r) {
  const e = r.json && r.json.error;
  if (e) return `${e.name ? e.name + ': ' : ''}${e.message || ''}`;
  return r.text ? r.text.trim() : `HTTP ${r.status}`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  let s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  let m = Math.floor(s / 60); s %= 60;
  if (m < 60) return `${m} min ${s} s`;
  let h = Math.floor(m / 60); m %= 60;
  if (h < 24) return `${h} h ${m} min`;
  const d = Math.floor(h / 24); h %= 24;
  return `${d} d ${h} h`;
}

function clock(timeUs) {
  const d = new Date(timeUs / 1000);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/* Runs fn after ms, once, however often it is asked for meanwhile. */
function soon(name, fn, ms) {
  if (S.timers[name]) return;
  S.timers[name] = setTimeout(() => { S.timers[name] = null; fn(); }, ms);
}

/* Calls fn now and then every ms after each run ends (runs never overlap); skipped while the
 * page is hidden. */
function every(ms, fn) {
  const tick = async () => {
    if (!document.hidden) await fn();
    setTimeout(tick, ms);
  };
  tick();
}

/* ---- Header ---- */

async function loadInfo() {
  const r = await api('GET', '/api/info');
  if (!r.ok || !r.json) return;
  const info = r.json;
  if (info.module) S.self = info.module;
  if (info.gpio) S.gpio = info.gpio;
  if (info.title) {
    $('title').textContent = info.title;
    document.title = info.title;
  }
  $('user').textContent = info.user ? info.user : 'not logged in';
  $('user').classList.toggle('muted', !info.user);
  $('gpio-name').textContent = `(${S.gpio})`;
  $('version').textContent = `lc ${info.version || ''} · module ${S.self}`;
}

/* ---- Output: the seed's log list ---- */

const LOG_MAX = 1000;           /* log lines kept here, as lc-web keeps its last ones */

function renderLog() {
  const list = $('log');
  let rows = [...S.log.entries()].sort((a, b) => a[0] - b[0]);
  if (rows.length > LOG_MAX) {
    for (const [pos] of rows.slice(0, rows.length - LOG_MAX)) S.log.delete(pos);
    rows = rows.slice(rows.length - LOG_MAX);
  }
  if (rows.length === 0) {
    list.replaceChildren(el('li', { class: 'empty', 'data-testid': 'log-empty', text: S.emptyText }));
    return;
  }
  /* New lines come at the end: follow them, unless the reader scrolled up to older ones. */
  const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren(...rows.map(([pos, text]) =>
    el('li', { 'data-testid': 'log-entry', 'data-position': pos },
       el('span', { class: 'pos', text: `${pos}: ` }), text)));
  if (atEnd) list.scrollTop = list.scrollHeight;
}

async function loadLog() {
  const r = await api('GET', '/api/log');
  if (!r.ok || !r.json) return;
  S.emptyText = r.json.empty_text || '';
  for (const e of r.json.entries || []) S.log.set(e.position, e.text);
  renderLog();
}

function openLogStream() {
  const es = new EventSource('/api/events?types=log');
  es.addEventListener('open', loadLog); /* also after a reconnect: what came meanwhile */
  es.addEventListener('log', (ev) => {
    const e = JSON.parse(ev.data);
    S.log.set(e.position, e.text);
    renderLog();
  });
  es.addEventListener('dropped', loadLog);
}

async function trigger() {
  const button = $('trigger');
  const out = $('trigger-result');
  button.disabled = true;
  const r = await api('POST', '/api/trigger');
  button.disabled = false;
  if (r.ok && r.json) {
    const parts = [`added line ${r.json.position}`];
    if (r.json.enqueued) parts.push('enqueued one more');
    if (r.json.emitted) parts.push('emitted webpage_trigger');
    out.textContent = `Triggered: ${parts.join(', ')}.`;
    out.className = 'note ok';
  } else {
    out.textContent = `Trigger failed (HTTP ${r.status}): ${errorText(r)}`;
    out.className = 'note err';
  }
  loadLog();
  soon('gpio', loadGpio, 300); /* the controller steps the outputs */
}

/* ---- Modules ---- */

function badge(value, prefix) {
  const v = value === null || value === undefined ? '—' : String(value);
  return el('span', { class: `badge ${prefix}-${v.replace(/[^a-z_]/gi, '')}`, text: v });
}

function renderModules(data) {
  const body = $('modules-body');
  const mods = data.modules || [];
  const rows = mods.map((m) =>
    el('tr', { 'data-testid': `module-${m.name}`, 'data-name': m.name,
               'data-state': m.state ?? '', 'data-bus-state': m.bus_state ?? '' },
       el('th', { scope: 'row', text: m.name }),
       el('td', { 'data-field': 'state' }, badge(m.state, 'st')),
       el('td', { 'data-field': 'bus_state' }, badge(m.bus_state, 'bus')),
       el('td', { class: 'num', 'data-field': 'pid', text: m.pid ?? '—' }),
       el('td', { class: 'num', 'data-field': 'uptime', text: duration(m.uptime_ms) }),
       el('td', { class: 'num', 'data-field': 'restarts', text: m.restarts ?? '—' }),
       el('td', { 'data-field': 'last_exit', text: m.last_exit ?? '—' })));
  body.replaceChildren(...rows);

  S.methods.clear();
  S.events.clear();
  for (const m of mods) {
    S.methods.set(m.name, (m.methods || []).map((x) => (typeof x === 'string' ? x : x.name)));
    for (const e of m.subscriptions || []) if (!e.includes('*')) S.events.add(e);
  }
  fillTargets();
  const note = data.launcher ? `${mods.length} modules` :
    `${mods.length} modules on the bus (no launcher: no process states)`;
  $('modules-note').textContent = note;
  $('modules-note').className = 'note';
}

async function loadModules() {
  const r = await api('GET', '/api/modules');
  if (r.ok && r.json) renderModules(r.json);
  else {
    $('modules-note').textContent = `Cannot read the modules (HTTP ${r.status}): ${errorText(r)}`;
    $('modules-note').className = 'note err';
  }
}

const STAT_KEYS = [['calls', 'calls'], ['tasks', 'tasks'], ['events', 'events'],
                   ['queued', 'queued'], ['failed', 'failed'], ['dropped', 'dropped'],
                   ['timeouts', 'timeouts'], ['gone', 'gone']];

async function loadStats() {
  const r = await api('GET', '/api/stats');
  if (!r.ok || !r.json) return;
  const items = [];
  for (const [key, label] of STAT_KEYS) {
    if (!(key in r.json)) continue;
    items.push(el('div', { 'data-stat': key }, el('dt', { text: label }),
                  el('dd', { text: r.json[key] })));
  }
  $('stats').replaceChildren(...items);
}

/* ---- GPIO ---- */

async function gpioCall(method, args) {
  const r = await api('POST', `/api/call/${encodeURIComponent(S.gpio)}.${method}`, args);
  if (!r.ok) {
    $('gpio-note').textContent = `${S.gpio}.${method} failed (HTTP ${r.status}): ${errorText(r)}`;
    $('gpio-note').className = 'note err';
  }
  return r;
}

/* Rows are made once per line and then only updated, so a control keeps its focus while the
 * view follows the outputs. */
function syncRows(tbody, lines, make, update) {
  const want = lines.map((l) => String(l.line)).join(',');
  const have = [...tbody.rows].map((r) => r.dataset.line).join(',');
  if (want !== have) tbody.replaceChildren(...lines.map(make));
  [...tbody.rows].forEach((row, i) => update(row, lines[i]));
}

function setLamp(lamp, value) {
  const text = value === null || value === undefined ? 'unknown' : value ? 'high' : 'low';
  lamp.className = `lamp ${value ? 'on' : 'off'}`;
  lamp.setAttribute('aria-label', text);
  lamp.title = text;
}

function makeOutputRow(l) {
  const name = l.line_name || `line ${l.line}`;
  const set = (state) => async () => {
    await gpioCall('set_output_state', { line: l.line, state_new: state });
    loadGpio();
  };
  const select = el('select', { 'aria-label': `State of ${name}`, 'data-testid': `gpio-select-${l.line}` },
    GPIO_STATES.map((s) => el('option', { value: s, text: s })));
  select.addEventListener('change', () => set(select.value)());
  const button = (label, aria, testid, onclick) =>
    el('button', { type: 'button', 'aria-label': aria, 'data-testid': testid, onclick, text: label });
  return el('tr', { 'data-testid': `gpio-line-${l.line}`, 'data-line': l.line },
    el('td', { class: 'num', text: l.line }),
    el('td', {}, el('span', { class: 'lamp', role: 'img', 'data-testid': `gpio-level-${l.line}` }),
       ` ${l.line_name || '—'}`),
    el('td', {}, select),
    el('td', { class: 'buttons' },
       button('On', `${name} on`, `gpio-on-${l.line}`, set('on')),
       button('Off', `${name} off`, `gpio-off-${l.line}`, set('off')),
       button('Toggle', `Toggle ${name}`, `gpio-toggle-${l.line}`, async () => {
         await gpioCall('toggle_output_state', { line: l.line });
         loadGpio();
       })));
}

function updateOutputRow(row, l) {
  row.dataset.state = l.state_name;
  row.dataset.value = l.value;
  setLamp(row.querySelector('.lamp'), l.value);
  const select = row.querySelector('select');
  if (document.activeElement !== select) select.value = l.state_name;
}

function makeInputRow(l) {
  const name = l.line_name || `line ${l.line}`;
  const sim = (value) => async () => {
    await gpioCall('sim_set_input', { line: l.line, value });
    soon('gpio', loadGpio, 100);
  };
  return el('tr', { 'data-testid': `gpio-line-${l.line}`, 'data-line': l.line },
    el('td', { class: 'num', text: l.line }),
    el('td', { text: l.line_name || '—' }),
    el('td', {}, el('span', { class: 'lamp', role: 'img' }), el('span', { class: 'level' })),
    el('td', { class: 'num seq' }),
    el('td', { class: 'buttons sim' },
       el('button', { type: 'button', onclick: sim(0), 'aria-label': `Set ${name} low`, text: 'Low' }),
       el('button', { type: 'button', onclick: sim(1), 'aria-label': `Set ${name} high`, text: 'High' })));
}

function updateInputRow(row, l, canSimulate) {
  row.dataset.value = l.value ?? '';
  setLamp(row.querySelector('.lamp'), l.value);
  row.querySelector('.level').textContent =
    l.value === null || l.value === undefined ? ' ?' : l.value ? ' high' : ' low';
  row.querySelector('.seq').textContent = l.line_seq ?? '—';
  row.querySelector('.sim').hidden = !canSimulate;
}

async function loadGpio() {
  const r = await api('POST', `/api/call/${encodeURIComponent(S.gpio)}.get_lines`, {});
  const note = $('gpio-note');
  if (!r.ok || !Array.isArray(r.json)) {
    note.textContent = r.status === 404 ?
      `No module '${S.gpio}' on the bus (this module's gpio setting names it).` :
      `Cannot read the lines of '${S.gpio}' (HTTP ${r.status}): ${errorText(r)}`;
    note.className = 'note err';
    $('gpio-outputs').replaceChildren();
    $('gpio-inputs').replaceChildren();
    return;
  }
  note.textContent = '';
  note.className = 'note';
  /* Inputs can be driven from here when the chip is simulated (lc-gpio's sim backend). */
  const canSimulate = (S.methods.get(S.gpio) || []).includes('sim_set_input');
  $('gpio-sim-h').hidden = !canSimulate;
  syncRows($('gpio-outputs'), r.json.filter((l) => l.direction === 'output'),
           makeOutputRow, updateOutputRow);
  syncRows($('gpio-inputs'), r.json.filter((l) => l.direction !== 'output'),
           makeInputRow, (row, l) => updateInputRow(row, l, canSimulate));
}

/* ---- The panel: call, enqueue, emit ---- */

function fillTargets() {
  const kind = $('send-kind').value;
  const names = [];
  if (kind === 'emit') names.push(...[...S.events].sort());
  else {
    for (const [mod, methods] of [...S.methods.entries()].sort())
      for (const m of methods) names.push(`${mod}.${m}`);
  }
  const list = $('send-targets');
  const now = [...list.options].map((o) => o.value).join('\n');
  if (now !== names.join('\n')) list.replaceChildren(...names.map((n) => el('option', { value: n })));
}

function kindChanged() {
  const kind = $('send-kind').value;
  $('send-target-label').textContent = kind === 'emit' ? 'Event' : 'Method';
  $('send-target').placeholder = kind === 'emit' ? 'event_name' : 'module.method';
  $('send-priority').disabled = kind === 'call';
  fillTargets();
}

function showResult(ok, status, body) {
  $('send-result').hidden = false;
  $('send-result').className = `result ${ok ? 'ok' : 'err'}`;
  $('send-result').dataset.ok = ok ? 'true' : 'false';
  $('send-status').textContent = status;
  $('send-body').textContent = body;
}

async function send(ev) {
  ev.preventDefault();
  const kind = $('send-kind').value;
  const target = $('send-target').value.trim();
  const text = $('send-args').value.trim() || '{}';
  let args;
  try {
    args = JSON.parse(text);
  } catch (err) {
    showResult(false, 'Not sent: the arguments are not valid JSON', err.message);
    return;
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    showResult(false, 'Not sent: the arguments must be a JSON object', 'for example {"text": "hi"}');
    return;
  }
  if (kind !== 'emit' && !/^[^.\s]+\.[^\s]+$/.test(target)) {
    showResult(false, 'Not sent: the method must be written module.method', 'for example echo.echo');
    return;
  }
  const query = new URLSearchParams();
  if (kind !== 'call' && $('send-priority').value) query.set('priority', $('send-priority').value);
  const q = query.toString() ? `?${query}` : '';
  $('send').disabled = true;
  const r = await api('POST', `/api/${kind}/${encodeURIComponent(target)}${q}`, args);
  $('send').disabled = false;
  const head = `HTTP ${r.status} ${r.statusText || ''}`.trim() + (r.ms ? ` · ${r.ms} ms` : '');
  if (r.ok) {
    showResult(true, head, r.json !== null ? JSON.stringify(r.json, null, 2) : r.text);
  } else {
    const e = r.json && r.json.error;
    const name = e && e.name ? ` · ${e.name}` : '';
    showResult(false, head + name, e ? JSON.stringify(r.json, null, 2) : r.text);
  }
}

/* ---- The live feed ---- */

/* What this page reads by itself every few seconds: hidden from the feed unless asked. */
function isOwnPolling(rec) {
  if (rec.source === S.self && rec.kind === 'call') {
    const own = ['launcher.status', 'broker.list', 'broker.stats', `${S.gpio}.get_lines`];
    if (own.includes(rec.target)) {
      S.ownIds.add(rec.id);
      if (S.ownIds.size > 1000) S.ownIds.delete(S.ownIds.values().next().value);
      return true;
    }
  }
  if ((rec.kind === 'reply' || rec.kind === 'error') && S.ownIds.has(rec.parent)) {
    S.ownIds.delete(rec.parent);
    return true;
  }
  return false;
}

/* The dashboard follows what the bus says happened. */
function react(rec) {
  const g = S.gpio;
  if (rec.source === g || (rec.target || '').startsWith(`${g}.`) || (rec.to || []).includes(g))
    soon('gpio', loadGpio, 150);
  if (['module_state', 'module_lost'].includes(rec.target) ||
      ['welcome', 'bye', 'state'].includes(rec.type))
    soon('modules', loadModules, 250);
}

function short(value, max) {
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

function feedRow(rec) {
  if (rec.kind === 'dropped') {
    return el('li', { class: 'rec dropped', 'data-kind': 'dropped' },
      `${rec.count ?? rec.dropped} records dropped here (the stream could not keep up)`);
  }
  const to = (rec.to || []).join(', ');
  let route;
  if (rec.type === 'start' || rec.type === 'done') {
    const done = (rec.done || []).map((d) =>
      `${d.name || d.id}${d.status ? ' failed' : ''}${d.latency_us !== undefined ? ` (${d.latency_us} µs)` : ''}`);
    route = `${rec.source} ${rec.type}${done.length ? ': ' + done.join(', ') : ''}`;
  } else if (rec.kind === 'event') {
    route = `${rec.source} → ${rec.target}${to ? ` ⇒ ${to}` : ' ⇒ no subscriber'}`;
  } else if (rec.kind === 'reply' || rec.kind === 'error') {
    route = `${rec.source} → ${to}`;
  } else {
    route = `${rec.source} → ${rec.target || to}`;
  }
  const payload = rec.payload !== undefined && rec.payload !== null ? short(rec.payload, 160) : '';
  return el('li', { class: `rec kind-${rec.kind}`, 'data-kind': rec.kind, 'data-type': rec.type,
                    'data-testid': 'feed-record', title: `tx ${rec.tx} · id ${rec.id}` },
    el('time', { text: rec.time_us ? clock(rec.time_us) : '' }),
    el('span', { class: `type t-${rec.type}`, text: rec.type }),
    el('span', { class: 'route', text: route }),
    rec.status ? el('span', { class: 'status', text: rec.status_name || rec.status }) : null,
    rec.latency_us !== undefined ? el('span', { class: 'lat', text: `${rec.latency_us} µs` }) : null,
    payload ? el('code', { class: 'payload', text: payload }) : null);
}

function addFeedRow(row) {
  if (S.paused) {
    S.missed++;
    $('feed-count').textContent = `paused: ${S.missed} not shown`;
    return;
  }
  const list = $('feed-list');
  list.prepend(row);
  while (list.childElementCount > FEED_MAX) list.lastElementChild.remove();
}

function openFeed() {
  if (S.feedSource) S.feedSource.close();
  const q = new URLSearchParams({ types: 'bus' });
  const mod = $('feed-module').value.trim();
  const evt = $('feed-event').value.trim();
  const kind = $('feed-kind').value;
  if (mod) q.set('module', mod);
  if (evt) q.set('event', evt);
  if (kind) q.set('kind', kind);
  const es = new EventSource(`/api/events?${q}`);
  S.feedSource = es;
  const conn = $('connection');
  conn.textContent = 'connecting';
  conn.className = 'badge';
  es.addEventListener('open', () => {
    conn.textContent = 'live';
    conn.className = 'badge live';
  });
  es.addEventListener('error', () => {
    conn.textContent = es.readyState === EventSource.CLOSED ? 'stream closed' : 'reconnecting';
    conn.className = 'badge down';
  });
  es.addEventListener('bus', (ev) => {
    const rec = JSON.parse(ev.data);
    /* The page's own reads never cause another read (that would loop). */
    if (isOwnPolling(rec)) {
      if ($('feed-own').checked) return;
    } else {
      react(rec);
    }
    addFeedRow(feedRow(rec));
  });
  es.addEventListener('dropped', (ev) => {
    const d = JSON.parse(ev.data);
    addFeedRow(feedRow({ kind: 'dropped', count: d.dropped }));
  });
}

function togglePause() {
  S.paused = !S.paused;
  const b = $('feed-pause');
  b.textContent = S.paused ? 'Resume' : 'Pause';
  b.setAttribute('aria-pressed', String(S.paused));
  S.missed = 0;
  $('feed-count').textContent = S.paused ? 'paused' : '';
}

/* ---- Start ---- */

async function start() {
  $('trigger').addEventListener('click', trigger);
  $('send-form').addEventListener('submit', send);
  $('send-kind').addEventListener('change', kindChanged);
  $('feed-form').addEventListener('submit', (ev) => { ev.preventDefault(); openFeed(); });
  $('feed-pause').addEventListener('click', togglePause);
  $('feed-clear').addEventListener('click', () => {
    $('feed-list').replaceChildren();
    S.missed = 0;
    $('feed-count').textContent = S.paused ? 'paused' : '';
  });
  kindChanged();
  renderLog();
  await loadInfo();
  openLogStream();
  openFeed();
  every(POLL_MS, loadModules);
  every(POLL_MS, loadStats);
  every(POLL_MS, loadGpio);
}

document.addEventListener('DOMContentLoaded', start);
