# firmware/system/config.py (with config_schema.py, passwords.py) and firmware/storage/atomic.py on CPython.
import asyncio
import builtins
import gc
import hashlib
import json
import os
import subprocess
import sys
import weakref

import pytest

_FW = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   'firmware')
if _FW not in sys.path:
    sys.path.insert(0, _FW)

from storage import atomic  # noqa: E402
import compat  # noqa: E402
from drivers import boards  # noqa: E402
from system import passwords  # noqa: E402
from system import config_schema  # noqa: E402
from system import config  # noqa: E402
from system.config import Config  # noqa: E402

MBK = 'Q7x!MBKsecret-42Zq#p'  # 20 printable characters: a valid MBK
SECRETS = {
    'wifi_password': 'WifiSecret-9f8e7d',
    'ap_password': 'ApSecret-1a2b3c4d',
    'mbk': MBK,
    'session_secret': 'ab' * 32,
    'ota_key': 'cd' * 20,
    'mqtt_password': 'MqttSecret-5e6f',
    'smtp_password': 'SmtpSecret-7a8b',
}
WEB_PW = 'WebSecret-3c4d5e'


ON_DEMAND = ('system.config_schema', 'system.passwords')


@pytest.fixture(autouse=True, params=[False, True], ids=['resident', 'unload'])
def unload(request, monkeypatch):
    """Every test runs twice: with the schema modules kept (CPython default) and dropped after
    each call as on MicroPython; then no call may leave them imported."""
    monkeypatch.setattr(compat, 'UNLOAD', request.param)
    yield request.param
    if request.param:
        assert not [m for m in ON_DEMAND if m in sys.modules], 'a call left the schema loaded'


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'config.json')


def fresh(path, **kw):
    return Config(path, pw_iterations=20).load(**kw)


def with_secrets(path):
    c = fresh(path)
    assert c.update(dict(SECRETS)) == {}
    assert c.set_password(WEB_PW) == {}
    c.save()
    return c


def secret_values(c=None):
    vals = list(SECRETS.values()) + [WEB_PW]
    if c is not None:
        vals.append(c.values['web_password_hash'].split('$')[-1])
    return vals


def assert_no_secret(text, c=None):
    for s in secret_values(c):
        assert s not in text, 'a secret leaked'
        if s.lower() != s:
            assert s.lower() not in text.lower()


# ---- defaults and first boot ----

def test_first_boot_defaults_and_generated_secrets(path):
    c = fresh(path)
    assert c.fallback is True
    assert 'defaults loaded' in c.warning
    for key, typ, default, label, hlp, check in config_schema.SCHEMA:
        if key not in config_schema.GENERATED:
            assert c.values[key] == default, key
    assert c['hostname'] == 'esp32-mep' and c['board'] == boards.DEFAULT
    assert c['mqtt_port'] == 1883 and c['smtp_port'] == 587 and c['ha_prefix'] == 'homeassistant'
    assert c['legacy_public'] is False and c['public_dashboard'] is False  # private by default
    assert c['mqtt_commands'] is False and c['ha_discovery'] is True
    assert len(c['ap_password']) >= 12
    assert len(c['session_secret']) >= 32 and len(c['ota_key']) >= 32
    assert os.path.exists(path), 'generated secrets must be stored'
    again = fresh(path)
    assert again.fallback is False and again.warning is None
    for k in config_schema.GENERATED:
        assert again[k] == c[k]
    other = fresh(path + '2')
    assert other['ap_password'] != c['ap_password']
    assert other['session_secret'] != c['session_secret']


def test_schema_has_labels_help_and_valid_defaults():
    keys = [f[0] for f in config_schema.SCHEMA]
    assert len(keys) == len(set(keys))
    for key, typ, default, label, hlp, check in config_schema.SCHEMA:
        assert label and isinstance(hlp, str)
        if key not in config_schema.GENERATED:
            v, err = config_schema.validate(key, default)
            assert err is None, key
    assert 'risk' in config_schema._BY_KEY['mqtt_commands'][4].lower()
    sys.modules.pop('system.passwords', None)  # validate() called directly imports it; Config drops it


