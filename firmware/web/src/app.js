// MEP module web UI: shared helpers, tinkering, settings restore, OTA upload. No framework.
// The dashboard, status and settings pages have their own scripts (dashboard.js, ...).
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
  // the last update in words, from /api/status's "update" (status and update pages)
  function updateText(u) {
    if (!u) return 'none';
    var when = u.when ? ' (' + new Date(u.when * 1000).toLocaleString() + ')' : '';
    if (u.rolled_back) return 'version ' + (u.version || '?') + ' was rolled back' + when +
      (u.reason ? ': ' + u.reason : '') + (u.previous ? '; back on ' + u.previous : '');
    if (u.result === 'on trial') return 'version ' + u.version + ' installed' + when +
      ', on trial until it has served this page and read the meter for a while';
    return 'updated to ' + u.version + (u.previous ? ' from ' + u.previous : '') + when;
  }
  // for the scripts of single pages (settings.js)
  window.mep = {$: $, esc: esc, set: set, post: post, getJSON: getJSON, page: page,
    updateText: updateText,
    setCsrf: function (t) { csrf = t; }, csrf: function () { return csrf; }};

  // ---- log out (the header's button): the module ends the session, then the login page ------
  var out = $('logout');
  if (out) out.addEventListener('click', function () {
    getJSON('/api/session', function (s) {
      if (s) csrf = s.csrf;
      post('/logout', '{}', 'application/json', function (st, j) {
        if (st === 200) location.href = j.next || '/login';
        else window.alert('Not logged out: ' + (j.error || 'HTTP ' + st));
      });
    });
  });

  document.addEventListener('submit', function (ev) {
    var m = ev.target.getAttribute('data-confirm');
    if (m && !window.confirm(m)) ev.preventDefault();
  });

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
      if (s.csrf) csrf = s.csrf;
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
  if (page === '/settings') {
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
