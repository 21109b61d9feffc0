// swarmgate dashboard: polls the admin API every 2 s and renders it, read-only.
//
// Everything the API returns is rendered as text (text nodes, textContent, setAttribute on
// fixed attribute names), never as markup: hosts, paths, problem messages and label keys come
// from service labels, which anyone who can deploy a service writes.
'use strict';
(function () {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const state = { routes: [], generation: null, problems: [], certs: [], prev: null, rates: new Map(), lastOk: null };

  // A script error must be visible on the page, not only in a console nobody has open.
  window.addEventListener('error', (e) => showBanner('Dashboard script error: ' + e.message, 'js-error'));

  /** An element with properties and children; strings become text nodes, never markup. */
  function el(tag, props, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') n.className = v;
      else n.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === '') continue;
      n.append(c instanceof Node ? c : String(c));
    }
    return n;
  }

  const tag = (text, cls, title) => el('span', { class: 'tag ' + (cls || ''), title }, text);

  /** GETs a same-origin API path; a failure says what answered, for the banner. An API
   * that does not answer in 15 s counts as failed, so a hung listener cannot hide behind the
   * last data shown. */
  async function getJson(path) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 15000);
    let resp;
    try {
      resp = await fetch(path, { cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' }, signal: abort.signal });
    } catch (e) {
      throw { what: abort.signal.aborted ? 'API did not answer in 15 s' : 'API unreachable', path };
    } finally {
      clearTimeout(timer);
    }
    if (!resp.ok) throw { what: 'API answered ' + resp.status, path };
    return resp.json();
  }

  function showBanner(text, id) {
    const b = $('banner');
    b.textContent = text;
    if (id) b.dataset.kind = id;
    b.hidden = false;
  }

  /** "API answered 401 on /api/routes, /api/problems", one clause per distinct answer. */
  function failureText(failures) {
    const by = new Map();
    for (const f of failures) by.set(f.what, (by.get(f.what) || []).concat(f.path || '?'));
    let text = Array.from(by, ([what, paths]) => what + ' on ' + paths.join(', ')).join('; ');
    if (failures.some((f) => f.what === 'API answered 401')) {
      text += '. The admin listener needs credentials: the dashboard works with basic_auth_file, or through an SSH tunnel to a loopback admin listener.';
    }
    if (state.lastOk) text += ' Showing data from ' + state.lastOk.toLocaleTimeString() + '.';
    return text;
  }

  /** Per-route request and 5xx rates from two successive counter samples. */
  function updateRates(routes, now) {
    const cur = new Map(routes.map((r) => [r.id, r.counters || {}]));
    const prev = state.prev;
    if (prev && now > prev.t) {
      const dt = (now - prev.t) / 1000;
      // A counter that went down was reset (the route was removed and came back): count from 0.
      const delta = (a, b) => ((a || 0) >= (b || 0) ? (a || 0) - (b || 0) : a || 0);
      state.rates = new Map();
      for (const [id, c] of cur) {
        const p = prev.c.get(id);
        if (p) state.rates.set(id, { req: delta(c.requests, p.requests) / dt, err: delta(c.server_errors, p.server_errors) / dt });
      }
    }
    state.prev = { t: now, c: cur };
  }

  async function poll() {
    try {
      const results = await Promise.allSettled([getJson('/api/routes'), getJson('/api/problems'), getJson('/api/certificates')]);
      const [routes, problems, certs] = results.map((r) => (r.status === 'fulfilled' ? r.value : null));
      if (routes) {
        updateRates(routes.routes || [], performance.now());
        state.routes = routes.routes || [];
        state.generation = routes.generation;
      }
      if (problems) state.problems = problems.problems || [];
      if (certs) state.certs = certs.certificates || [];
      const failures = results.filter((r) => r.status === 'rejected').map((r) => r.reason || {});
      if (failures.length) {
        showBanner(failureText(failures), 'api');
        $('live').className = 'live stale';
        $('live').textContent = 'not updating';
      } else {
        state.lastOk = new Date();
        if ($('banner').dataset.kind !== 'js-error') $('banner').hidden = true;
        $('live').className = 'live ok';
        $('live').textContent = 'live · ' + state.lastOk.toLocaleTimeString();
      }
      render();
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  // ---- filtering ----

  const filterText = () => $('filter').value.trim().toLowerCase();
  const matches = (needle, ...fields) => !needle || fields.flat().some((f) => String(f || '').toLowerCase().includes(needle));
  const routeFields = (r) => [r.spec.hosts, r.origin && r.origin.service, r.id];

  // ---- formatting ----

  function pathText(p) {
    if (!p) return '';
    if ('Exact' in p) return '= ' + p.Exact;
    if ('RawPrefix' in p) return p.RawPrefix + '*';
    return p.Prefix;
  }

  function rate(v) {
    if (v === undefined) return '–';
    return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  /** A date as "2026-02-01 12:00 UTC (in 59 d)"; what cannot be parsed is shown as sent. */
  function when(s) {
    if (!s) return '';
    const d = new Date(s);
    if (isNaN(d.getTime())) return String(s);
    const days = (d.getTime() - Date.now()) / 86400000;
    const rel = Math.abs(days) < 1 ? Math.round(days * 24) + ' h' : Math.round(days) + ' d';
    return d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC (' + (days >= 0 ? 'in ' + rel : rel.replace('-', '') + ' ago') + ')';
  }

  /** The middleware's name and, for the harmless ones, its argument (header edits and basic
   * auth show no values: the API redacts secrets, the page does not even show the rest). */
  function middlewareTag(m) {
    const name = typeof m === 'string' ? m : Object.keys(m)[0];
    const arg = typeof m === 'string' ? undefined : m[name];
    // Retry counts attempts in all; an operator configured the extra ones.
    const snake = name === 'Retry' ? 'retries' : name.replace(/[A-Z]/g, (c, i) => (i ? '_' : '') + c.toLowerCase());
    const shown = { StripPrefix: arg, AddPrefix: arg, Retry: arg && arg.attempts - 1, RateLimit: arg && arg.average + '/' + (arg.period && arg.period.secs) + 's' };
    return tag(shown[name] !== undefined ? snake + ' ' + shown[name] : snake, 'mw');
  }

  // ---- tables ----

  /** Replaces a table body; each cell gets its column's header as `data-label`, which the
   * narrow-screen layout shows in front of the value. */
  function fillTable(id, rows, empty) {
    const body = $(id + '-body');
    const heads = Array.from(body.parentElement.tHead.rows[0].cells);
    const trs = rows.map(({ cells, cls }) =>
      el('tr', { class: cls }, cells.map((c, i) => el('td', { 'data-label': heads[i].textContent, class: heads[i].className }, el('div', { class: 'v' }, c)))),
    );
    if (!trs.length) trs.push(el('tr', { class: 'empty' }, el('td', { colspan: heads.length }, empty)));
    body.replaceChildren(...trs);
  }

  function setCount(id, shown, total) {
    $(id + '-count').textContent = shown === total ? String(total) : shown + ' of ' + total;
  }

  function renderProblems(needle) {
    const all = state.problems.slice().sort((a, b) => (a.severity === b.severity ? 0 : a.severity === 'error' ? -1 : 1));
    const shown = all.filter((p) => matches(needle, p.source, p.key, p.message));
    setCount('problems', shown.length, all.length);
    fillTable(
      'problems',
      shown.map((p) => ({
        cls: 'sev-' + (p.severity === 'warning' ? 'warning' : 'error'),
        cells: [tag(p.severity || 'error', p.severity === 'warning' ? 'warn' : 'bad'), p.source, el('code', null, p.key), p.message],
      })),
      needle ? 'No problem matches the filter.' : 'No problems: every label and config key was understood.',
    );
  }

  /** TLS policy, and whether a certificate the API lists covers the route's first host. */
  function tlsCell(spec) {
    const t = spec.tls;
    const policy = typeof t === 'string' ? t.toLowerCase() : 'static ' + (t && t.Static);
    const host = (spec.hosts || [])[0] || '';
    const covers = (name) => name === host || (name.startsWith('*.') && host.endsWith(name.slice(1)) && host.split('.').length === name.split('.').length);
    const cert = state.certs.find((c) => (c.names && c.names.length ? c.names : [c.name || '']).some(covers));
    const parts = [tag(policy, policy === 'off' ? 'muted' : '')];
    if (cert && cert.not_after) parts.push(tag('cert', 'ok', 'not after ' + cert.not_after));
    if (spec.entrypoints && !spec.entrypoints.https) parts.push(tag('http only', 'muted'));
    return parts;
  }

  function endpointsCell(r) {
    const a = r.spec.action || {};
    if (a.Redirect) return tag('redirect ' + a.Redirect.status, 'muted', a.Redirect.location);
    if (a.Respond) return tag('respond ' + a.Respond.status, 'muted');
    const eps = r.endpoints || [];
    const up = eps.filter((e) => e.healthy && !e.ejected).length;
    return tag(up + ' / ' + eps.length + ' up', !eps.length || up === 0 ? 'bad' : up < eps.length ? 'warn' : 'ok');
  }

  function routeRow(r) {
    const o = r.origin || {};
    const rt = state.rates.get(r.id);
    const hosts = (r.spec.hosts || []).map((h) => el('div', { class: 'host' }, h === '*' ? '* (any host)' : h));
    const path = [el('code', null, pathText(r.spec.path)), r.spec.predicate ? tag('+ rule', 'muted') : null];
    return {
      cells: [
        hosts, path, o.service, [tag(o.dialect || '?', 'd-' + (o.dialect || '')), ' ', el('code', null, o.label)],
        tlsCell(r.spec), (r.spec.middlewares || []).map(middlewareTag), endpointsCell(r),
        rate(rt && rt.req), el('span', { class: rt && rt.err > 0 ? 'err' : '' }, rate(rt && rt.err)),
      ],
    };
  }

  const firstHost = (r) => (r.spec.hosts || [])[0] || '';

  function renderRoutes(needle) {
    const all = state.routes.slice().sort((a, b) => firstHost(a).localeCompare(firstHost(b)) || pathText(a.spec.path).localeCompare(pathText(b.spec.path)));
    const shown = all.filter((r) => matches(needle, routeFields(r)));
    setCount('routes', shown.length, all.length);
    fillTable('routes', shown.map(routeRow), needle ? 'No route matches the filter.' : 'No routes yet.');
    return shown;
  }

  function endpointState(e) {
    if (e.ejected) return tag('ejected', 'bad', 'Taken out after failures; retried later');
    if (!e.healthy) return tag('failing check', 'bad');
    return tag('healthy', 'ok');
  }

  function renderEndpoints(routes) {
    const rows = [];
    for (const r of routes) {
      for (const e of r.endpoints || []) {
        const task = e.task ? el('code', { title: e.task }, e.task.slice(0, 12)) : tag('static', 'muted');
        const node = e.node ? el('code', { title: e.node }, e.node.slice(0, 12)) : '–';
        // Before its first answer an endpoint's latency is the balancer's starting guess.
        const latency = e.requests > 0 && e.latency_ms > 0 ? e.latency_ms.toFixed(1) + ' ms' : '–';
        rows.push({ cells: [firstHost(r) + pathText(r.spec.path).replace(/^\/$/, ''), task, node, el('code', null, e.addr), endpointState(e), String(e.in_flight), latency] });
      }
    }
    const total = state.routes.reduce((n, r) => n + (r.endpoints || []).length, 0);
    setCount('endpoints', rows.length, total);
    fillTable('endpoints', rows, 'No endpoints.');
  }

  function certSource(s) {
    if (typeof s === 'string') return s.toLowerCase();
    return s && s.Static !== undefined ? 'static' : '';
  }

  function renderCertificates(needle) {
    const names = (c) => (c.names && c.names.length ? c.names : [c.name || '']);
    const shown = state.certs.filter((c) => matches(needle, names(c)));
    setCount('certificates', shown.length, state.certs.length);
    fillTable(
      'certificates',
      shown.map((c) => ({
        cls: c.last_error ? 'sev-error' : '',
        cells: [
          names(c).map((n) => el('div', { class: 'host' }, n)), c.issuer || '–', certSource(c.source), when(c.not_after) || 'none yet',
          when(c.next_renewal) || '–', c.last_error ? el('span', { class: 'err' }, c.last_error) : '',
          c.backoff_until ? when(c.backoff_until) + (c.consecutive_failures ? ' · ' + c.consecutive_failures + ' failures' : '') : '',
        ],
      })),
      needle ? 'No certificate matches the filter.' : 'No certificates: no route needs one yet.',
    );
  }

  function renderStats() {
    const errors = state.problems.filter((p) => p.severity !== 'warning').length;
    const warnings = state.problems.length - errors;
    let req = 0;
    let err = 0;
    for (const r of state.rates.values()) {
      req += r.req;
      err += r.err;
    }
    const stat = (label, value, cls) => el('li', { class: cls }, el('b', null, value), ' ', label);
    const generation = el('li', { title: 'Route tables published since start' }, 'table ', el('b', null, state.generation === null ? '–' : '#' + state.generation));
    $('stats').replaceChildren(
      stat('routes', String(state.routes.length)),
      stat('errors', String(errors), errors ? 'bad' : ''),
      stat('warnings', String(warnings), warnings ? 'warn' : ''),
      stat('req/s', state.prev ? rate(req) : '–'),
      stat('5xx/s', state.prev ? rate(err) : '–', err > 0 ? 'bad' : ''),
      generation,
    );
  }

  function render() {
    const needle = filterText();
    renderStats();
    renderProblems(needle);
    renderEndpoints(renderRoutes(needle));
    renderCertificates(needle);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('filter').addEventListener('input', render);
    poll();
  });
})();