def test_mqtt_device_id_defaults_to_hostname(path):
    c = fresh(path)
    assert c.update({'hostname': 'meter-7'}) == {}
    assert c['mqtt_device_id'] == 'meter-7'
    assert c.update({'mqtt_device_id': 'house_1'}) == {}
    assert c['mqtt_device_id'] == 'house_1'
    assert c.get('nope', 5) == 5


# ---- validation ----

BAD = [
    ('hostname', 'has space'), ('hostname', '-lead'), ('hostname', 'x' * 64), ('hostname', ''),
    ('hostname', 12), ('wifi_password', 'short'), ('ap_password', 'elevenchars'),
    ('mbk', 'toolongtobeanmbk-123456'), ('mbk', 'short'), ('board', 'nosuchboard'),
    ('poll_bt23_ms', -1), ('poll_bt28_ms', 'fast'), ('poll_bt28_ms', True),
    ('fast_mode', 'maybe'), ('timezone', 'Europe/Nowhere'), ('timezone', 'CET'), ('timezone', 5),
    ('ntp_server', 'bad host!'), ('ota_key', 'nothex' * 8), ('ota_key', 'ab' * 8),
    ('session_secret', 'zz'), ('mqtt_port', 0), ('mqtt_port', 65536), ('mqtt_port', 1.5),
    ('mqtt_prefix', 'a/#'), ('mqtt_prefix', '/lead'), ('mqtt_device_id', 'a b'),
    ('ha_prefix', ''), ('smtp_port', 'x'), ('smtp_from', 'nobody'), ('smtp_to', 'a@b.dk, bad'),
    ('web_password_hash', 'plain'), ('alarms', 'x'), ('alarms', [{'kind': 'nope'}]),
    ('alarms', [{'kind': 'power_above'}]),
    ('alarms', [{'kind': 'power_above', 'threshold': -1}]),
    ('alarms', [{'kind': 'export_above', 'threshold': 5, 'seconds': 'x'}]),
    ('alarms', [{'kind': 'export_above', 'threshold': 5, 'colour': 'red'}]),
    ('alarms', [{'kind': 'export_above', 'threshold': 5, 'enabled': 'perhaps'}]),
    ('alarms', [{'kind': 'power_above', 'threshold': 1}] * 9),
    ('no_such_setting', 1),
]


@pytest.mark.parametrize('key,value', BAD)
def test_invalid_value_is_rejected_with_a_human_message(path, key, value):
    c = fresh(path)
    before = dict(c.values)
    errors = c.update({key: value, 'hostname': 'fine-name'} if key != 'hostname' else {key: value})
    assert list(errors) == [key]
    msg = errors[key]
    assert key in msg and len(msg) > 20 and 'Traceback' not in msg
    if key in config_schema._BY_KEY:
        assert config_schema._BY_KEY[key][3] in msg  # the human label
    assert c.values == before, 'nothing may be applied when any change is invalid'


def test_secret_values_never_in_error_messages(path):
    c = fresh(path)
    bad = {'wifi_password': 'sEcReT1', 'ap_password': 'sEcReT2xx', 'mbk': 'sEcReT3-mbk-xyz',
           'ota_key': 'sEcReT4' * 6, 'session_secret': 'sEcReT5' * 6}
    errors = c.update(bad)
    assert set(errors) == set(bad)
    text = json.dumps(errors)
    for v in bad.values():
        assert v not in text


def test_mbk_message_explains_the_format(path):
    err = fresh(path).update({'mbk': '53540BEEB79D0514AC0'})['mbk']
    assert '20' in err and 'hex' in err


