# The settings JSON API (/api/config) and its page built at build time (/settings), against the
# real App over loopback: sections saved on their own, field errors in words, no secret sent,
# the password for protected settings, "restart needed".
import gzip
import json
import os

import pytest

from test_web_security import Running, Http, logged_in, PASSWORD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSON = {'Content-Type': 'application/json'}


@pytest.fixture
def app(tmp_path):
    r = Running(str(tmp_path))
    yield r
    r.stop()


def api(h):
    r = h.get('/api/config')
    assert r.status == 200, r.text
    return r.json


def save(h, csrf, section, values, **extra):
    body = dict(section=section, values=values, **extra)
    return h.post('/api/config', json.dumps(body), headers=dict(JSON, **{'X-CSRF-Token': csrf}))


def test_sections_cover_every_setting_and_send_no_secret(app):
    from system import config_schema
    h = logged_in(app)
    j = api(h)
    keys = [f['key'] for s in j['sections'] for f in s['fields']]
    want = [f[0] for f in config_schema.SCHEMA if f[0] != 'web_password_hash']
    assert sorted(keys) == sorted(want), set(keys) ^ set(want)     # each exactly once
    c = app.app.config
    secrets = [c[k] for k in ('mbk', 'ota_key', 'session_secret', 'ap_password')] + \
        [c['web_password_hash']]
    text = json.dumps(j['sections'])
    assert not [s for s in secrets if s and s in text]
    for s in j['sections']:
        for f in s['fields']:
            if f['secret']:
                assert 'value' not in f and f['set'] in (True, False), f
    assert j['legacy_path'] == '/' + c['legacy_token'] and len(j['csrf']) == 32
    assert Http(app.port).get('/api/config').status == 401


def test_a_section_saves_alone_with_errors_in_words(app):
    h = logged_in(app)
    j = api(h)
    c = app.app.config
    r = save(h, j['csrf'], 'mqtt', {'mqtt_port': '99999', 'mqtt_prefix': 'a//b',
                                     'mqtt_enabled': True, 'mqtt_host': ''})
    assert r.status == 400 and 'Nothing saved' in r.json['error']
    f = r.json['fields']
    assert f['mqtt_port'] == 'must be from 1 to 65535'
    assert 'mqtt_prefix' not in f['mqtt_prefix'] and 'double' in f['mqtt_prefix']
    assert f['mqtt_host'] == 'MQTT broker is required when MQTT is enabled'
    assert c['mqtt_port'] == 1883 and c['mqtt_enabled'] is False
    r = save(h, j['csrf'], 'mqtt', {'hostname': 'elsewhere'})       # not this section's
    assert r.status == 400 and c['hostname'] == 'mep-test'
    r = save(h, j['csrf'], 'nope', {})
    assert r.status == 400 and 'unknown section' in r.json['error']
    r = save(h, j['csrf'], 'mqtt', {'mqtt_port': '1884', 'mqtt_prefix': 'home/mep'})
    assert r.status == 200 and r.json['restart'] is False
    assert sorted(r.json['changed']) == ['mqtt_port', 'mqtt_prefix']
    assert c['mqtt_port'] == 1884 and c['hostname'] == 'mep-test'
    r = save(h, j['csrf'], 'wifi', {'hostname': 'mep-new', 'wifi_password': ''})
    assert r.status == 200 and r.json['restart'] is True and r.json['changed'] == ['hostname']
    # secrets: empty keeps, a value is stored, clear only where allowed
    r = save(h, j['csrf'], 'mail', {'smtp_password': 'mail-secret-1'})
    assert r.status == 200 and c['smtp_password'] == 'mail-secret-1'
    assert 'mail-secret-1' not in h.get('/api/config').text
    r = save(h, j['csrf'], 'mail', {'smtp_password': ''}, clear=['smtp_password'])
    assert r.status == 200 and c['smtp_password'] == ''
    r = save(h, j['csrf'], 'wifi', {}, clear=['hostname'])
    assert r.status == 400 and r.json['fields']['hostname'] == 'cannot be cleared here'
    assert not any('mail-secret-1' in x for x in app.logs)
    # without the CSRF token nothing happens
    r = h.post('/api/config', json.dumps({'section': 'wifi', 'values': {'hostname': 'x1'}}),
               headers=JSON)
    assert r.status == 403 and c['hostname'] == 'mep-new'


def test_protected_settings_need_the_password_here_too(app):
    h = logged_in(app)
    j = api(h)
    c = app.app.config
    r = save(h, j['csrf'], 'security', {'public_dashboard': True})
    assert r.status == 403 and 'current_password' in r.json['fields']
    assert 'public_dashboard' in r.json['fields']['current_password']
    r = save(h, j['csrf'], 'security', {'ota_key': 'ab' * 32}, current_password='not it at all')
    assert r.status == 403 and c['ota_key'] != 'ab' * 32
    r = save(h, j['csrf'], 'security', {'public_dashboard': True, 'ota_key': 'ab' * 32},
             current_password=PASSWORD)
    assert r.status == 200 and c['public_dashboard'] is True and c['ota_key'] == 'ab' * 32
    assert any('protected settings changed' in x and 'ota_key' in x for x in app.logs)
    r = save(h, j['csrf'], 'security', {'public_dashboard': False})   # closing: no password
    assert r.status == 200 and c['public_dashboard'] is False


def test_settings_page_is_built_and_needs_a_login(app):
    from tools import build_web
    if not os.path.exists(os.path.join(ROOT, 'firmware', 'web', 'static', 'settings.html.gz')):
        build_web.build(skip_npm=True)
    r = Http(app.port).get('/settings')
    assert r.status == 302 and r.headers['location'].startswith('/login?next=/settings')
    h = logged_in(app)
    r = h.get('/settings')
    assert r.status == 200 and r.headers['content-encoding'] == 'gzip'
    assert r.headers['content-type'].startswith('text/html')
    page = gzip.decompress(r.body).decode()
    assert 'data-page="/settings"' in page and '{{v}}' not in page
    assert '/static/app.js?v=' in page and 'id="sections"' in page
    assert "frame-ancestors 'none'" in r.headers['content-security-policy']
    assert '/static/settings.js?v=' in page
    r = h.get('/static/settings.js')
    assert r.status == 200 and b'/api/config' in gzip.decompress(r.body)
