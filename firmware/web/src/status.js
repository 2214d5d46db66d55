// MEP module web UI: the status page (status.html) in words, filled from /api/status every 5 s.
// Loaded after app.js, whose helpers it uses (window.mep).
(function () {
  'use strict';
  var mep = window.mep, $ = mep.$, esc = mep.esc, set = mep.set, getJSON = mep.getJSON;
  if (mep.page !== '/status') return;

  function dur(s) {
    if (s == null) return '-';
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + ' d ' : '') + (d || h ? h + ' h ' : '') + m + ' min' + (d ? '' : ' ' + (s % 60) + ' s');
  }
  function kb(b) { return b == null ? '-' : (b / 1024).toFixed(1) + ' KB'; }
  function ms(v) { return v == null ? '-' : v + ' ms'; }
  function rssi(v) {
    if (v == null) return '-';
    return v + ' dBm (' + (v >= -60 ? 'good' : v >= -70 ? 'fair' : v >= -80 ? 'weak' : 'very weak') + ')';
  }
  function card(title, rows) {
    var h = '<section class="card"><h2>' + esc(title) + '</h2><table class="kv">';
    rows.forEach(function (r) { if (r) h += '<tr><th>' + esc(r[0]) + '</th><td>' + esc(r[1] == null || r[1] === '' ? '-' : r[1]) + '</td></tr>'; });
    return h + '</table></section>';
  }
  var CODES = {'00': 'OK', '01': 'error', '02': 'service not supported', '03': 'insufficient security',
    '04': 'operation not possible', '05': 'inappropriate action', '06': 'device busy', '07': 'data not ready',
    '08': 'data locked', '09': 'renegotiate', '0a': 'invalid service sequence'};

  // the image slots of a board with OTA partitions (d.image: null on other boards)
  function imageRows(im) {
    if (!im) return [];
    if (im.error) return [['Image slots', 'unknown: ' + im.error]];
    return [['Running image', 'slot ' + im.slot + ' (' + kb(im.slot_kb * 1024) + '), version ' + (im.version || '?') +
        (im.trial ? ', on trial: kept once it has proven itself' : '')],
      im.staged ? ['Next restart', 'starts version ' + (im.staged.version || '?') + ' from slot ' + im.staged.slot] : null];
  }

  function render(d) {
    var s = d.sys || {}, l = d.link || {}, g = l.diag || {}, t = g.turnaround || {}, c = l.counters || {},
      w = s.wifi, q = d.poller || {}, i = d.info || {}, m = d.mqtt;
    var codes = Object.keys(g.status_codes || {}).map(function (k) {
      return (CODES[k] ? CODES[k] + ' (' + k + ')' : k) + ': ' + g.status_codes[k];
    }).join(', ');
    var warn = d.warnings || [];
    $('warnings').hidden = !warn.length;
    $('warnings').innerHTML = warn.map(function (x) { return '<li>' + esc(x) + '</li>'; }).join('');
    var h = card('Meter link', [
      ['Link', l.link + (l.last_error ? ': ' + l.last_error : '')],
      ['Readings', q.readings + (q.errors ? ' (' + q.errors + ' failed' + (q.last_error ? ', last: ' + q.last_error : '') + ')' : '')],
      ['Reading cycle', ms(q.cycle_ms)],
      ['Meter', [i.manufacturer, i.model, i.serial, i.fw && 'firmware ' + i.fw].filter(Boolean).join(' ')],
      ['Answer time', t.samples ? 'typical ' + ms(t.p50) + ', 95 % within ' + ms(t.p95) + ', slowest ' + ms(t.max) + ' (' + t.samples + ' answers)' : 'not enough answers yet'],
      ['Longest pause in an answer', ms(g.max_gap_ms)],
      ['Resent requests', c.retransmits], ['Requests without answer', c.timeouts],
      ['Late answers', c.late], ['Duplicate answers drained', c.drained],
      ['Answers by status', codes || 'none yet'],
      ['Meter alerts', c.alerts ? c.alerts + ' (handled ' + (c.alerts_handled || 0) + ', failed ' + (c.alerts_failed || 0) + ')' : 'none']]);
    h += card('Network', w ? [
      ['WiFi', w.mode === 'ap' ? 'own access point (not connected to a network)' : 'connected to ' + (w.ssid || '-')],
      ['Signal', rssi(w.rssi)], ['IP address', w.ip]] : [['WiFi', d.chip === 'host' ? 'not used (running on a computer)' : 'not started']]);
    h += card('Clock and uptime', [
      ['Time', s.time ? new Date(s.time * 1000).toLocaleString() : '-'],
      ['Time source', s.clock], ['Running for', dur(s.uptime_s)],
      ['Last restart', s.reset_cause], s.last_reboot ? ['Last restart by the watchdog', s.last_reboot] : null]);
    h += card('Memory', [['Free', kb(s.heap_free)], ['In use', kb(s.heap_alloc)],
      s.largest_free != null ? ['Largest free block', kb(s.largest_free)] : null,
      s.collections != null ? ['Garbage collections', s.collections] : null]);
    h += card('Firmware', [['Version', d.version], ['Board', s.board], ['Chip', s.chip || d.chip],
      ['Last update', mep.updateText(d.update)]].concat(imageRows(d.image)));
    h += card('MQTT', m ? (m.enabled ? [
      ['Broker', m.connected ? 'connected' : 'not connected' + (m.last_error ? ': ' + m.last_error : '')],
      ['TLS', !m.tls ? 'off' : m.tls === 'verified' ? 'on, the broker\'s certificate verified' :
        'on, the certificate NOT verified (any broker is accepted)'],
      ['Messages sent', m.published], ['Reconnects', m.reconnects], ['Waiting to be sent', m.queued], ['Dropped', m.drops]] :
      [['MQTT', 'switched off']]) : [['MQTT', 'not available']]);
    $('status').innerHTML = h;
    set('smsg', 'Updated ' + new Date().toLocaleTimeString() + '.');
  }
  function load() {
    getJSON('/api/status', function (d, st) {
      if (!d || st !== 200) { set('smsg', 'The module does not answer' + (d && d.error ? ': ' + d.error : '') + '.'); return; }
      if (d.csrf) mep.setCsrf(d.csrf);
      render(d);
    });
  }
  load();
  setInterval(load, 5000);
  $('restart').addEventListener('click', function () {
    if (!window.confirm('Restart the module now?')) return;
    fetch('/reboot', {method: 'POST', credentials: 'same-origin', headers: {'X-CSRF-Token': mep.csrf()}})
      .then(function (r) { set('rmsg', r.ok ? 'The module restarts; this page comes back by itself.' : 'Not restarted (HTTP ' + r.status + ').'); })
      .catch(function () { set('rmsg', 'The module does not answer.'); });
  });
})();
