# Settings: a form built from config.schema_view(), password change, backup and restore.
# Secrets are never rendered: a secret field shows "set"/"not set" and an empty field keeps
# the stored value. A save that fails keeps the secrets typed into it (in RAM, for this
# session only, never shown again) and stores them with the next save that succeeds.
# Changing a GUARDED setting (web/guard.py), restoring a backup that changes one and
# downloading a backup with the secrets need the current web password.
import json
from web.html import page, esc, hidden_csrf
from web import auth, server
from web.guard import CLEARABLE, GUARDED, guarded_changes, password_ok

HIDDEN = ('web_password_hash',)          # changed with its own form
PW_FIELD = 'current_password'
MBK_HELP = ('The MBK looks like hex but is 20 ASCII characters (each character is one key '
            'byte, e.g. 3A7F...); the same key written as 40 hex digits is accepted too.')


def _field(ctx, f, posted, err, kept):
    k, t = f['key'], f['type']
    lab = '<b>%s</b>' % esc(f['label'])
    hlp = f['help']
    if k == 'mbk':
        hlp = MBK_HELP + ' ' + hlp
    if k == 'session_secret':
        hlp = 'Generated; never shown. Tick "clear" to log everyone out.'
    v = posted.get(k) if posted is not None and k in posted else ctx.config.values.get(k)
    if t == 'bool':
        inp = '<input type="checkbox" name="%s"%s>' % (k, ' checked' if v in (True, 'on') else '')
        ctrl = '<label class="chk">%s %s</label>' % (inp, lab)
    elif t == 'choice':
        opts = ''.join('<option%s>%s</option>' % (' selected' if o == v else '', esc(o))
                       for o in f['options'])
        ctrl = '<label>%s <select name="%s">%s</select></label>' % (lab, k, opts)
    elif t == 'int':
        ctrl = ('<label>%s <input type="number" name="%s" value="%s" min="%d" max="%d">'
                '</label>' % (lab, k, esc(v), f['min'], f['max']))
    elif t == 'alarms':
        if not isinstance(v, str):
            v = json.dumps(v)
        ctrl = '<label>%s <textarea name="%s" rows="3">%s</textarea></label>' % (lab, k, esc(v))
    elif t == 'secret':
        is_set = bool(ctx.config.values.get(k))
        if k in kept:
            st, cls, ph = 'typed value kept: stored with the next successful Save', 'ok', \
                'empty: use the value typed before'
        else:
            st, cls, ph = ('set', 'ok', 'empty: keep') if is_set else ('not set', 'muted', '')
        ctrl = ('<label>%s <small class="%s">%s</small> <input type="password" name="%s" '
                'value="" autocomplete="new-password" placeholder="%s"></label>'
                % (lab, cls, st, k, ph))
        if k in CLEARABLE:
            ctrl += '<label class="chk"><input type="checkbox" name="clear_%s"> clear</label>' % k
    else:
        ctrl = '<label>%s <input name="%s" value="%s"></label>' % (lab, k, esc(v))
    out = '<div class="f%s">%s' % (' bad' if err else '', ctrl)
    if err:
        out += '<p class="err">%s</p>' % esc(err)
    if hlp:
        out += '<small>%s</small>' % esc(hlp)
    if k in GUARDED:
        out += '<small>Changing it needs the current web password (below).</small>'
    return out + '</div>'


def _body(ctx, request, posted=None, errors=None, note=None):
    errors = errors or {}
    yield ('<h1>Settings</h1><p>The same settings by section, each saved on its own: '
           '<a href="/settings">Settings</a>.</p>')
    if note:
        yield '<p class="ok">%s</p>' % esc(note)
    if errors:
        yield '<p class="err">Nothing was saved: %d setting(s) need fixing.</p>' % len(errors)
        for k in errors:
            if k == '_':
                yield '<p class="err">%s</p>' % esc(errors[k])
    yield '<form method="post" action="/config" class="cfg">' + hidden_csrf(ctx, request)
    kept = pending(ctx, request)
    for f in ctx.config.schema_view():
        if f['key'] not in HIDDEN:
            yield _field(ctx, f, posted, errors.get(f['key']), kept)
    tok = ctx.config['legacy_token']
    yield ('<div class="f"><b>Private address of the legacy endpoints</b> (no login needed; '
           'for Home Assistant or Prometheus): <code>/%s/getDashDataWS</code> and <code>/%s/'
           'metrics</code> on this module</div>' % (esc(tok), esc(tok)))
    yield ('<div class="f%s"><label><b>Current web password</b> <input type="password" '
           'name="%s" autocomplete="current-password"></label>%s<small>Needed to change the '
           'settings marked so.</small></div>'
           % (' bad' if PW_FIELD in errors else '', PW_FIELD,
              '<p class="err">%s</p>' % esc(errors[PW_FIELD]) if PW_FIELD in errors else ''))
    yield ('<button>Save</button></form><h2>Web password</h2><form method="post" '
           'action="/password" class="box">%s<label>Current <input type="password" name="old" '
           'autocomplete="current-password"></label><label>New <input type="password" '
           'name="new" minlength="10" autocomplete="new-password"></label><label>Repeat '
           '<input type="password" name="new2" minlength="10" autocomplete="new-password">'
           '</label><button>Change password</button></form>' % hidden_csrf(ctx, request))
    yield ('<h2>Backup</h2><p><a href="/config/backup" download>Download settings</a> '
           '(without secrets)</p><form method="post" action="/config/backup" class="box">%s'
           '<label class="chk"><input type="checkbox" name="secrets" required> include the '
           'secrets (WiFi, MBK, keys): keep that file safe</label><label>Current web password '
           '<input type="password" name="password" autocomplete="current-password" required>'
           '</label><button>Download with secrets</button></form><h2>Restore</h2><form '
           'id="restore" class="box"><input type="file" id="rfile" accept=".json,'
           'application/json"><label>Current web password (needed when the backup changes '
           'keys or access settings) <input type="password" id="rpw" autocomplete='
           '"current-password"></label><button>Restore</button></form><p id="rmsg"></p>'
           % hidden_csrf(ctx, request))


