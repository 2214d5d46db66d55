# Settings: a form built from config.schema_view(), password change, backup and restore.
# Secrets are never rendered: a secret field shows "set"/"not set" and an empty field keeps
# the stored value.
import json
from web.html import page, esc, hidden_csrf
from web import auth, server

HIDDEN = ('web_password_hash',)          # changed with its own form
CLEARABLE = ('wifi_password', 'mbk', 'mqtt_password', 'smtp_password', 'session_secret')
MBK_HELP = ('The MBK looks like hex but is 20 ASCII characters (each character is one key '
            'byte, e.g. 3A7F...); the same key written as 40 hex digits is accepted too.')


def _field(ctx, f, posted, err):
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
        ctrl = ('<label>%s <small class="%s">%s</small> <input type="password" name="%s" '
                'value="" autocomplete="new-password" placeholder="%s"></label>'
                % (lab, 'ok' if is_set else 'muted', 'set' if is_set else 'not set', k,
                   'empty: keep' if is_set else ''))
        if k in CLEARABLE:
            ctrl += '<label class="chk"><input type="checkbox" name="clear_%s"> clear</label>' % k
    else:
        ctrl = '<label>%s <input name="%s" value="%s"></label>' % (lab, k, esc(v))
    out = '<div class="f%s">%s' % (' bad' if err else '', ctrl)
    if err:
        out += '<p class="err">%s</p>' % esc(err)
    if hlp:
        out += '<small>%s</small>' % esc(hlp)
    return out + '</div>'


def _body(ctx, request, posted=None, errors=None, note=None):
    errors = errors or {}
    yield '<h1>Settings</h1>'
    if note:
        yield '<p class="ok">%s</p>' % esc(note)
    if errors:
        yield '<p class="err">Nothing was saved: %d setting(s) need fixing.</p>' % len(errors)
        for k in errors:
            if k == '_':
                yield '<p class="err">%s</p>' % esc(errors[k])
    yield '<form method="post" action="/config" class="cfg">' + hidden_csrf(ctx, request)
    for f in ctx.config.schema_view():
        if f['key'] not in HIDDEN:
            yield _field(ctx, f, posted, errors.get(f['key']))
    yield ('<button>Save</button></form><h2>Web password</h2><form method="post" '
           'action="/password" class="box">%s<label>Current <input type="password" name="old" '
           'autocomplete="current-password"></label><label>New <input type="password" '
           'name="new" minlength="8" autocomplete="new-password"></label><label>Repeat '
           '<input type="password" name="new2" minlength="8" autocomplete="new-password">'
           '</label><button>Change password</button></form>' % hidden_csrf(ctx, request))
    yield ('<h2>Backup</h2><p><a href="/config/backup" download>Download settings</a> '
           '(without secrets)</p><form method="post" action="/config/backup" class="box">%s'
           '<label class="chk"><input type="checkbox" name="secrets" required> include the '
           'secrets (WiFi, MBK, keys): keep that file safe</label><button>Download with '
           'secrets</button></form><h2>Restore</h2><form id="restore" class="box"><input '
           'type="file" id="rfile" accept=".json,application/json"><button>Restore</button>'
           '</form><p id="rmsg"></p>' % hidden_csrf(ctx, request))


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


async def config_save(ctx, request):
    form = auth.safe_form(request)
    if form is None:
        return page(ctx, request, 'Settings', '/config', _body(
            ctx, request, errors={'_': 'send the settings form (url-encoded)'}), status=400)
    changes, clear, errors = form_changes(ctx, form)
    if not errors:
        errors = ctx.apply_config(changes) or {}
    if not errors and clear:
        errors = ctx.config.update({}, clear=clear)
        if not errors:
            ctx.config.save()
    if errors:
        return page(ctx, request, 'Settings', '/config',
                    _body(ctx, request, form, errors), status=400)
    ctx.log('web: settings saved (%s)' % ', '.join(sorted(list(changes) + clear))[:200])
    return page(ctx, request, 'Settings', '/config',
                _body(ctx, request, note='Saved.' + (' Cleared: ' + ', '.join(clear)
                                                     if clear else '')))


async def backup(ctx, request):
    return _backup(ctx, False)


async def backup_secrets(ctx, request):
    form = auth.safe_form(request)
    secrets = bool(form and form.get('secrets'))
    if secrets:
        ctx.log('web: settings backup with secrets downloaded')
    return _backup(ctx, secrets)


async def restore(ctx, request):
    try:
        d = json.loads(request.body.decode())
    except ValueError:
        return server.error(request, 400, 'the backup is not valid JSON')
    if not isinstance(d, dict):
        return server.error(request, 400, 'the backup must be a JSON object')
    errors = ctx.config.restore(d)
    if errors:
        return {'error': 'nothing restored', 'fields': errors}, 400
    ctx.config.save()
    ctx.log('web: settings restored from a backup')
    return {'ok': True, 'note': 'restored; reboot to apply every setting'}
