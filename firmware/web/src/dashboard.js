// MEP module web UI: the dashboard (dashboard.html), filled from /api/now, /api/recent and
// /api/history. Loaded after app.js, whose helpers it uses (window.mep).
// Energy bars are slots of the configured time zone (/api/now 'tz', used with Intl): hours,
// local days (the module cuts its day buckets at local midnight) and months made of days.
(function () {
  'use strict';
  var mep = window.mep, $ = mep.$, set = mep.set, getJSON = mep.getJSON;
  if (mep.page !== '/') return;
  var plot = null, view = 'p1h', back = 0, tz, tzOk = false, now = null, lastT = 0, rec = null,
    ph = null, F = {}, info = {};
  function fmt(v, d) { return v == null ? '-' : Number(v).toFixed(d); }
  function secs() { return now || Math.floor(Date.now() / 1000); }

  // ---- dates in the module's time zone, in the browser's locale ------------------------------
  function setZone(name) {
    if (!name || name === tz) return;
    tz = name; F = {};
    try { new Intl.DateTimeFormat(undefined, {timeZone: tz}); tzOk = true; } catch (e) { tzOk = false; }
  }
  function dtf(key, o, loc) {
    if (!F[key]) {
      if (tzOk) o.timeZone = tz;
      F[key] = new Intl.DateTimeFormat(loc, o);
    }
    return F[key];
  }
  function show(t, key, o) { return dtf(key, o).format(new Date(t * 1000)); }
  // local calendar parts of unix time t: [year, month 1-12, day, hour]
  function parts(t) {
    var p = {};
    dtf('p', {year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', hourCycle: 'h23',
      numberingSystem: 'latn'}, 'en-US').formatToParts(new Date(t * 1000)).forEach(function (x) { p[x.type] = +x.value; });
    return [p.year, p.month, p.day, p.hour % 24];
  }
  function dayKey(t) { var p = parts(t); return p[0] * 10000 + p[1] * 100 + p[2]; }
  function monthKey(t) { var p = parts(t); return p[0] * 12 + p[1] - 1; }

  // ---- live values -----------------------------------------------------------------------
  function showNow(j) {
    if (!j) { set('link', 'no connection to the module'); return; }
    var r = j.r || {};
    setZone(j.tz);
    if (j.login === false && !document.getElementById('loginlink')) {   // public dashboard
      Array.prototype.forEach.call(document.querySelectorAll('header nav a'), function (a) {
        if (a.getAttribute('href') !== '/') a.hidden = true;
      });
      $('logout').hidden = true;
      var a = document.createElement('a');
      a.id = 'loginlink'; a.href = '/login?next=/'; a.textContent = 'Log in';
      document.querySelector('header nav').appendChild(a);
    }
    if (r.time) now = r.time;
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
    set('meter', [i.manufacturer, i.model, i.serial, i.fw && 'fw ' + i.fw].filter(Boolean).join(' ') || '-');
    if (r.time) set('age', 'reading ' + Math.max(0, Math.round(Date.now() / 1000 - r.time)) + ' s ago');
    if (ph && r.time && r.time !== ph[0][ph[0].length - 1]) {      // per phase: collected while open
      ph[0].push(r.time);
      for (k = 1; k <= 3; k++) ph[k].push(r['p_in_l' + k] == null ? null : r['p_in_l' + k] - (r['p_out_l' + k] || 0));
      ph[4].push(r.p_in == null ? null : r.p_in - (r.p_out || 0));
      while (ph[0][0] < r.time - 3600) ph.forEach(function (a) { a.shift(); });
      if (view === 'p1h' && plot && plot.phases) plot.setData(ph);
    }
  }

  // ---- charts ----------------------------------------------------------------------------
  function size() {
    var w = $('chart').clientWidth || 300;
    return {width: w, height: Math.max(200, Math.min(340, Math.round(w * 0.55)))};
  }
  function unitAxis(unit) {
    return {label: unit, labelSize: 18, size: 56, values: function (u, v) {
      return v.map(function (x) { return x == null ? '' : (+x.toFixed(3)).toLocaleString(); });
    }};
  }
  function timeAxis() {
    return {space: 90, values: function (u, v, ax, space, incr) {
      return v.map(function (t) {
        if (t == null) return '';
        var p = parts(t);
        if (incr < 60) return show(t, 'hms', {hour: '2-digit', minute: '2-digit', second: '2-digit'});
        return p[3] === 0 && t % 60 === 0 ? show(t, 'dm', {day: 'numeric', month: 'short'}) :
          show(t, 'hm', {hour: '2-digit', minute: '2-digit'});
      });
    }};
  }
  function make(opts, data) {
    if (plot) { plot.destroy(); plot = null; }
    var s = size();
    opts.width = s.width; opts.height = s.height;
    opts.legend = {live: true};
    opts.tzDate = function (t) { return new Date(t * 1000); };
    plot = new uPlot(opts, data, $('chart'));
    return plot;
  }
  function powerChart(data, series) {
    var s = [{value: function (u, t) { return t == null ? '-' : show(t, 'full', {dateStyle: 'medium', timeStyle: 'medium'}); }}];
    series.forEach(function (x) { s.push({label: x[0], stroke: x[1], width: 1.5, fill: x[2], value: function (u, v) { return v == null ? '-' : Math.round(v) + ' W'; }}); });
    return make({series: s, axes: [timeAxis(), unitAxis('W')], scales: {x: {time: true}}}, data);
  }

  // Last hour: the module keeps only the last minutes at poll resolution in RAM (/api/recent);
  // the rest of the hour comes from the minute history (net average split into import and
  // export). While the page is open, new readings are appended at poll resolution.
  function loadHour() {
    if ($('phases').checked) {
      if (!ph) ph = [[], [], [], [], []];
      note('Per phase: net power (import minus export) of each phase, collected while this page is open.');
      var p = powerChart(ph, [['L1', '#8e44ad'], ['L2', '#2980b9'], ['L3', '#d35400'], ['Total', '#2c3e50']]);
      p.phases = true;
      return;
    }
    note('Import up, export down, in W.');
    var since = secs() - 3600;
    getJSON('/api/history?level=minute&since=' + since, function (h) {
      getJSON('/api/recent', function (j) {
        if (!j || !j.time || view !== 'p1h') return;
        var first = j.time.length ? j.time[0] : Infinity, t = [], pi = [], po = [];
        ((h && h.rows) || []).forEach(function (row) {
          if (row[0] + 60 > first || row[2] == null) return;
          t.push(row[0] + 30); pi.push(Math.max(row[2], 0)); po.push(Math.max(-row[2], 0));
        });
        rec = {time: t.concat(j.time), p_in: pi.concat(j.p_in), p_out: po.concat(j.p_out)};
        lastT = j.time.length ? j.time[j.time.length - 1] : 0;
        powerChart(hourData(), [['Import', '#c0392b', 'rgba(192,57,43,.08)'], ['Export', '#27ae60', 'rgba(39,174,96,.08)']]);
      });
    });
  }
  function hourData() {
    return [rec.time, rec.p_in, rec.p_out.map(function (v) { return v == null ? null : -v; })];
  }
  function moreHour() {
    if (view !== 'p1h' || !rec || !plot || plot.phases) return;
    getJSON('/api/recent?since=' + lastT, function (j) {
      if (!j || !j.time || !j.time.length || !rec) return;
      rec.time = rec.time.concat(j.time);
      rec.p_in = rec.p_in.concat(j.p_in);
      rec.p_out = rec.p_out.concat(j.p_out);
      var cut = 0, old = j.time[j.time.length - 1] - 3600;
      while (cut < rec.time.length && rec.time[cut] < old) cut++;
      if (cut > 0) { rec.time = rec.time.slice(cut); rec.p_in = rec.p_in.slice(cut); rec.p_out = rec.p_out.slice(cut); }
      lastT = rec.time[rec.time.length - 1];
      if (view === 'p1h' && plot && !plot.phases) plot.setData(hourData());
    });
  }
  function loadDay() {
    note('Net power per minute (average, lowest and highest), in W.');
    getJSON('/api/history?level=minute&since=' + (secs() - 86400), function (j) {
      if (!j || !j.rows || view !== 'p24h') return;
      var c = [[], [], [], []];
      j.rows.forEach(function (r) { c[0].push(r[0]); c[1].push(r[2]); c[2].push(r[1]); c[3].push(r[3]); });
      powerChart(c, [['Net average', '#2c3e50'], ['Lowest', '#95a5a6'], ['Highest', '#e67e22']]);
    });
  }

  // Energy: one bar per slot (an hour, a local day, a month) of the window, import up and
  // export down in kWh; the slot holding now is unfinished and drawn lighter.
  var E = {
    h48: {level: 'hour', n: 48, name: 'hour', what: 'per hour, last 48 hours'},
    d31: {level: 'day', n: 31, name: 'day', what: 'per day, last 31 days'},
    m12: {level: 'day', n: 12, name: 'month', what: 'per month, last 12 months'}
  };
  function slots(v, end) {
    // [{t: start (unix s) or null, key, label, long}] oldest first, the one holding `end` last
    var out = [], i, t, p;
    if (v === 'h48') {
      var h0 = end - end % 3600;
      for (i = E.h48.n - 1; i >= 0; i--) {
        t = h0 - i * 3600; p = parts(t);
        out.push({t: t, key: t, label: p[3] === 0 ? show(t, 'dm', {day: 'numeric', month: 'short'}) : show(t, 'h', {hour: '2-digit', minute: '2-digit'}),
          long: show(t, 'dh', {weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit'}), mid: p[3] === 0});
      }
    } else if (v === 'd31') {
      p = parts(end);
      var noon = end + (12 - p[3]) * 3600;          // noon of the local day: +-1 h of DST stays in it
      for (i = E.d31.n - 1; i >= 0; i--) {
        t = noon - i * 86400;
        out.push({t: null, key: dayKey(t), label: show(t, 'dm', {day: 'numeric', month: 'short'}),
          long: show(t, 'wdm', {weekday: 'short', day: 'numeric', month: 'short', year: 'numeric'})});
      }
    } else {
      var m = monthKey(end);
      for (i = E.m12.n - 1; i >= 0; i--) {
        var k = m - i, d = new Date(Date.UTC(Math.floor(k / 12), k % 12, 15));
        out.push({t: null, key: k, label: d.toLocaleDateString(undefined, {month: 'short', timeZone: 'UTC'}) +
          (k % 12 === 0 || i === E.m12.n - 1 ? ' ' + String(Math.floor(k / 12)).slice(2) : ''),
          long: d.toLocaleDateString(undefined, {month: 'long', year: 'numeric', timeZone: 'UTC'})});
      }
    }
    return out;
  }
  function loadEnergy() {
    var e = E[view], v = view, span = {h48: 3600, d31: 86400, m12: 31 * 86400}[v];
    var end = secs() - back * e.n * span;
    getJSON('/api/history?level=' + e.level, function (j) {
      if (!j || !j.rows || view !== v) return;
      var s = slots(v, end), at = {}, n = s.length, imp = [], exp = [], curI = [], curE = [], x = [], k;
      for (k = 0; k < n; k++) at[s[k].key] = k;
      var cur = back ? -1 : n - 1;
      var first = n, by = v === 'h48' ? function (t) { return t; } : v === 'd31' ? dayKey : monthKey;
      for (k = 0; k < n; k++) { x.push(k); imp.push(null); exp.push(null); }
      j.rows.forEach(function (r) {
        var i = at[by(r[0])];
        if (i == null) return;
        if (s[i].t == null || r[0] < s[i].t) s[i].t = r[0];
        imp[i] = (imp[i] || 0) + r[4] / 1000;
        exp[i] = (exp[i] || 0) - r[5] / 1000;
        if (i < first) first = i;
      });
      for (k = 0; k < n; k++) {
        curI.push(k === cur ? imp[k] : null); curE.push(k === cur ? exp[k] : null);
        if (k === cur) { imp[k] = null; exp[k] = null; }
      }
      // little history: start at its first slot (at least 8 slots)
      var from = Math.max(0, Math.min(first, n - 8));
      if (first === n) from = 0;
      var cut = function (a) { return a.slice(from); };
      s = s.slice(from); x = x.slice(0, n - from);
      window.mepEnergy = {view: v, back: back, slots: s, imp: cut(imp), exp: cut(exp), curImp: cut(curI), curExp: cut(curE), unfinished: cur < 0 ? -1 : cur - from};
      barChart(s, [x, cut(imp), cut(exp), cut(curI), cut(curE)], e);
      note((cur < 0 ? '' : 'The last bar (lighter, dashed) is this ' + e.name + ' so far. ') +
        'Import up, export down. Days begin at local midnight (' + (tz || 'module time zone') + ').');
    });
  }
  function barChart(s, data, e) {
    var bars = uPlot.paths.bars({size: [0.75, 60]});
    function kwh(u, v) { return v == null ? '-' : Math.abs(v).toFixed(3) + ' kWh'; }
    var w = size().width, step = Math.max(1, Math.ceil(s.length * 58 / Math.max(w - 70, 100)));
    if (s.length === 48) step = [1, 2, 3, 4, 6, 12].filter(function (q) { return q >= step; })[0] || 12;
    make({
      series: [{label: e.name[0].toUpperCase() + e.name.slice(1), value: function (u, i) { return i == null || !s[i] ? '-' : s[i].long; }},
        {label: 'Import', fill: 'rgba(192,57,43,.75)', stroke: '#c0392b', paths: bars, points: {show: false}, value: kwh},
        {label: 'Export', fill: 'rgba(39,174,96,.75)', stroke: '#27ae60', paths: bars, points: {show: false}, value: kwh},
        {label: 'Import so far', fill: 'rgba(192,57,43,.25)', stroke: '#c0392b', dash: [4, 3], paths: bars, points: {show: false}, value: kwh},
        {label: 'Export so far', fill: 'rgba(39,174,96,.25)', stroke: '#27ae60', dash: [4, 3], paths: bars, points: {show: false}, value: kwh}],
      scales: {x: {time: false, range: function () { return [-0.6, s.length - 0.4]; }},
        y: {range: function (u, lo, hi) { lo = Math.min(lo || 0, 0); hi = Math.max(hi || 0, 0); if (hi - lo < 0.01) hi = lo + 1; var pad = (hi - lo) * 0.08; return [lo < 0 ? lo - pad : 0, hi + pad]; }}},
      axes: [{splits: function () {
        var out = [];
        for (var i = 0; i < s.length; i++) {
          var ok = s.length === 48 ? (parts(s[i].t)[3] % step === 0) : ((s.length - 1 - i) % step === 0);
          if (ok) out.push(i);
        }
        return out;
      }, values: function (u, v) { return v.map(function (i) { return s[i] ? s[i].label : ''; }); }, grid: {show: false}},
      unitAxis('kWh')]
    }, data);
  }
  function note(t) { set('cnote', t); }

  function loadChart() {
    var e = E[view];
    $('phw').hidden = view !== 'p1h';
    $('pager').hidden = !e;
    $('newer').disabled = back === 0;
    set('ctitle', e ? 'Energy ' + e.what + (back ? ' (earlier)' : '') : view === 'p1h' ? 'Power, last hour' : 'Power, last 24 hours');
    if (view === 'p1h') loadHour();
    else if (view === 'p24h') loadDay();
    else loadEnergy();
  }

  var tick = function () { getJSON('/api/now', showNow); };
  getJSON('/api/now', function (j) {
    showNow(j);
    var ready = function () { if (window.uPlot) loadChart(); else setTimeout(ready, 100); };
    ready();
  });
  setInterval(tick, 1000);
  setInterval(moreHour, 5000);
  setInterval(function () { if (E[view] && !back) loadChart(); }, 60000);
  $('tabs').addEventListener('click', function (ev) {
    var r = ev.target.getAttribute('data-r');
    if (!r) return;
    view = r; back = 0;
    Array.prototype.forEach.call($('tabs').children, function (b) { b.className = b === ev.target ? 'on' : ''; });
    loadChart();
  });
  $('phases').addEventListener('change', function () { if (!$('phases').checked) ph = null; loadChart(); });
  $('older').addEventListener('click', function () { back++; loadChart(); });
  $('newer').addEventListener('click', function () { if (back) back--; loadChart(); });
  var rt;
  window.addEventListener('resize', function () {
    clearTimeout(rt);
    rt = setTimeout(function () { if (E[view]) loadChart(); else if (plot) plot.setSize(size()); }, 200);
  });
})();