def form_changes(ctx, form):
    """(changes, clear, errors) from the posted settings form."""
    changes, clear, errors = {}, [], {}
    for f in ctx.config.schema_view():
        k, t = f['key'], f['type']
        if k in HIDDEN:
            continue
        if t == 'bool':
            changes[k] = k in form
        elif k in form:
            v = form.get(k)
            if t == 'alarms':
                try:
                    v = json.loads(v) if v.strip() else []
                except ValueError:
                    errors[k] = 'Alarms (alarms): not valid JSON, e.g. [{"kind": "power_above",' \
                                ' "threshold": 5000}]'
                    continue
            changes[k] = v
        if t == 'secret' and form.get('clear_' + k) and k in CLEARABLE:
            clear.append(k)
            changes.pop(k, None)
    return changes, clear, errors


def _backup(ctx, secrets):
    name = '%s-settings%s.json' % (ctx.config['hostname'], '-SECRETS' if secrets else '')
    return json.dumps(ctx.config.export(secrets)), 200, {
        'Content-Type': 'application/json', 'Cache-Control': 'no-store',
        'Content-Disposition': 'attachment; filename="%s"' % name}


async def config_page(ctx, request):
    return page(ctx, request, 'Settings', '/config', _body(ctx, request))


def pending(ctx, request):
    """{secret key: value typed in a failed save} of this session."""
    p = getattr(ctx, 'web_pending', None)
    return p[1] if p and p[0] == auth.session_id(ctx, request) else {}


def _changed(before, after):
    return [k for k in after if before.get(k) != after[k]]


async def config_save(ctx, request):
    form = auth.safe_form(request)
    if form is None:
        return page(ctx, request, 'Settings', '/config', _body(
            ctx, request, errors={'_': 'send the settings form (url-encoded)'}), status=400)
    changes, clear, errors = form_changes(ctx, form)
    kept = pending(ctx, request)
    for k in kept:                       # secrets typed in a save that failed
        if not changes.get(k) and k not in clear:
            changes[k] = kept[k]
    guarded = guarded_changes(ctx, changes, clear)
    if guarded:
        why = await password_ok(ctx, request, form.get(PW_FIELD))
        if why:
            errors[PW_FIELD] = '%s (needed for: %s)' % (why, ', '.join(guarded))
    before = dict(ctx.config.values)
    if not errors:
        errors = ctx.apply_config(changes) or {}
    if not errors and clear:
        errors = ctx.config.update({}, clear=clear)
        if not errors:
            ctx.config.save()
    if errors:
        keep = dict(kept)
        for k in CLEARABLE + ('ota_key', 'ap_password'):
            if changes.get(k) and k not in errors and k not in clear:
                keep[k] = changes[k]
        sid = auth.session_id(ctx, request)
        ctx.web_pending = [sid, keep] if keep and sid else None
        return page(ctx, request, 'Settings', '/config',
                    _body(ctx, request, form, errors), status=400)
    if kept:                             # stored now (another session's stay kept)
        ctx.web_pending = None
    done = _changed(before, ctx.config.values)
    ctx.log('web: settings saved (%s)' % (', '.join(sorted(done)) or 'nothing changed'))
    if guarded:
        ctx.log('web: protected settings changed with the password: %s' % ', '.join(guarded))
    return page(ctx, request, 'Settings', '/config',
                _body(ctx, request, note='Saved.' + (' Cleared: ' + ', '.join(clear)
                                                     if clear else '')))


async def backup(ctx, request):
    return _backup(ctx, False)


async def backup_secrets(ctx, request):
    form = auth.safe_form(request)
    secrets = bool(form and form.get('secrets'))
    if secrets:
        why = await password_ok(ctx, request, form.get('password'))
        if why:
            return server.error(request, 403, why + ' The backup with secrets needs it.')
        ctx.log('web: settings backup with secrets downloaded')
    return _backup(ctx, secrets)


async def restore(ctx, request):
    try:
        d = json.loads(request.body.decode())
    except ValueError:
        return server.error(request, 400, 'the backup is not valid JSON')
    if not isinstance(d, dict):
        return server.error(request, 400, 'the backup must be a JSON object')
    guarded = [k for k in GUARDED if k in d and d[k] != ctx.config.values[k]]
    if guarded:
        why = await password_ok(ctx, request, request.headers.get('X-Confirm-Password'))
        if why:
            return {'error': why, 'password_needed': guarded}, 403
    errors = ctx.config.restore(d)
    if errors:
        return {'error': 'nothing restored', 'fields': errors}, 400
    ctx.config.save()
    ctx.log('web: settings restored from a backup' + (
        ' (protected settings changed with the password: %s)' % ', '.join(guarded)
        if guarded else ''))
    return {'ok': True, 'note': 'restored; reboot to apply every setting'}
