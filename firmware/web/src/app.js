// MEP module web UI: dashboard, tinkering, settings restore, OTA upload. No framework.
(function () {
  'use strict';
  var $ = function (id) { return document.getElementById(id); };
  var meta = document.querySelector('meta[name=csrf]');
  var csrf = meta ? meta.content : '';      // pages built at build time get it from their API
  var page = document.body.getAttribute('data-page');

  // A session that ended (expired, logged out elsewhere, module restarted): log in again and
  // come back to this page.
  function relogin(status) {
    if (status !== 401) return false;
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
    return true;
  }
  function getJSON(url, cb) {
    fetch(url, {cache: 'no-store', credentials: 'same-origin'})
      .then(function (r) {
        if (relogin(r.status)) return;
        return r.json().then(function (j) { cb(j, r.status); });
      })
      .catch(function (e) { cb(null, 0, e); });
  }
  function post(url, body, type, cb, extra) {
    var h = {'Content-Type': type, 'X-CSRF-Token': csrf};
    for (var k in extra || {}) h[k] = extra[k];
    fetch(url, {method: 'POST', credentials: 'same-origin', body: body, headers: h})
      .then(function (r) {
        if (relogin(r.status)) return;
        return r.json().then(function (j) { cb(r.status, j); });
      })
      .catch(function (e) { cb(0, {error: String(e)}); });
  }
  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"]/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c];
    });
  }
  function set(id, v) { var e = $(id); if (e) e.textContent = v; }
  // for the scripts of single pages (settings.js)
  window.mep = {$: $, esc: esc, set: set, post: post, getJSON: getJSON, page: page,
    setCsrf: function (t) { csrf = t; }, csrf: function () { return csrf; }};
  function fmt(v, d) { return v == null ? '-' : Number(v).toFixed(d); }

  document.addEventListener('submit', function (ev) {
    var m = ev.target.getAttribute('data-confirm');
    if (m && !window.confirm(m)) ev.preventDefault();
  });

  // ---- dashboard ----------------------------------------------------------------------
  var plot = null, range = 'hour', lastT = 0, rec = null;

  function showNow(j) {
    if (!j) { set('link', 'no connection to the module'); return; }
    var r = j.r || {};
    set('link', j.link);
    set('lerr', j.error || '');
    if (r.p_in != null) set('p_net', fmt(r.p_in - r.p_out, 0));
    set('p_in', fmt(r.p_in, 0));
    set('p_out', fmt(r.p_out, 0));
    for (var k = 1; k <= 3; k++) {
      set('p_in_l' + k, fmt(r['p_in_l' + k], 0));
      set('p_out_l' + k, fmt(r['p_out_l' + k], 0));
      set('u_l' + k, fmt(r['u_l' + k], 1));
      set('i_l' + k, fmt(r['i_l' + k], 2));
      set('pf_l' + k, fmt(r['pf_l' + k], 3));
    }
    set('freq', fmt(r.freq, 3));
    ['e_in', 'e_out', 'eq_in', 'eq_out'].forEach(function (k) {
      set(k, r[k] == null ? '-' : (r[k] / 1000).toFixed(3));
    });
    var i = j.info || {};
    set('meter', [i.manufacturer, i.model, i.serial, i.fw && 'fw ' + i.fw].filter(Boolean).join(' '));
    if (r.time) set('age', 'reading ' + Math.max(0, Math.round(Date.now() / 1000 - r.time)) + ' s ago');
  }

  function draw(data, series) {
    var box = $('chart');
    if (!box || !window.uPlot) return;
    var w = box.clientWidth || 300;
    if (plot) { plot.destroy(); plot = null; }
    var s = [{}];
    series.forEach(function (x) { s.push({label: x[0], stroke: x[1], width: 1.5,
      fill: x[2] || undefined, paths: x[3] ? uPlot.paths.bars({size: [0.7]}) : undefined}); });
    plot = new uPlot({width: w, height: Math.min(320, Math.round(w * 0.6)), series: s,
      axes: [{}, {size: 60}], legend: {live: true}}, data, box);
  }

  // Last hour: the module keeps only the last minutes at poll resolution in RAM (/api/recent);
  // the rest of the hour comes from the minute history (net average split into import and
  // export). While the page is open, new readings are appended at poll resolution.
  function loadHour() {
    var since = Math.floor(Date.now() / 1000) - 3600;
    getJSON('/api/history?level=minute&since=' + since, function (h) {
      getJSON('/api/recent', function (j) {
        if (!j || !j.time) return;
        var first = j.time.length ? j.time[0] : Infinity, t = [], pi = [], po = [];
        ((h && h.rows) || []).forEach(function (row) {
          if (row[0] + 60 > first || row[2] == null) return;
          t.push(row[0] + 30); pi.push(Math.max(row[2], 0)); po.push(Math.max(-row[2], 0));
        });
        rec = {time: t.concat(j.time), p_in: pi.concat(j.p_in), p_out: po.concat(j.p_out)};
        lastT = j.time.length ? j.time[j.time.length - 1] : 0;
        draw([rec.time, rec.p_in, rec.p_out.map(function (v) { return v == null ? null : -v; })],
          [['Import W', '#c0392b', 'rgba(192,57,43,.08)'], ['Export W', '#27ae60', 'rgba(39,174,96,.08)']]);
      });
    });
  }

  function moreHour() {
    if (range !== 'hour' || !rec || !plot) return;
    getJSON('/api/recent?since=' + lastT, function (j) {
      if (!j || !j.time || !j.time.length) return;
      rec.time = rec.time.concat(j.time);
      rec.p_in = rec.p_in.concat(j.p_in);
      rec.p_out = rec.p_out.concat(j.p_out);
      var cut = 0, old = lastT - 3600;
      while (cut < rec.time.length && rec.time[cut] < old) cut++;
      if (cut > 0) { rec.time = rec.time.slice(cut); rec.p_in = rec.p_in.slice(cut); rec.p_out = rec.p_out.slice(cut); }
      lastT = rec.time[rec.time.length - 1];
      plot.setData([rec.time, rec.p_in, rec.p_out.map(function (v) { return v == null ? null : -v; })]);
    });
  }

  function loadHistory(level, span, energy) {
    getJSON('/api/history?level=' + level, function (j) {
      if (!j || !j.rows) return;
      var from = Date.now() / 1000 - span, c = [[], [], [], [], [], []];
      j.rows.forEach(function (row) {
        if (row[0] < from) return;
        for (var k = 0; k < 6; k++) c[k].push(row[k]);
      });
      if (energy) {
        draw([c[0], c[4].map(function (v) { return v / 1000; }), c[5].map(function (v) { return -v / 1000; })],
          [['Import kWh', '#c0392b', 'rgba(192,57,43,.5)', 1], ['Export kWh', '#27ae60', 'rgba(39,174,96,.5)', 1]]);
      } else {
        draw([c[0], c[2], c[1], c[3]], [['Net avg W', '#2c3e50'], ['min W', '#95a5a6'], ['max W', '#e67e22']]);
      }
    });
  }

  function loadChart() {
    if (range === 'hour') loadHour();
    else if (range === 'day') loadHistory('minute', 86400);
    else if (range === 'month') loadHistory('hour', 31 * 86400);
    else loadHistory('day', 366 * 86400, true);
  }

  if (page === '/') {
    var tick = function () { getJSON('/api/now', showNow); };
    tick();
    setInterval(tick, 1000);
    setInterval(moreHour, 5000);
    $('tabs').addEventListener('click', function (ev) {
      var r = ev.target.getAttribute('data-r');
      if (!r) return;
      range = r;
      Array.prototype.forEach.call($('tabs').children, function (b) { b.className = b === ev.target ? 'on' : ''; });
      loadChart();
    });
    var ready = function () { if (window.uPlot) loadChart(); else setTimeout(ready, 100); };
    ready();
    var rt;
    window.addEventListener('resize', function () {
      clearTimeout(rt);
      rt = setTimeout(function () { if (plot) plot.setSize({width: $('chart').clientWidth, height: Math.min(320, Math.round($('chart').clientWidth * 0.6))}); }, 200);
    });
  }

  // ---- tinkering -------------------------------------------------------------------------
  function split(label, d, keys) {
    if (!d) return '<div class="hx"><b>' + label + '</b> none</div>';
    var h = '<div class="hx"><b>' + label + '</b> <small>' + d.bytes + ' bytes</small>';
    keys.forEach(function (k) {
      if (d[k] != null && d[k] !== '') h += ' <span class="' + k + '" title="' + k + '">' + k.toUpperCase() + ' ' + esc(d[k]) + '</span>';
    });
    return h + '</div>';
  }
  var RQ = ['len', 'msg', 'seq', 'digest'], RS = ['len', 'status', 'count', 'data', 'rest', 'trailer'];

  function fields(f) {
    var h = '<table class="kv">';
    for (var k in f) h += '<tr><th>' + esc(k) + '</th><td>' + esc(typeof f[k] === 'object' ? JSON.stringify(f[k]) : f[k]) + '</td></tr>';
    return h + '</table>';
  }
  function decodedHtml(j) {
    var h = '';
    if (j.decode_error) h += '<p class="err">decode: ' + esc(j.decode_error) + '</p>';
    if (j.fields) h += fields(j.fields);
    if (j.dump) h += '<pre>' + esc(j.dump) + '</pre>';
    return h;
  }

  var logN = 0;
  function pollLog() {
    getJSON('/api/log?since=' + logN, function (j) {
      if (!j || !j.items) return;
      var box = $('log');
      j.items.forEach(function (e) {
        logN = Math.max(logN, e.n);
        var d = document.createElement('details');
        d.innerHTML = '<summary>#' + e.n + ' ' + (e.t ? new Date(e.t * 1000).toLocaleTimeString() : '') +
          ' <b>' + esc(e.kind) + '</b> ' + esc(e.desc) + ' SEQ ' + esc(e.seq) + ' - <span class="' +
          (e.status === 0 ? 'ok' : 'err') + '">' + esc(e.text) + '</span> ' + e.ms + ' ms</summary>' +
          split('request', e.req, RQ) + split('response', e.resp, RS) + decodedHtml(e);
        box.insertBefore(d, box.firstChild);
      });
      while (box.children.length > 60) box.removeChild(box.lastChild);
    });
    getJSON('/api/link', function (s) {
      if (!s) return;
      var a = s.alert || {}, q = (s.queue || []).map(function (x) { return x.prio + ': ' + x.desc; });
      $('linkst').innerHTML = fields({link: s.link, state: s.state, last_error: s.last_error || '-',
        SEQ: s.seq, PSEQ: s.pseq, current: s.current || '-', queue: q.length ? q.join('; ') : 'empty',
        'queue rejected': s.queue_rejected, 'alert chain': a.state + (a.outcome ? ' (last: ' + a.outcome + ')' : '') +
          ', received ' + a.received + ', handled ' + a.handled + ', failed ' + a.failed +
          (a.last_ms != null ? ', last ' + a.last_ms + ' ms' : ''), counters: s.counters});
    });
  }

  if (page === '/tinker') {
    var send = function () {
      $('result').innerHTML = '<p>sending...</p>';
      post('/api/mep', JSON.stringify({hex: $('hex').value, confirm: $('confirm').checked}), 'application/json',
        function (st, j) {
          if (st !== 200) { $('result').innerHTML = '<p class="err">' + esc(j.error) + '</p>'; return; }
          $('result').innerHTML = '<h2>' + esc(j.desc) + '</h2><p class="' + (j.ok ? 'ok">ok' : 'err">' + esc(j.error)) +
            '</p>' + split('request', j.req, RQ) + split('response', j.resp, RS) + decodedHtml(j);
          pollLog();
        });
    };
    $('mep').addEventListener('submit', function (ev) { ev.preventDefault(); send(); });
    document.querySelector('.presets').addEventListener('click', function (ev) {
      var h = ev.target.getAttribute('data-hex');
      if (h) { $('hex').value = h; send(); }
    });
    pollLog();
    setInterval(pollLog, 2000);
  }

  // ---- settings restore ---------------------------------------------------------------
  if (page === '/config' || page === '/settings') {
    $('restore').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = $('rfile').files[0];
      if (!f) { set('rmsg', 'choose a backup file first'); return; }
      f.text().then(function (t) {
        var pw = $('rpw').value;
        post('/config/restore', t, 'application/json', function (st, j) {
          $('rmsg').className = st === 200 ? 'ok' : 'err';
          set('rmsg', st === 200 ? j.note : j.error + (j.fields ? ': ' + Object.keys(j.fields).map(function (k) { return j.fields[k]; }).join('; ') : '') +
            (j.password_needed ? ' (it changes: ' + j.password_needed.join(', ') + ')' : ''));
        }, pw ? {'X-Confirm-Password': pw} : null);
      });
    });
  }

  // ---- OTA upload -------------------------------------------------------------------------
  if (page === '/ota') {
    $('ota').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = $('ofile').files[0], bar = $('oprog'), msg = $('omsg');
      if (!f) { msg.textContent = 'choose a bundle file first'; return; }
      var x = new XMLHttpRequest();
      x.open('POST', '/api/ota');
      x.setRequestHeader('Content-Type', 'application/octet-stream');
      x.setRequestHeader('X-CSRF-Token', csrf);
      if ($('opw').value) x.setRequestHeader('X-Confirm-Password', $('opw').value);
      bar.hidden = false; bar.value = 0; msg.className = ''; msg.textContent = 'uploading...';
      x.upload.onprogress = function (e) { if (e.lengthComputable) bar.value = 100 * e.loaded / e.total; };
      x.onload = function () {
        if (relogin(x.status)) return;
        var j = {};
        try { j = JSON.parse(x.responseText); } catch (e) { j = {error: 'HTTP ' + x.status}; }
        if (x.status === 200) {
          bar.value = 100; msg.className = 'ok';
          msg.textContent = 'Version ' + j.version + ' (' + j.files + ' files) verified: it will be applied at reboot.';
          $('reboot').hidden = false;
        } else { msg.className = 'err'; msg.textContent = j.error || ('HTTP ' + x.status); }
      };
      x.onerror = function () { msg.className = 'err'; msg.textContent = 'upload failed (connection lost)'; };
      x.send(f);
    });
  }
})();
