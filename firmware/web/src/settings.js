// MEP module web UI: the settings page (settings.html), filled from /api/config. Loaded after
// app.js, whose helpers it uses (window.mep).
(function () {
  'use strict';
  var mep = window.mep, $ = mep.$, esc = mep.esc, set = mep.set, post = mep.post,
    getJSON = mep.getJSON, page = mep.page;
  if (page !== '/settings') return;

  // ---- settings (static page, JSON API): one form per section, saved on its own -------------
  function fieldHtml(f) {
    var k = f.key, id = 'f-' + k, h = '<div class="f" id="w-' + k + '">', lab = '<b>' + esc(f.label) + '</b>';
    if (f.type === 'bool') {
      h += '<label class="chk"><input type="checkbox" name="' + k + '"' + (f.value ? ' checked' : '') + '> ' + lab + '</label>';
    } else if (f.type === 'choice') {
      h += '<label>' + lab + ' <select name="' + k + '">' + f.options.map(function (o) {
        return '<option' + (o === f.value ? ' selected' : '') + '>' + esc(o) + '</option>';
      }).join('') + '</select></label>';
    } else if (f.type === 'alarms') {
      h += '<b>' + esc(f.label) + '</b><div class="alarms" data-max="' + f.max_items + '">' +
        (f.value || []).map(alarmRow).join('') + '</div><button type="button" class="add-alarm">Add an alarm</button>';
    } else if (f.type === 'secret') {
      h += '<label>' + lab + ' <small class="' + (f.set ? 'ok">set' : 'muted">not set') + '</small> <input type="password" name="' +
        k + '" autocomplete="new-password" placeholder="' + (f.set ? 'empty: keep' : '') + '"></label>';
      if (f.clearable) h += '<label class="chk"><input type="checkbox" name="clear_' + k + '"> clear</label>';
    } else if (f.type === 'int') {
      h += '<label>' + lab + ' <input type="number" name="' + k + '" value="' + esc(f.value) + '" min="' + f.min + '" max="' + f.max + '"></label>';
    } else if (f.type === 'pem') {
      // a CA certificate: pasted or read from a file; its subject and expiry shown as typed
      h += '<label>' + lab + ' <textarea name="' + k + '" rows="4" spellcheck="false" data-pem="' + k +
        '" placeholder="-----BEGIN CERTIFICATE-----">' + esc(f.value || '') + '</textarea></label>' +
        '<label class="sm">or from a file <input type="file" accept=".pem,.crt,.cer" data-pemfile="' + k + '"></label>' +
        '<p class="pem" id="pem-' + k + '">' + esc(pemText(f.value || '')) + '</p>';
    } else {
      // the time zone: names to choose from (built into the page from tz.py), or a POSIX rule
      var list = k === 'timezone' ? ' list="tzlist" autocomplete="off"' :
        (k === 'wifi_ssid' ? ' list="ssidlist" autocomplete="off"' : '');
      h += '<label>' + lab + ' <input name="' + k + '" value="' + esc(f.value) + '"' + list + '></label>';
    }
    h += '<p class="err" id="e-' + k + '" hidden></p>';
    if (k === 'wifi_ssid') h += '<div><button type="button" class="scan sm">Scan for networks</button> ' +
      '<small>Scanning pauses meter reading for about 2 s.</small><p class="scanmsg" role="status"></p>' +
      '<datalist id="ssidlist"></datalist><div class="nets"></div></div>';
    if (f.help) h += '<small>' + esc(f.help).replace(/^RISK:/, '<b class="err">RISK:</b>') + '</small> ';
    if (f.restart) h += '<small>Takes effect after a restart.</small>';
    return h + '</div>';
  }

  // ---- CA certificates (PEM): subject and expiry read from the DER in the browser ----------
  function tlv(a, p) {
    var l = a[p + 1], h = 2;
    if (l & 0x80) { var n = l & 0x7f; l = 0; for (var i = 0; i < n; i++) l = l * 256 + a[p + 2 + i]; h = 2 + n; }
    if (p + h + l > a.length) throw new Error('truncated');
    return {t: a[p], s: p + h, e: p + h + l};
  }
  function kids(a, x) {
    var out = [], p = x.s;
    while (p < x.e) { var c = tlv(a, p); out.push(c); p = c.e; }
    return out;
  }
  function str(a, x) { return new TextDecoder().decode(a.slice(x.s, x.e)); }
  function certInfo(b64) {
    var s = atob(b64.replace(/\s+/g, '')), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    var tbs = kids(a, tlv(a, 0))[0], f = kids(a, tbs), j = f[0].t === 0xa0 ? 1 : 0;
    var names = [];
    kids(a, f[j + 4]).forEach(function (rdn) {
      kids(a, rdn).forEach(function (atv) {
        var kv = kids(a, atv), oid = Array.prototype.join.call(a.slice(kv[0].s, kv[0].e), '.');
        var tag = {'85.4.3': 'CN', '85.4.10': 'O', '85.4.11': 'OU', '85.4.6': 'C'}[oid];
        if (tag) names.push(tag + '=' + str(a, kv[1]));
      });
    });
    var t = kids(a, f[j + 3])[1], v = str(a, t);
    if (t.t === 0x17) v = (Number(v.slice(0, 2)) < 50 ? '20' : '19') + v;
    var until = new Date(Date.UTC(+v.slice(0, 4), +v.slice(4, 6) - 1, +v.slice(6, 8), +v.slice(8, 10), +v.slice(10, 12)));
    return {subject: names.join(', ') || '(no name)', until: until};
  }
  function pemText(pem) {
    if (!pem.trim()) return 'None: the built-in CAs are trusted.';
    var parts = pem.split('-----BEGIN CERTIFICATE-----').slice(1);
    if (!parts.length) return 'Not a certificate: PEM text starts with -----BEGIN CERTIFICATE-----.';
    try {
      return parts.map(function (p) {
        var c = certInfo(p.split('-----END CERTIFICATE-----')[0]);
        return c.subject + ', valid until ' + c.until.toISOString().slice(0, 10) +
          (c.until < new Date() ? ' (EXPIRED)' : '');
      }).join('; ');
    } catch (e) { return 'Not a readable certificate.'; }
  }
  function showPem(k) {
    var t = document.querySelector('textarea[data-pem="' + k + '"]'), p = $('pem-' + k);
    if (t && p) { p.textContent = pemText(t.value); p.className = 'pem' + (/EXPIRED|Not a/.test(p.textContent) ? ' err' : ''); }
  }
  document.addEventListener('input', function (ev) {
    var k = ev.target.getAttribute && ev.target.getAttribute('data-pem');
    if (k) showPem(k);
  });
  document.addEventListener('change', function (ev) {
    var k = ev.target.getAttribute && ev.target.getAttribute('data-pemfile');
    if (!k || !ev.target.files.length) return;
    var r = new FileReader();
    r.onload = function () { document.querySelector('textarea[data-pem="' + k + '"]').value = r.result; showPem(k); };
    r.readAsText(ev.target.files[0]);
  });

  // alarms: one row each, in words (kinds and units from alarms.py)
  var KINDS = [['power_above', 'Power above', 'W'], ['energy_today_above', 'Energy today above', 'Wh'],
    ['export_above', 'Export above', 'W']];
  function num(name, label, v, unit) {
    return '<label>' + label + ' <input type="number" min="0" step="any" data-a="' + name + '" value="' +
      esc(v == null ? '' : v) + '">' + (unit ? '<small>' + unit + '</small>' : '') + '</label>';
  }
  function alarmRow(a) {
    a = a || {kind: 'power_above', threshold: 5000, seconds: 60, hysteresis: 0, repeat_min: 60, enabled: true};
    var unit = 'W';
    KINDS.forEach(function (k) { if (k[0] === a.kind) unit = k[2]; });
    return '<div class="alarm"><label>Alarm when <select data-a="kind">' + KINDS.map(function (k) {
      return '<option value="' + k[0] + '"' + (k[0] === a.kind ? ' selected' : '') + '>' + k[1] + ' (' + k[2] + ')</option>';
    }).join('') + '</select></label>' + num('threshold', 'Threshold', a.threshold, unit) +
      num('seconds', 'for at least', a.seconds, 's') + num('hysteresis', 'Hysteresis', a.hysteresis, unit) +
      num('repeat_min', 'Repeat after', a.repeat_min, 'min') +
      '<label class="chk"><input type="checkbox" data-a="enabled"' + (a.enabled === false ? '' : ' checked') +
      '> on</label><button type="button" class="del-alarm">Remove</button></div>';
  }
  function alarmValues(box) {
    return Array.prototype.map.call(box.querySelectorAll('.alarm'), function (row) {
      var d = {};
      Array.prototype.forEach.call(row.querySelectorAll('[data-a]'), function (el) {
        var k = el.getAttribute('data-a');
        d[k] = el.type === 'checkbox' ? el.checked : (el.tagName === 'SELECT' ? el.value :
          (el.value === '' ? null : Number(el.value)));
      });
      return d;
    });
  }
  document.addEventListener('click', function (ev) {
    var t = ev.target;
    if (t.classList.contains('add-alarm')) {
      var box = t.previousSibling;
      if (box.children.length >= Number(box.getAttribute('data-max'))) return;
      box.insertAdjacentHTML('beforeend', alarmRow(null));
    } else if (t.classList.contains('del-alarm')) t.parentNode.parentNode.removeChild(t.parentNode);
  });

  function sectionForm(sec) {
    var guarded = sec.fields.some(function (f) { return f.guarded; });
    var h = '<form class="box sect" data-id="' + sec.id + '"><h2>' + esc(sec.title) + '</h2>' +
      sec.fields.map(fieldHtml).join('');
    if (sec.id === 'mqtt') h += '<div class="f"><button type="button" class="mqtest">Test MQTT connection</button> ' +
      '<small>With the values typed above (an empty password: the stored one, for the stored broker and user).</small>' +
      '<p class="mqmsg" role="status"></p></div>';
    if (guarded) h += '<div class="f"><label><b>Current web password</b> <input type="password" name="current_password" ' +
      'autocomplete="current-password"></label><p class="err" id="e-current_password-' + sec.id + '" hidden></p>' +
      '<small>Needed when a key, a public switch or the accepted host names change.</small></div>';
    return h + '<button class="save">Save ' + esc(sec.title) + '</button><p class="smsg"></p></form>';
  }

  // ---- "Test MQTT connection" and the WiFi scan: /api/mqtt/test, /api/wifi/scan -------------
  function testMqtt(form) {
    var m = form.querySelector('.mqmsg'), e = form.elements, body = {};
    ['mqtt_host', 'mqtt_port', 'mqtt_user', 'mqtt_password'].forEach(function (k) { body[k] = e[k].value; });
    body.mqtt_tls = e.mqtt_tls.checked;
    body.mqtt_tls_insecure = e.mqtt_tls_insecure.checked;
    body.mqtt_ca = e.mqtt_ca.value;
    m.className = 'mqmsg muted'; m.textContent = 'testing...';
    post('/api/mqtt/test', JSON.stringify(body), 'application/json', function (st, j) {
      m.className = 'mqmsg ' + (st === 200 && j.ok ? 'ok' : 'err');
      m.textContent = st === 200 ? j.message : (j.error || 'HTTP ' + st);
    });
  }
  function scanWifi(form) {
    var m = form.querySelector('.scanmsg'), nets = form.querySelector('.nets');
    m.className = 'scanmsg muted'; m.textContent = 'scanning...'; nets.innerHTML = '';
    post('/api/wifi/scan', '', 'application/json', function (st, j) {
      if (st !== 200) { m.className = 'scanmsg err'; m.textContent = j.error || 'HTTP ' + st; return; }
      var n = j.networks || [];
      m.className = 'scanmsg'; m.textContent = n.length ? n.length + ' network(s): click one to use it' : 'no networks found';
      $('ssidlist').innerHTML = n.map(function (x) { return '<option value="' + esc(x.ssid) + '">'; }).join('');
      nets.innerHTML = n.map(function (x, i) {
        return '<button type="button" class="net sm" data-i="' + i + '">' + esc(x.ssid) + ' <small>' + x.rssi +
          ' dBm, ' + esc(x.security) + '</small></button>';
      }).join('');
      Array.prototype.forEach.call(nets.querySelectorAll('.net'), function (b) {
        b.addEventListener('click', function () {
          form.elements.wifi_ssid.value = n[Number(b.getAttribute('data-i'))].ssid;
          form.elements.wifi_password.focus();
        });
      });
    });
  }

  function saveSection(form, sec) {
    var values = {}, clear = [], msg = form.querySelector('.smsg');
    sec.fields.forEach(function (f) {
      var el = form.elements[f.key];
      $('e-' + f.key).hidden = true;
      if (f.type === 'bool') values[f.key] = el.checked;
      else if (f.type === 'secret') {
        if (el.value) values[f.key] = el.value;
        var c = form.elements['clear_' + f.key];
        if (c && c.checked) clear.push(f.key);
      } else if (f.type === 'alarms') {
        values[f.key] = alarmValues(form.querySelector('.alarms'));
      } else values[f.key] = el.value;
    });
    var body = {section: sec.id, values: values, clear: clear}, pw = form.elements.current_password;
    if (pw && pw.value) body.current_password = pw.value;
    msg.className = 'smsg'; msg.textContent = 'saving...';
    post('/api/config', JSON.stringify(body), 'application/json', function (st, j) {
      if (st === 200) {
        msg.className = 'smsg ok';
        msg.textContent = 'Saved.' + (j.changed.length ? '' : ' (nothing changed)');
        if (j.restart) $('restart').hidden = false;
        if (pw) pw.value = '';
        loadSettings(sec.id);
        return;
      }
      msg.className = 'smsg err';
      msg.textContent = j.error || ('HTTP ' + st);     // typed values stay in the form
      var fl = j.fields || {};
      for (var k in fl) {
        var e = $('e-' + k) || $('e-' + k + '-' + sec.id);
        if (e) { e.textContent = fl[k]; e.hidden = false; }
      }
    });
  }

  function loadSettings(only) {
    getJSON('/api/config', function (j) {
      if (!j || !j.sections) { set('smsg', 'could not load the settings'); return; }
      mep.setCsrf(j.csrf);
      Array.prototype.forEach.call(document.querySelectorAll('input.csrf'), function (e) { e.value = j.csrf; });
      set('legacy', j.legacy_path);
      set('smsg', '');
      var box = $('sections');
      j.sections.forEach(function (sec) {
        var old = box.querySelector('form[data-id="' + sec.id + '"]');
        if (only && old && sec.id !== only) return;          // other sections keep what is typed
        var div = document.createElement('div');
        div.innerHTML = sectionForm(sec);
        var form = div.firstChild;
        form.addEventListener('submit', function (ev) { ev.preventDefault(); saveSection(form, sec); });
        var tb = form.querySelector('.mqtest'), sb = form.querySelector('.scan');
        if (tb) tb.addEventListener('click', function () { testMqtt(form); });
        if (sb) sb.addEventListener('click', function () { scanWifi(form); });
        if (old) {
          var m = old.querySelector('.smsg');
          form.querySelector('.smsg').className = m.className;
          form.querySelector('.smsg').textContent = m.textContent;
          box.replaceChild(form, old);
        } else box.appendChild(form);
      });
    });
  }

  if (page === '/settings') {
    loadSettings();
    $('pwform').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var f = ev.target, m = $('pwmsg');
      var body = ['old', 'new', 'new2'].map(function (k) {
        return k + '=' + encodeURIComponent(f.elements[k].value);
      }).join('&');
      post('/password', body, 'application/x-www-form-urlencoded', function (st, j) {
        m.className = st === 200 ? 'ok' : 'err';
        m.textContent = st === 200 ? j.note : (j.error || 'HTTP ' + st);
        if (st === 200) f.reset();
      });
    });
    $('restartbtn').addEventListener('click', function () {
      if (!window.confirm('Restart the module now?')) return;
      fetch('/reboot', {method: 'POST', credentials: 'same-origin', headers: {'X-CSRF-Token': mep.csrf()}})
        .then(function () { $('restart').innerHTML = '<p>Restarting: reload this page in about 20 seconds.</p>'; });
    });
  }
})();