def test_valid_updates_and_form_coercion(path):
    c = fresh(path)
    alarms = [{'kind': 'power_above', 'threshold': '3000', 'seconds': 60},
              {'kind': 'energy_today_above', 'threshold': 12000.5, 'enabled': 'off'}]
    errors = c.update({'mqtt_port': '8883', 'mqtt_tls': 'on', 'fast_mode': 1,
                       'mbk': '5354' + '0' * 36, 'alarms': alarms, 'timezone': 'Europe/Vienna',
                       'smtp_to': 'a@b.dk, c@d.org', 'ntp_server': '192.168.1.1'})
    assert errors == {}
    assert c['mqtt_port'] == 8883 and c['mqtt_tls'] is True and c['fast_mode'] is True
    assert c['alarms'][0] == {'kind': 'power_above', 'threshold': 3000.0, 'seconds': 60,
                              'hysteresis': 0, 'repeat_min': 60, 'enabled': True}
    assert c['alarms'][1]['enabled'] is False and c['alarms'][1]['threshold'] == 12000.5


def test_mqtt_enabled_requires_a_host(path):
    c = fresh(path)
    errors = c.update({'mqtt_enabled': True})
    assert 'mqtt_host' in errors and c['mqtt_enabled'] is False
    assert c.update({'mqtt_enabled': True, 'mqtt_host': 'broker.local'}) == {}


def test_empty_secret_keeps_value_and_clear(path):
    c = with_secrets(path)
    assert c.update({'mbk': '', 'wifi_password': '', 'hostname': 'h2'}) == {}
    assert c['mbk'] == MBK and c['wifi_password'] == SECRETS['wifi_password']
    assert c.update({}, clear=('mbk',)) == {}
    assert c['mbk'] == ''
    assert c.update({'hostname': ''}) != {}  # not a secret: empty is validated
    assert 'hostname' in c.update({}, clear=('hostname',))
    assert c.update({'wifi_password': ''}, keep_empty_secrets=False) == {}
    assert c['wifi_password'] == ''
    old = c['ap_password']
    assert c.update({}, clear=('ap_password', 'session_secret')) == {}
    assert c['ap_password'] and c['ap_password'] != old, 'generated secrets regenerate'


# ---- views, export, restore ----

def test_secrets_never_in_views_exports_or_warnings(path):
    c = with_secrets(path)
    view = c.public_view()
    for k in list(SECRETS) + ['web_password_hash']:
        assert view[k] == {'set': True}
    assert fresh(path + 'x').public_view()['mbk'] == {'set': False}
    out = json.dumps([view, c.schema_view(), c.export(), c.warning])
    assert_no_secret(out, c)
    assert set(view) == set(config_schema._BY_KEY)
    # a file with invalid secrets: the warning names the fields, never the values
    with open(path) as f:
        d = json.load(f)
    d['wifi_password'] = 'x'  # invalid
    d['mbk'] = MBK[:5] + 'Q'  # invalid
    d['extra_' + SECRETS['mqtt_password'][:4]] = SECRETS['mqtt_password']
    with open(path, 'w') as f:
        json.dump(d, f)
    c2 = fresh(path)
    assert 'wifi_password' in c2.warning and 'mbk' in c2.warning
    assert_no_secret(c2.warning)
    assert MBK[:5] + 'Q' not in c2.warning


def test_schema_view_describes_forms():
    sv = Config('/nonexistent/x.json').schema_view()
    by = {e['key']: e for e in sv}
    assert by['board']['options'] == sorted(boards.PROFILES)
    assert by['mqtt_port']['min'] == 1 and by['mqtt_port']['max'] == 65535
    assert by['mbk']['secret'] is True and 'default' not in by['mbk']
    assert by['alarms']['max_items'] == 8
    assert all(e['label'] for e in sv)


def test_export_and_restore(path, tmp_path):
    c = with_secrets(path)
    assert c.update({'hostname': 'exported', 'mqtt_prefix': 'x/y'}) == {}
    plain = c.export()
    assert plain['hostname'] == 'exported'
    assert not any(k in plain for k in SECRETS)
    full = c.export(include_secrets=True)
    assert full['mbk'] == MBK and full['web_password_hash'] == c['web_password_hash']

    other = fresh(str(tmp_path / 'other.json'))
    own_ap = other['ap_password']
    assert other.restore(json.loads(json.dumps(plain))) == {}
    assert other['hostname'] == 'exported' and other['mqtt_prefix'] == 'x/y'
    assert other['ap_password'] == own_ap and other['mbk'] == '', 'absent secrets are kept'
    assert other.restore(full) == {}
    assert other['mbk'] == MBK and other.check_password(WEB_PW)

    bad = dict(plain, mqtt_port=70000)
    before = dict(other.values)
    errors = other.restore(bad)
    assert list(errors) == ['mqtt_port'] and other.values == before
    assert other.restore([1, 2]) != {}


