// MEP module web UI: the update page (ota.html): version and last update from /api/status (with
// the CSRF token the upload in app.js needs). Loaded after app.js (window.mep).
(function () {
  'use strict';
  var mep = window.mep, $ = mep.$, set = mep.set;
  if (mep.page !== '/ota') return;
  $('rebootbtn').addEventListener('click', function () {
    mep.post('/reboot', '{}', 'application/json', function (st, j) {
      $('omsg').className = st === 200 ? 'ok' : 'err';
      set('omsg', st === 200 ? j.note : (j.error || 'Not restarted (HTTP ' + st + ').'));
    });
  });
  mep.getJSON('/api/status', function (d, st) {
    if (!d || st !== 200) { set('omsg', 'The module does not answer.'); return; }
    mep.setCsrf(d.csrf);
    Array.prototype.forEach.call(document.querySelectorAll('input.csrf'), function (e) { e.value = d.csrf; });
    set('version', d.version);
    set('chip', d.chip);
    var im = d.image;
    if (im && !im.error) {
      $('image').hidden = false;
      set('image', 'Running image: slot ' + im.slot + ', version ' + (im.version || '?') +
        (im.trial ? ' (on trial: kept once it has proven itself)' : '') +
        (im.staged ? '. The next restart starts version ' + (im.staged.version || '?') + ' from slot ' + im.staged.slot : '') + '.');
    }
    if (d.update) {
      $('last').hidden = false;
      set('last', 'Last update: ' + mep.updateText(d.update));
    }
  });
})();
