// MEP module web UI: the log-in page (login.html) and the first-run page that sets the web
// password (setup.html). The CSRF token comes from /api/session; the password is posted as
// JSON and the answer says where to go next (a local path the module chose, never this
// page's ?next= as it stands). No app.js here: a 401 is an answer, not an ended session.
(function () {
  'use strict';
  var page = document.body.getAttribute('data-page'), csrf = '';
  var form = document.querySelector('form.box'), e = form.elements, msg = document.getElementById('msg');
  var next = new URLSearchParams(location.search).get('next') || '/';

  function show(text) {
    msg.textContent = text || '';
    msg.hidden = !text;
  }
  function session(cb) {
    fetch('/api/session', {cache: 'no-store', credentials: 'same-origin'})
      .then(function (r) { return r.json(); })
      .then(function (s) {
        csrf = s.csrf;
        if (page === '/login' && !s.has_password) location.replace('/setup');
        else if (page === '/setup' && s.has_password) location.replace('/login' + location.search);
        else if (cb) cb();
      })
      .catch(function () { show('The module does not answer: reload the page.'); });
  }
  function send(retried) {
    var body = page === '/login' ? {password: e.password.value, next: next} :
      {password: e.password.value, password2: e.password2.value};
    var btn = form.querySelector('button');
    btn.disabled = true;
    fetch(page, {method: 'POST', credentials: 'same-origin', body: JSON.stringify(body),
      headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}})
      .then(function (r) {
        return r.json().then(function (j) { return [r.status, j]; },
          function () { return [r.status, {}]; });
      })
      .then(function (a) {
        var st = a[0], j = a[1];
        btn.disabled = false;
        if (st === 200 && j.ok) { location.replace(j.next || '/'); return; }
        if (st === 403 && !retried) { session(function () { send(true); }); return; }
        if (st === 409 && j.next) { location.replace(j.next); return; }
        show(j.error || 'Not accepted (HTTP ' + st + ').');
        var f = j.field && e[j.field];
        if (f) { f.focus(); f.select(); }
      })
      .catch(function () {
        btn.disabled = false;
        show('The module does not answer.');
      });
  }
  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    show('');
    send(false);
  });
  session();
})();