# ---- loading damaged files ----

@pytest.mark.parametrize('content', [b'', b'{"hostname": "abc"', b'\xff\xfe\x00garbage', b'[1, 2]',
                                     b'null', b'"text"'])
def test_corrupt_file_falls_back_to_defaults(path, content):
    with open(path, 'wb') as f:
        f.write(content)
    c = fresh(path, save_generated=False)
    assert c.fallback is True
    assert 'corrupt' in c.warning and 'defaults' in c.warning
    assert c['hostname'] == 'esp32-mep'
    assert c['ap_password'], 'AP mode still gets a password'


def test_corrupt_main_loads_valid_backup(path):
    c = with_secrets(path)
    assert c.update({'hostname': 'first'}) == {}
    c.save()
    assert c.update({'hostname': 'second'}) == {}
    c.save()  # .bak now holds 'first'
    with open(path, 'wb') as f:
        f.write(b'{"hostname": "sec')
    c2 = fresh(path)
    assert c2.fallback is False
    assert c2['hostname'] == 'first' and c2['mbk'] == MBK
    assert 'backup' in c2.warning


def test_unknown_keys_dropped_and_invalid_values_reset(path):
    with open(path, 'w') as f:
        json.dump({'hostname': 'ok-host', 'mqtt_port': 'abc', 'board': 'nope', 'colour': 'blue',
                   'timezone': 'Mars/Olympus', 'alarms': [{'kind': 'x'}]}, f)
    c = fresh(path)
    assert c.fallback is False
    assert c['hostname'] == 'ok-host'
    assert c['mqtt_port'] == 1883 and c['board'] == boards.DEFAULT and c['alarms'] == []
    assert c['timezone'] == 'Europe/Copenhagen'
    assert 'colour' in c.warning and 'colour' not in c.values
    for k in ('mqtt_port', 'board', 'timezone', 'alarms'):
        assert k in c.warning


def test_load_never_raises_on_unusable_path(tmp_path):
    c = Config(str(tmp_path / 'no-such-dir' / 'config.json')).load()  # saving fails
    assert c.fallback is True and c['ap_password']
    assert 'could not store' in c.warning


def test_leftover_tmp(path):
    c = with_secrets(path)
    c.save()  # the backup holds the secrets too
    with open(path + '.tmp', 'w') as f:
        json.dump({'hostname': 'from-tmp'}, f)
    assert fresh(path)['hostname'] == 'esp32-mep', 'tmp ignored while the main file exists'
    os.remove(path)
    c2 = fresh(path, save_generated=False)
    assert c2['hostname'] == 'from-tmp' and c2.fallback is False
    with open(path + '.tmp', 'w') as f:
        f.write('{"hostn')
    c3 = fresh(path, save_generated=False)  # broken tmp, no main: the backup
    assert c3['mbk'] == MBK and 'backup' in c3.warning
    assert c.values['mbk'] == MBK


# ---- power cuts during save ----

class PowerCut(BaseException):  # like a real cut: nothing may catch it
    pass


