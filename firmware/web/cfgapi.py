# The settings as a JSON API, in sections that are saved on their own (the static settings page
# /settings, built from firmware/web/src, uses it). Routes: web/server.py.
#
# GET  /api/config  {'csrf': token, 'legacy_path': '/<key>', 'sections': [{'id', 'title',
#      'fields': [{key, type, label, help, value | set, options, min, max, guarded, restart}]}]}
#      Secrets are never sent: a secret field has 'set' (true/false) instead of 'value'.
# POST /api/config  {'section': id, 'values': {key: value}, 'clear': [secret key, ...],
#      'current_password': '...' (needed when a guarded setting changes)}
#      -> 200 {'ok': true, 'changed': [key, ...], 'restart': bool}
#      -> 400 {'error': text, 'fields': {key: message in words}}: nothing of it is saved
#      -> 403 {'error': text, 'fields': {'current_password': ...}}: password needed or wrong
# Only the keys of the named section are taken; an empty secret keeps the stored value.
import json
from microdot import send_file
from web import auth, server
from web.guard import GUARDED, CLEARABLE, guarded_changes, password_ok

# id, title, keys (one text table: tuples of tuples cost more heap)
SECTIONS = """
wifi|WiFi and network|hostname wifi_ssid wifi_password ap_password ntp_server
meter|Meter|mbk board poll_bt23_ms poll_bt28_ms fast_mode
time|Time|timezone
mqtt|MQTT and Home Assistant|mqtt_enabled mqtt_host mqtt_port mqtt_tls mqtt_ca mqtt_tls_insecure \
mqtt_user mqtt_password \
mqtt_prefix mqtt_device_id mqtt_per_value mqtt_raw mqtt_commands mqtt_interval_s ha_discovery \
ha_prefix device_name
alarms|Alarms|alarms
mail|E-mail|smtp_host smtp_port smtp_starttls smtp_ca smtp_user smtp_password smtp_from smtp_to
security|Security and access|public_dashboard legacy_public legacy_token web_hosts ota_key \
session_secret
"""
# settings that take effect only after a restart
RESTART = ('hostname', 'wifi_ssid', 'wifi_password', 'ap_password', 'ntp_server', 'board')


def sections():
    """[(id, title, [keys])] from SECTIONS."""
    out = []
    for line in SECTIONS.strip().split('\n'):
        p = line.split('|')
        out.append((p[0], p[1], p[2].split()))
    return out


def _field(ctx, f):
    k = f['key']
    f['guarded'] = k in GUARDED
    f['restart'] = k in RESTART
    if f['secret']:
        f['set'] = bool(ctx.config.values.get(k))
        f['clearable'] = k in CLEARABLE
    else:
        f['value'] = ctx.config.values.get(k)
    return f


def in_words(key, msg):
    """The message for the field itself, without its label and internal name:
    'MQTT port (mqtt_port): must be from 1 to 65535' -> 'must be from 1 to 65535'."""
    tag = '(%s)' % key
    i = msg.find(tag + ': ')
    if i >= 0:
        return msg[i + len(tag) + 2:]
    return msg.replace(' ' + tag, '')


async def get_config(ctx, request):
    by_key = {}
    for f in ctx.config.schema_view():
        by_key[f['key']] = f
    head = '{"csrf": %s, "legacy_path": %s, "sections": [' % (
        json.dumps(auth.csrf_token(ctx, request)), json.dumps('/' + ctx.config['legacy_token']))

    def body():     # a field at a time: no one-piece copy of the whole answer in the heap
        yield head
        sep = ''
        for sid, title, keys in sections():
            yield '%s{"id": %s, "title": %s, "fields": [' % (sep, json.dumps(sid),
                                                              json.dumps(title))
            fs = ''
            for k in keys:
                if k in by_key:
                    yield fs + json.dumps(_field(ctx, by_key[k]))
                    fs = ','
            yield ']}'
            sep = ','
        yield ']}'
    return server.chunked(body()), 200, {'Content-Type': 'application/json',
                                         'Cache-Control': 'no-store'}


def _bad(text, fields=None, status=400):
    d = {'error': text}
    if fields:
        d['fields'] = fields
    return d, status, {'Cache-Control': 'no-store'}


async def save_config(ctx, request):
    body = request.json
    if not isinstance(body, dict) or not isinstance(body.get('values', {}), dict):
        return _bad('send JSON {"section": ..., "values": {...}}')
    keys = None
    for sid, title, ks in sections():
        if sid == body.get('section'):
            keys = ks
    if keys is None:
        return _bad('unknown section %r' % str(body.get('section'))[:20])
    values = body.get('values') or {}
    clear = body.get('clear') or []
    fields = {}
    for k in values:
        if k not in keys:
            fields[str(k)[:40]] = 'is not a setting of this section'
    if not isinstance(clear, list):
        clear = []
    for k in clear:
        if k not in keys or k not in CLEARABLE:
            fields[str(k)[:40]] = 'cannot be cleared here'
    if fields:
        return _bad('Nothing saved: %d setting(s) need fixing.' % len(fields), fields)
    guarded = guarded_changes(ctx, values, clear)
    if guarded:
        why = await password_ok(ctx, request, body.get('current_password'))
        if why:
            return _bad(why, {'current_password': why + ' (needed for: %s)'
                              % ', '.join(guarded)}, 403)
    before = dict(ctx.config.values)
    errors = ctx.apply_config(values, clear) or {}
    if errors:
        words = {}
        for k in errors:
            words[k] = in_words(k, errors[k])
        return _bad('Nothing saved: %d setting(s) need fixing.' % len(words), words)
    changed = [k for k in ctx.config.values if before.get(k) != ctx.config.values[k]]
    ctx.log('web: settings saved (%s)' % (', '.join(sorted(changed)) or 'nothing changed'))
    if guarded:
        ctx.log('web: protected settings changed with the password: %s' % ', '.join(guarded))
    return {'ok': True, 'changed': changed,
            'restart': any(k in RESTART for k in changed)}, 200, {'Cache-Control': 'no-store'}


async def settings_page(ctx, request):
    """The page built at build time (tools/build_web.py): the browser fills it from the API."""
    path = server.static_dir() + '/settings.html.gz'
    try:
        f = open(path, 'rb')
    except OSError:
        return server.error(request, 404, 'page not built (run ./dev build-web)')
    return send_file(path, content_type='text/html; charset=UTF-8', stream=f,
                     compressed=True, max_age=0)
