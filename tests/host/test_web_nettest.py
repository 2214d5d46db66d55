# The settings page's network helpers against the real App over loopback: "test the MQTT
# connection" against a real mosquitto (with a password file), and the WiFi scan (501 on the
# PC; on a board, net.Wifi over a stand-in WLAN with the real scan() shape, with the MEP link
# polling again after the scan has blocked the loop).
import json
import socket
import threading
import time

import pytest

from mqtt_broker import Broker, free_port
from test_web_security import Running, Http, logged_in

JSON = {'Content-Type': 'application/json'}
MQTT_PW = 'broker-secret-77'


@pytest.fixture
def app(tmp_path):
    r = Running(str(tmp_path))
    yield r
    r.stop()


@pytest.fixture(scope='module')
def broker():
    b = Broker(users={'mep': MQTT_PW}).start()
    yield b
    b.close()


def csrf(h):
    r = h.get('/api/config')
    assert r.status == 200, r.text
    return r.json['csrf']


def mqtt_test(h, token, **fields):
    return h.post('/api/mqtt/test', json.dumps(fields),
                  headers=dict(JSON, **{'X-CSRF-Token': token}))


def test_mqtt_test_in_words_against_a_real_broker(app, broker):
    h = logged_in(app)
    tok = csrf(h)
    r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=str(broker.port), mqtt_user='mep',
                  mqtt_password=MQTT_PW)
    assert r.status == 200 and r.json['ok'] is True and r.json['result'] == 'connected', r.text
    assert 'Connected to 127.0.0.1:%d' % broker.port in r.json['message']
    r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=broker.port, mqtt_user='mep',
                  mqtt_password='not-the-password')
    assert r.json['ok'] is False and r.json['result'] == 'refused', r.text
    assert 'wrong user name or password' in r.json['message'], r.text
    r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=broker.port)     # anonymous
    assert r.json['result'] == 'refused' and 'not authorized' in r.json['message'], r.text
    # nothing listens on this port
    r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=free_port())
    assert r.json['result'] == 'no broker' and 'refused' in r.json['message'], r.text
    r = mqtt_test(h, tok, mqtt_host='no-such-broker.invalid', mqtt_port=1883)
    assert r.json['result'] == 'host not found', r.text
    assert 'no-such-broker.invalid' in r.json['message']
    # TLS asked of a plain listener
    r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=broker.port, mqtt_tls=True,
                  mqtt_user='mep', mqtt_password=MQTT_PW)
    assert r.json['result'] == 'tls failure' and 'TLS' in r.json['message'], r.text
    # bad input: an error in words, no connection
    r = mqtt_test(h, tok, mqtt_host='', mqtt_port=1883)
    assert r.status == 400 and 'broker' in r.json['error']
    r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port='70000')
    assert r.status == 400 and '1 to 65535' in r.json['error']
    everything = ' '.join(app.logs)
    assert MQTT_PW not in everything and 'not-the-password' not in everything
    assert any('MQTT connection test to 127.0.0.1:%d: connected' % broker.port in x
               for x in app.logs)
    # the real client's session is not taken over: the test uses its own client id
    assert 'mep-test-' in broker.read_log()


def test_mqtt_test_with_tls(app, tmp_path):
    from tlsca import TestCA
    ca = TestCA(tmp_path)
    b = Broker(users={'mep': MQTT_PW}, tls=ca.server('localhost', '127.0.0.1')).start()
    try:
        h = logged_in(app)
        tok = csrf(h)
        r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=b.port, mqtt_tls=True,
                      mqtt_user='mep', mqtt_password=MQTT_PW)           # CA not given
        assert r.json['result'] == 'not verified', r.text
        assert 'not signed by a trusted CA' in r.json['message'], r.text
        r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=b.port, mqtt_tls=True,
                      mqtt_user='mep', mqtt_password=MQTT_PW, mqtt_ca=ca.pem.decode())
        assert r.json['result'] == 'connected' and 'certificate verified' in r.json['message'], \
            r.text
        r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=b.port, mqtt_tls=True,
                      mqtt_user='mep', mqtt_password=MQTT_PW, mqtt_tls_insecure=True)
        assert r.json['result'] == 'connected' and 'NOT verified' in r.json['message'], r.text
        r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=b.port, mqtt_tls=False,
                      mqtt_user='mep', mqtt_password=MQTT_PW)         # TLS forgotten
        assert r.json['ok'] is False and r.json['result'] == 'no answer', r.text
        assert 'does it need TLS?' in r.json['message']
    finally:
        b.close()


def test_mqtt_test_uses_the_stored_password_only_for_the_stored_broker(app, broker):
    h = logged_in(app)
    tok = csrf(h)
    r = h.post('/api/config', json.dumps({'section': 'mqtt', 'values': {
        'mqtt_host': '127.0.0.1', 'mqtt_port': str(broker.port), 'mqtt_user': 'mep',
        'mqtt_password': MQTT_PW}}), headers=dict(JSON, **{'X-CSRF-Token': tok}))
    assert r.status == 200, r.text
    r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=broker.port, mqtt_user='mep',
                  mqtt_password='')
    assert r.json['result'] == 'connected', r.text
    assert MQTT_PW not in r.text
    # another broker (here: the same one by another name) does not get the stored password
    r = mqtt_test(h, tok, mqtt_host='localhost', mqtt_port=broker.port, mqtt_user='mep')
    assert r.json['result'] == 'refused' and 'stored password is sent only' in r.json['message']