class Faults:
    """Counts every os call and file operation atomic.py makes; raises at step `fail_at`."""

    def __init__(self, fail_at=None):
        self.fail_at = fail_at
        self.steps = 0

    def step(self, name):
        self.steps += 1
        if self.steps == self.fail_at:
            raise PowerCut('power cut at %s' % name)

    def install(self, monkeypatch):
        faults = self

        class FakeOs:
            def __getattr__(self, name):
                real = getattr(os, name)

                def call(*a):
                    faults.step(name)
                    return real(*a)
                return call

        class FakeFile:
            def __init__(self, f):
                self.f = f

            def write(self, b):
                b = bytes(memoryview(b).cast('B'))
                if faults.steps + 1 == faults.fail_at and len(b) > 1:
                    self.f.write(b[:len(b) // 2])  # torn write
                faults.step('write')
                return self.f.write(b)

            def flush(self):
                faults.step('flush')
                self.f.flush()

            def fileno(self):
                return self.f.fileno()

            def close(self):
                if not self.f.closed:
                    faults.step('close')
                self.f.close()

        def fake_open(p, mode='r'):
            faults.step('open')
            return FakeFile(open(p, mode))

        monkeypatch.setattr(atomic, 'os', FakeOs())
        monkeypatch.setattr(atomic, 'open', fake_open, raising=False)


def test_power_cut_at_every_step_leaves_old_or_new(tmp_path, monkeypatch):
    counter = Faults()
    with monkeypatch.context() as m:
        p0 = str(tmp_path / 'count.json')
        c = fresh(p0)
        c.save()
        counter.install(m)
        c.update({'hostname': 'counting'})
        c.save()
    total = counter.steps
    assert total >= 8  # open, write, flush, fsync, close, sync, stat, remove, renames, sync
    for k in range(1, total + 1):
        d = tmp_path / ('k%d' % k)
        d.mkdir()
        p = str(d / 'config.json')
        c = fresh(p)
        assert c.update({'hostname': 'old-one', 'mbk': MBK}) == {}
        c.save()
        c.update({'hostname': 'new-one'})
        c.save()  # there is a .bak too from now on
        assert c.update({'hostname': 'newest'}) == {}
        with monkeypatch.context() as m:
            Faults(k).install(m)
            with pytest.raises(PowerCut):
                c.save()
        after = fresh(p, save_generated=False)
        assert after.fallback is False, 'step %d' % k
        assert after['hostname'] in ('new-one', 'newest'), 'step %d' % k
        assert after['mbk'] == MBK
        after.update({'hostname': 'later'})
        after.save()  # a normal save still works after the interrupted one
        assert fresh(p)['hostname'] == 'later'


def test_first_save_power_cut_never_crashes(tmp_path, monkeypatch):
    for k in range(1, 12):
        p = str(tmp_path / ('f%d.json' % k))
        c = Config(p)
        with monkeypatch.context() as m:
            Faults(k).install(m)
            try:
                c.save()
            except PowerCut:
                pass
        after = fresh(p, save_generated=False)
        assert after['hostname'] == 'esp32-mep'


def test_atomic_write_accepts_a_writer(tmp_path):
    p = str(tmp_path / 'blob')
    atomic.write(p, lambda f: [f.write(b'ab'), f.write(b'cd')])
    atomic.write(p, 'xyz')
    assert open(p, 'rb').read() == b'xyz' and open(p + '.bak', 'rb').read() == b'abcd'
    assert atomic.read(p, lambda f: f.read()) == (b'xyz', 'main')


# ---- web password ----

def test_password_hash_salted_and_checked(path):
    c = fresh(path)
    assert c.check_password('anything') is False  # no password set
    assert c.set_password(WEB_PW) == {}
    h1 = c['web_password_hash']
    assert c.check_password(WEB_PW) and not c.check_password(WEB_PW + 'x')
    assert not c.check_password('') and not c.check_password(None)
    assert c.set_password(WEB_PW) == {}
    h2 = c['web_password_hash']
    assert h1 != h2, 'salted: two hashes of one password differ'
    tag, n, salt, dk = h2.split('$')
    assert tag == 'pbkdf2-sha256' and int(n) == 20 and len(salt) >= 32
    assert bytes.fromhex(dk) == hashlib.pbkdf2_hmac('sha256', WEB_PW.encode(),
                                                    bytes.fromhex(salt), 20)
    assert WEB_PW not in h2
    c.save()
    assert fresh(path).check_password(WEB_PW)
    assert 'web_password_hash' in c.set_password('short')


def test_default_iterations_and_async_check(path):
    c = Config(path).load()
    assert c.set_password(WEB_PW) == {}
    assert c['web_password_hash'].split('$')[1] == str(config.PW_ITERATIONS) == '1000'
    assert asyncio.run(c.check_password_async(WEB_PW, chunk=100)) is True
    assert asyncio.run(c.check_password_async('wrong-password')) is False


@pytest.mark.parametrize('pw,salt,n', [(b'p', b's', 1), (b'x' * 64, b'salt', 7),
                                       (b'y' * 65, b'salt', 3), (b'', b'', 2)])
def test_pbkdf2_matches_reference(pw, salt, n):
    assert passwords.pbkdf2_sha256(pw, salt, n) == hashlib.pbkdf2_hmac('sha256', pw, salt, n)


# ---- what stays in memory ----

def test_importing_config_loads_no_schema_or_password_code():
    code = ('import sys; sys.path.insert(0, %r); from system import config; from system.config import opt; '
            'print(sorted(m for m in %r + ("hashlib",) if m in sys.modules))' % (_FW, ON_DEMAND))
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[]'


def test_a_password_check_keeps_its_module_until_it_ends(path, unload, monkeypatch):
    """passwords.py stays loaded while an async check runs: dropped at its start, a second caller
    would import a second copy next to the running one."""
    c = with_secrets(path)
    c.set_password(WEB_PW)
    sys.modules.pop('system.passwords', None)
    imports = []
    real = __import__

    def counting(name, *a, **k):
        if name == 'system.passwords' and name not in sys.modules:
            imports.append(name)
        return real(name, *a, **k)

    async def both():
        monkeypatch.setattr(builtins, '__import__', counting)
        first = asyncio.ensure_future(c.check_password_async(WEB_PW, chunk=4))
        await asyncio.sleep(0)          # the first check is running (it yields every 4 rounds)
        assert 'system.passwords' in sys.modules
        ok2 = c.check_password('wrong password!')
        return await first, ok2
    ok1, ok2 = asyncio.run(both())
    assert ok1 is True and ok2 is False
    assert imports == ['system.passwords'], imports
    if unload:
        assert 'system.passwords' not in sys.modules


@pytest.mark.parametrize('unload', [True], ids=['unload'], indirect=True)
def test_unloaded_modules_leave_no_references(path, unload):
    assert unload                       # only meaningful when the modules are dropped
    c = with_secrets(path)

    def freed_after(call):
        for m in ON_DEMAND:
            sys.modules.pop(m, None)
        from system import passwords as pw  # the copies `call` uses: sys.modules holds them until then
        from system import config_schema as schema
        refs = [weakref.ref(m) for m in (pw, schema)]
        refs += [weakref.ref(x) for m in (pw, schema) for x in vars(m).values()
                 if callable(x) and getattr(x, '__module__', None) == m.__name__]
        assert len(refs) > 20
        del pw, schema
        result = call()
        assert not [m for m in ON_DEMAND if m in sys.modules]
        gc.collect()
        assert [r for r in refs if r() is not None] == [], 'something kept the dropped code'
        return result

    assert freed_after(c.load) is c
    assert freed_after(lambda: c.update({'hostname': 'dropped'})) == {}
    full = freed_after(lambda: c.export(include_secrets=True))
    assert freed_after(lambda: c.restore(full)) == {}
    assert freed_after(c.schema_view)[0]['key'] == 'hostname'
    assert freed_after(c.public_view)['mbk'] == {'set': True}
    assert freed_after(lambda: c.set_password(WEB_PW)) == {}
    assert freed_after(lambda: c.check_password(WEB_PW)) is True
    assert freed_after(lambda: asyncio.run(c.check_password_async(WEB_PW))) is True
    assert freed_after(lambda: Config(path).values['hostname']) == 'esp32-mep'
    c.save()
    assert fresh(path)['hostname'] == 'dropped'


def test_opt_reads_configs_and_dicts(path):
    c = fresh(path)
    assert config.opt(c, 'mqtt_port') == 1883 and config.opt(c, 'nope', 7) == 7
    assert config.opt({'a': None}, 'a', 3) == 3 and config.opt({'a': 0}, 'a', 3) == 0
    assert config.opt({}, 'a') is None