def test_mqtt_test_needs_login_and_csrf(app, broker):
    h = logged_in(app)
    tok = csrf(h)
    r = h.post('/api/mqtt/test', json.dumps({'mqtt_host': '127.0.0.1',
                                             'mqtt_port': broker.port}), headers=JSON)
    assert r.status == 403
    anon = Http(app.port)
    r = mqtt_test(anon, tok, mqtt_host='127.0.0.1', mqtt_port=broker.port)
    assert r.status in (401, 403) and 'result' not in r.text
    assert not any('connection test' in x for x in app.logs)


def test_mqtt_test_waits_for_a_silent_server_without_blocking_the_link(app):
    """A TCP server that accepts and never answers: 'no answer' after 3 s, and the MEP link
    keeps polling while the test waits."""
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(4)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        app.wait_readings(2)
        h = logged_in(app)
        tok = csrf(h)
        t0 = time.monotonic()
        second = []

        def again():                 # while the first test waits: one at a time
            time.sleep(1)
            second.append(mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=1883))
        t2 = threading.Thread(target=again)
        t2.start()
        r = mqtt_test(h, tok, mqtt_host='127.0.0.1', mqtt_port=srv.getsockname()[1])
        t1 = time.monotonic()
        t2.join(10)
        assert second[0].status == 429 and 'already running' in second[0].json['error']
        assert r.json['result'] == 'no answer' and 'no MQTT answer' in r.json['message'], r.text
        assert t1 - t0 > 2.9                    # it waited for its time-out
        gap = app.max_gap(t0, t1)
        during = len([t for t in list(app.stamps) if t0 < t < t1])
        print('%d meter readings during the test (%.2f s), longest time without one: %.2f s'
              % (during, t1 - t0, gap))
        # the link went on reading while the test waited (counted, not timed)
        assert during >= 2, (during, t1 - t0, gap)
    finally:
        stop.set()
        t.join(2)
        for s in held:
            s.close()
        srv.close()


def test_wifi_scan_on_the_pc_says_there_is_no_wifi(app):
    h = logged_in(app)
    tok = csrf(h)
    r = h.post('/api/wifi/scan', '', headers={'X-CSRF-Token': tok})
    assert r.status == 501 and r.json['error'] == 'no WiFi on this board'
    r = h.post('/api/wifi/scan', '')
    assert r.status == 403


# (ssid, bssid, channel, RSSI, security, hidden): network.WLAN.scan()'s tuples on the ESP32
SCAN = [(b'Neighbour', b'\x01\x02\x03\x04\x05\x06', 6, -80, 3, False),
        (b'Home', b'\x01\x02\x03\x04\x05\x07', 1, -71, 4, False),
        (b'Home', b'\x01\x02\x03\x04\x05\x08', 11, -52, 4, False),
        (b'', b'\x01\x02\x03\x04\x05\x09', 3, -40, 3, True),
        (b'Caf\xc3\xa9 open', b'\x01\x02\x03\x04\x05\x0a', 3, -60, 0, False),
        (b'\xff\xfe', b'\x01\x02\x03\x04\x05\x0b', 3, -30, 3, False),
        (b'New', b'\x01\x02\x03\x04\x05\x0c', 9, -90, 7, False)]


class StandInWLAN:
    """network.WLAN's station as net.Wifi uses it; scan() blocks like the radio's."""

    def __init__(self, block_s=0):
        self.on = False
        self.block_s = block_s
        self.calls = []

    def active(self, *a):
        if a:
            self.calls.append(('active', a[0]))
            self.on = a[0]
        return self.on

    def scan(self):
        if not self.on:
            raise OSError('STA must be active')
        time.sleep(self.block_s)
        return list(SCAN)

    def isconnected(self):
        return False

    def config(self, *a, **kw):
        return None


class StandInNetwork:
    STA_IF = 0
    AP_IF = 1

    def __init__(self, wlan):
        self.wlan = wlan

    def WLAN(self, i):
        return self.wlan


WANT = [{'ssid': 'Home', 'rssi': -52, 'security': 'WPA/WPA2'},
        {'ssid': 'Café open', 'rssi': -60, 'security': 'open'},
        {'ssid': 'Neighbour', 'rssi': -80, 'security': 'WPA2'},
        {'ssid': 'New', 'rssi': -90, 'security': 'WPA2/WPA3'}]


def test_wifi_scan_sorted_by_signal_one_per_name():
    from drivers.wifi import Wifi
    wlan = StandInWLAN()
    w = Wifi(StandInNetwork(wlan))
    assert w.scan() == WANT
    assert wlan.calls == [('active', True), ('active', False)] and not wlan.on   # as it was
    wlan.calls = []
    wlan.on = True
    assert w.scan(limit=2) == WANT[:2] and wlan.calls == [] and wlan.on


def test_wifi_scan_through_the_app_and_the_link_recovers(app):
    from drivers.wifi import Wifi
    app.wait_readings(2)
    app.app.wifi = Wifi(StandInNetwork(StandInWLAN(block_s=2.0)))
    h = logged_in(app)
    tok = csrf(h)
    t0 = time.monotonic()
    r = h.post('/api/wifi/scan', '', headers={'X-CSRF-Token': tok})
    assert r.status == 200 and r.json['networks'] == WANT, r.text
    n = len(app.stamps)
    app.wait_readings(n + 3, timeout=15)
    t1 = time.monotonic()
    assert app.app.link.status()['link'] == 'ok', app.app.link.status()
    print('readings resumed %.2f s after the scan began; longest gap %.2f s'
          % (app.stamps[n] - t0, app.max_gap(t0, t1)))
    assert any('WiFi scan' in x for x in app.logs)
