# MQTT publisher + Home Assistant discovery against a real mosquitto and a paho subscriber.
import asyncio
import json
import re
import time
import uuid

import paho.mqtt.client as paho
import pytest

from net import ha
from net import ha_discovery
from net import mqtt
from net import mqtt_wire
from mep.reading import rows

FIELDS = tuple(rows())
from mqtt_broker import Broker

INFO = {'manufacturer': 'NES ', 'model': '83334-3I', 'fw': '4.4', 'hw': '1.2',
        'serial': '12345678', 'mfg_serial': '0099887766'}
SECRET = 'pa55-SECRET-word'


def make_cfg(port, **kw):
    cfg = {'mqtt_enabled': True, 'mqtt_host': '127.0.0.1', 'mqtt_port': port,
           'mqtt_tls': False, 'mqtt_user': '', 'mqtt_password': '', 'mqtt_prefix': 'mep',
           'mqtt_device_id': 'dev1', 'mqtt_per_value': False, 'mqtt_raw': False,
           'mqtt_commands': False, 'ha_discovery': True, 'ha_prefix': 'homeassistant',
           'hostname': 'mepmod'}
    cfg.update(kw)
    return cfg


def reading(seq, t=1700000000):
    r = {'time': t + seq, 'seq': seq}
    for i, k in enumerate(f[0] for f in FIELDS):
        r[k] = float(i + seq) + 0.5
    r['e_in'] = 1000000 + seq * 10
    r['e_out'] = 5000
    return r


async def until(pred, timeout=8.0):
    """True once pred() is, False if it is not within timeout s (a generous bound)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        await asyncio.sleep(0.02)
    return False


class Sub:
    """A paho subscriber collecting (topic, payload, retain)."""

    def __init__(self, port, topic='#'):
        self.msgs = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id='sub-' + uuid.uuid4().hex)
        self.c.on_message = lambda c, u, m: self.msgs.append((m.topic, m.payload, m.retain))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.c.connect('127.0.0.1', port)
        self.c.loop_start()

    def topics(self, topic):
        return [m for m in self.msgs if m[0] == topic]

    async def wait(self, pred, timeout=8.0):
        return await until(pred, timeout)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, retain=retain).wait_for_publish(2)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def broker():
    b = Broker().start()
    yield b
    b.close()


@pytest.fixture
def subs():
    made = []
    yield made
    for s in made:
        s.close()


def new_sub(subs, port, topic='#'):
    s = Sub(port, topic)
    subs.append(s)
    return s


class Running:
    def __init__(self, m):
        self.m = m

    async def __aenter__(self):
        self.task = asyncio.create_task(self.m.run())
        return self.m

    async def __aexit__(self, *exc):
        self.m.stop()
        await asyncio.wait_for(self.task, 5)


def make(cfg, logs=None, **kw):
    m = mqtt.Mqtt(cfg, lambda: INFO, log=(logs.append if logs is not None else lambda s: None),
                  **kw)
    m.io_timeout = 0.5
    return m


# ---------- discovery payloads, field by field (no broker) ----------
def render(template, value):
    """The value_template forms ha_discovery.py uses, evaluated the way HA's Jinja would (the real
    Home Assistant renders them in test_ha_real.py)."""
    if template == '{{ (value | float / 1000) | round(3) }}':
        return round(float(value) / 1000, 3)
    m = re.fullmatch(r"\{\{ (.+) if value_json\.(\w+) is defined else None \}\}", template)
    assert m, template
    expr, key = m.groups()
    d = json.loads(value)
    if key not in d:
        return None
    if expr == 'value_json.' + key:
        return d[key]
    assert expr == '(value_json.%s / 1000) | round(3)' % key, expr
    return round(d[key] / 1000, 3)


def test_discovery_payloads_field_by_field():
    cfg = make_cfg(1883)
    msgs = list(ha_discovery.messages(cfg, INFO, 'mep/dev1', {'url': 'http://192.0.2.7/'},
                                ['link', 'uptime', 'heap_free', 'reset_cause', 'resends']))
    by_key = {}
    for topic, payload in msgs:
        parts = topic.split('/')
        assert parts[0] == 'homeassistant' and parts[1] == 'sensor'
        assert parts[2] == 'mep_12345678' and parts[4] == 'config'
        by_key[parts[3]] = json.loads(payload)
    expect = {'e_in': ('energy', 'kWh', 'total_increasing'),
              'e_out': ('energy', 'kWh', 'total_increasing'),
              'eq_in': (None, 'kvarh', 'total_increasing'),
              'eq_out': (None, 'kvarh', 'total_increasing'),
              'e_h': ('energy', 'kWh', 'total'), 'e_d': ('energy', 'kWh', 'total'),
              'e_m': ('energy', 'kWh', 'total'),
              'p_in': ('power', 'W', 'measurement'), 'p_out': ('power', 'W', 'measurement'),
              'q_in': ('reactive_power', 'var', 'measurement'),
              'q_out': ('reactive_power', 'var', 'measurement'),
              's': ('apparent_power', 'VA', 'measurement'),
              'pf': ('power_factor', None, 'measurement'),
              'freq': ('frequency', 'Hz', 'measurement'),
              'last_reading': ('timestamp', None, None),
              'uptime': ('duration', 's', 'total_increasing'),
              'heap_free': ('data_size', 'B', 'measurement'),
              'resends': (None, None, 'total_increasing'),
              'reset_cause': (None, None, None), 'link': (None, None, None)}
    for ph in ('l1', 'l2', 'l3'):
        expect['u_' + ph] = ('voltage', 'V', 'measurement')
        expect['i_' + ph] = ('current', 'A', 'measurement')
        expect['pf_' + ph] = ('power_factor', None, 'measurement')
        expect['p_in_' + ph] = ('power', 'W', 'measurement')
        expect['p_out_' + ph] = ('power', 'W', 'measurement')
    # diagnostics nobody supplies (RSSI on a PC, turnaround before the link measures it)
    # are not announced
    assert set(by_key) == set(expect), set(by_key) ^ set(expect)
    for key, (dc, unit, sc) in expect.items():
        c = by_key[key]
        assert c.get('device_class') == dc, key
        assert c.get('unit_of_measurement') == unit, key
        assert c.get('state_class') == sc, key
        assert c['unique_id'] == 'mep_12345678_' + key
        assert c['availability_topic'] == 'mep/dev1/status'
        assert c['payload_available'] == 'online' and c['payload_not_available'] == 'offline'
        d = c['device']
        assert d['identifiers'] == ['mep_12345678']
        assert d['name'] == 'Electricity meter 12345678'
        assert d['manufacturer'] == 'NES' and d['model'] == '83334-3I'
        assert d['sw_version'] == '4.4' and d['hw_version'] == '1.2'
        assert d['configuration_url'] == 'http://192.0.2.7/'
        # live values expire (3 reading intervals, at least 30 s); counters do not
        if c['state_topic'] == 'mep/dev1/state' and key != 'last_reading':
            assert c['expire_after'] == 30, key
        elif c['state_topic'] == 'mep/dev1/diag':
            assert c['expire_after'] >= 180, key
            assert c['entity_category'] == 'diagnostic'
        else:
            assert 'expire_after' not in c, key
    # unique ids are unique, the link sensor is diagnostic
    ids = [c['unique_id'] for c in by_key.values()]
    assert len(ids) == len(set(ids))
    assert by_key['link']['entity_category'] == 'diagnostic'
    assert by_key['link']['state_topic'] == 'mep/dev1/link'
    # energy comes from the retained Wh counter and is shown in kWh with 3 decimals
    assert by_key['e_in']['state_topic'] == 'mep/dev1/energy/e_in'
    assert by_key['eq_out']['state_topic'] == 'mep/dev1/energy/eq_out'
    assert render(by_key['e_in']['value_template'], '1234567') == 1234.567
    assert render(by_key['e_in']['value_template'], '1234567.4') == 1234.567
    # the other sensors read their key from the state JSON; a missing key is unknown
    r = reading(3)
    state = ha.state_payload(r)
    for key in ('p_in', 'u_l2', 'pf_l3', 'freq'):
        assert by_key[key]['state_topic'] == 'mep/dev1/state'
        assert render(by_key[key]['value_template'], state) == r[key]
    assert render(by_key['p_in']['value_template'], '{"time": 1}') is None
    assert render(by_key['pf']['value_template'], state) == \
        round(abs(r['p_in'] - r['p_out']) / r['s'], 3)
    # energy this hour: Wh -> kWh, with the period start as last_reset
    assert by_key['e_h']['state_topic'] == 'mep/dev1/period'
    assert render(by_key['e_h']['value_template'], '{"h": 1500, "h0": "x"}') == 1.5
    assert 'value_json.h0' in by_key['e_h']['last_reset_value_template']
    # a configured device name
    cfg['device_name'] = 'Main meter'
    c = ha_discovery.sensor_config(cfg, INFO, 'mep/dev1', next(ha_discovery.sensors()))
    assert c['device']['name'] == 'Main meter'
    # without a web address known, the hostname's mDNS name
    assert c['device']['configuration_url'] == 'http://mepmod.local/'
    # slower readings or a publish interval stretch expire_after
    cfg['mqtt_interval_s'] = 60
    assert ha_discovery.expire_after(cfg) == 180


def test_device_id_is_the_utility_serial_only():
    assert ha.node_id(INFO) == 'mep_12345678'
    early = dict(INFO)
    del early['serial']                   # the manufacturer serial alone: not announced
    assert ha.node_id(early) == ''
    assert ha.old_node_ids(INFO) == ['mep_0099887766']
    assert ha.old_node_ids({'serial': 'A', 'mfg_serial': 'A'}) == []
    assert ha.node_id({'serial': ' 12/34 '}) == 'mep_12_34'


def test_unit_by_prefix_matches_the_field_table():
    for f in FIELDS:
        assert ha.unit(f[0]) == f[1], f[0]
    assert ha.unit('time') is None and ha.unit('seq') is None


def test_state_payload_units_and_commands_parser():
    r = reading(1)
    d = json.loads(ha.state_payload(r))
    assert d['time'] == r['time'] and d['seq'] == 1
    assert d['p_in'] == r['p_in'] and 'units' not in d
    assert set(d) == set(r) | {'pf'} and d['pf'] == ha.power_factor(r)
    r2 = dict(r, e_in=None, s=0)            # an energy not known for sure, no apparent power
    d2 = json.loads(ha.state_payload(r2))
    assert set(d2) == set(r) - {'e_in'} and d2['p_in'] == r['p_in']
    u = json.loads(ha.units_payload(r))
    assert u['p_in'] == 'W' and u['u_l1'] == 'V' and u['e_in'] == 'Wh' and u['freq'] == 'Hz'
    assert 'time' not in u and 'seq' not in u and set(u) == set(r) - {'time', 'seq'}
    assert ha.parse_command(b'30 00 1c 02 00') == bytes.fromhex('30001c0200')
    assert ha.parse_command(b'{"table": 28}') == bytes.fromhex('30001c0200')
    assert ha.parse_command(b'{"table": 23, "offset": 4, "count": 8}') == \
        bytes.fromhex('3f00170000040008')
    for bad in (b'40000700020102', b'4f0007000000000101', b'zz', b'{"hex": "40000700020102"}'):
        with pytest.raises(ValueError):
            ha.parse_command(bad)


# ---------- against mosquitto ----------
async def test_state_retained_and_discovery(broker, subs):
    logs = []
    cfg = make_cfg(broker.port, mqtt_per_value=True)
    m = make(cfg, logs)
    live = new_sub(subs, broker.port)
    await asyncio.sleep(0.2)
    async with Running(m):
        m.publish_link({'state': 'ok', 'last_error': None, 'counters': {'frames': 3}, 'seq': 9,
                        'pseq': 5})
        m.publish_reading(reading(1))
        assert await live.wait(lambda: live.topics('mep/dev1/state'))
        st = json.loads(live.topics('mep/dev1/state')[0][1])
        assert st['seq'] == 1 and 'units' not in st
        assert json.loads(live.topics('mep/dev1/units')[0][1])['p_in'] == 'W'
        assert await live.wait(lambda: live.topics('mep/dev1/u_l1'))
        assert float(live.topics('mep/dev1/u_l1')[0][1]) == reading(1)['u_l1']
        # a late subscriber gets everything retained
        late = new_sub(subs, broker.port)
        assert await late.wait(lambda: late.topics('mep/dev1/energy/e_in') and
                               late.topics('mep/dev1/link') and late.topics('mep/dev1/status')
                               and late.topics('homeassistant/sensor/mep_12345678/e_in/config')
                               and late.topics('mep/dev1/units'))
        t, p, retain = late.topics('mep/dev1/energy/e_in')[0]
        assert retain and int(p) == 1000010
        assert late.topics('mep/dev1/status')[0][1] == b'online'
        assert json.loads(late.topics('mep/dev1/link')[0][1])['state'] == 'ok'
        assert not late.topics('mep/dev1/state')   # state is not retained
        assert late.topics('mep/dev1/units') and late.topics('mep/dev1/units')[0][2]
        assert m.stats()['connected'] and m.stats()['published'] > 10
        # energy is only re-sent when it changes
        n = len(live.topics('mep/dev1/energy/e_out'))
        m.publish_reading(reading(2))
        assert await live.wait(lambda: len(live.topics('mep/dev1/state')) == 2)
        await asyncio.sleep(0.2)
        assert len(live.topics('mep/dev1/energy/e_out')) == n
        assert len(live.topics('mep/dev1/energy/e_in')) == 2
    # graceful stop: offline
    assert await live.wait(lambda: live.topics('mep/dev1/status')[-1][1] == b'offline')


async def test_last_will_on_abrupt_socket_loss(broker, subs):
    m = make(make_cfg(broker.port))
    s = new_sub(subs, broker.port, 'mep/dev1/status')
    async with Running(m):
        assert await s.wait(lambda: s.msgs and s.msgs[-1][1] == b'online')
        # kill the TCP connection under the client (no DISCONNECT)
        raw = m.c.sock.s
        raw.shutdown(2)
        raw.close()
        assert await s.wait(lambda: any(p == b'offline' for _, p, _ in s.msgs))
        i = [p for _, p, _ in s.msgs].index(b'offline')
        assert await s.wait(lambda: [p for _, p, _ in s.msgs[i:]].count(b'online') >= 1)
        assert m.stats()['reconnects'] >= 1


async def test_broker_restart_drops_oldest_and_never_blocks(broker, subs):
    m = make(make_cfg(broker.port))
    async with Running(m):
        end = time.monotonic() + 5
        while not m.stats()['connected'] and time.monotonic() < end:
            await asyncio.sleep(0.02)
        assert m.stats()['connected']
        broker.stop()
        # readings keep coming while the broker is away (the connect attempts never block
        # the loop: test_broker_that_never_answers_does_not_stall_the_loop counts its turns)
        for seq in range(1, 51):
            m.publish_reading(reading(seq))       # only queues: no I/O, whatever the broker
            await asyncio.sleep(0.03)
        st = m.stats()
        assert not st['connected'] and st['last_error']
        assert st['queued'] == mqtt.QMAX
        assert st['drops'] >= 50 - mqtt.QMAX
        broker.start()
        s = new_sub(subs, broker.port, 'mep/dev1/state')
        assert await s.wait(lambda: any(json.loads(p)['seq'] == 50 for _, p, _ in s.msgs), 10)
        seqs = [json.loads(p)['seq'] for _, p, _ in s.msgs]
        assert min(seqs) > 50 - mqtt.QMAX   # the oldest were dropped
        assert m.stats()['reconnects'] >= 1


async def test_ha_online_reannounces(broker, subs):
    m = make(make_cfg(broker.port))
    got = []
    on_msg = m._on_msg

    def heard(topic, msg):                  # what the client hands the publisher
        got.append(bytes(msg))
        on_msg(topic, msg)
    m._on_msg = heard
    topic = 'homeassistant/sensor/mep_12345678/p_in/config'
    s = new_sub(subs, broker.port, 'homeassistant/sensor/#')
    async with Running(m):
        assert await s.wait(lambda: s.topics(topic))
        assert len(s.topics(topic)) == 1            # one announcement after connecting
        s.publish('homeassistant/status', 'offline')
        assert await s.wait(lambda: b'offline' in got)
        assert not m._announce and m._disc is None  # 'offline' announces nothing
        s.publish('homeassistant/status', 'online')
        assert await s.wait(lambda: len(s.topics(topic)) == 2)


async def test_discovery_off_clears_configs(broker, subs):
    topic = 'homeassistant/sensor/mep_12345678/p_in/config'
    pre = new_sub(subs, broker.port, 'none')
    pre.publish(topic, '{"old": 1}', retain=True)
    m = make(make_cfg(broker.port, ha_discovery=False))
    s = new_sub(subs, broker.port, 'homeassistant/#')
    async with Running(m):
        assert await s.wait(lambda: any(p == b'' for _, p, _ in s.topics(topic)))
        s.publish('homeassistant/status', 'online')
        await asyncio.sleep(0.5)
        assert all(p in (b'', b'{"old": 1}') for t, p, _ in s.msgs if 'config' in t)
        late = new_sub(subs, broker.port, 'homeassistant/#')
        await asyncio.sleep(0.5)
        assert not late.topics(topic)          # nothing retained any more


async def test_custom_prefixes(broker, subs):
    m = make(make_cfg(broker.port, ha_prefix='ha2', mqtt_prefix='meters',
                      mqtt_device_id='kitchen'))
    s = new_sub(subs, broker.port)
    async with Running(m):
        m.publish_reading(reading(1))
        assert await s.wait(lambda: s.topics('ha2/sensor/mep_12345678/e_in/config') and
                            s.topics('meters/kitchen/state'))
        c = json.loads(s.topics('ha2/sensor/mep_12345678/e_in/config')[0][1])
        assert c['availability_topic'] == 'meters/kitchen/status'
        assert not [t for t, _, _ in s.msgs if t.startswith('homeassistant/')]


async def test_discovery_module_is_dropped_once_the_configs_are_out(broker, subs, monkeypatch):
    import sys
    import compat
    monkeypatch.setattr(compat, 'UNLOAD', True)     # as on MicroPython
    monkeypatch.setitem(sys.modules, 'net.ha_discovery', ha_discovery)   # put back afterwards
    m = make(make_cfg(broker.port))
    s = new_sub(subs, broker.port, 'homeassistant/sensor/#')
    async with Running(m):
        assert await s.wait(lambda: s.topics('homeassistant/sensor/mep_12345678/link/config'))
        assert await s.wait(lambda: 'net.ha_discovery' not in sys.modules)
        mine = lambda: [t for t, _, _ in s.msgs if '/mep_12345678/' in t]
        n = len(mine())
        s.publish('homeassistant/status', 'online')       # HA restarted: announce again
        assert await s.wait(lambda: len(mine()) >= 2 * n)
        assert await s.wait(lambda: 'net.ha_discovery' not in sys.modules)


async def test_out_of_memory_drops_one_message_not_the_connection(broker, subs, monkeypatch):
    real = ha.state_payload
    calls = []

    def flaky(r):
        calls.append(r['seq'])
        if r['seq'] == 2:
            raise MemoryError('memory allocation failed, allocating 1160 bytes')
        return real(r)
    monkeypatch.setattr(ha, 'state_payload', flaky)
    m = make(make_cfg(broker.port))
    s = new_sub(subs, broker.port, 'mep/dev1/state')
    async with Running(m):
        for seq in (1, 2, 3):
            m.publish_reading(reading(seq))
            await asyncio.sleep(0.2)
        assert await s.wait(lambda: len(s.msgs) == 2)
        assert [json.loads(p)['seq'] for _, p, _ in s.msgs] == [1, 3]
        st = m.stats()
        assert st['connected'] and st['reconnects'] == 0 and st['drops'] == 1
        assert 'out of memory' in st['last_error']
    assert 2 in calls


async def test_out_of_memory_building_the_packet_or_the_link_state_keeps_the_connection(
        broker, subs, monkeypatch):
    """The largest allocation of a reading is its PUBLISH packet, made in the publisher's step
    (not in the message generator): out of memory there, or while the link state is built,
    drops that message only. No reconnect, and the link state goes out once memory is back."""
    real_packet, real_link = mqtt_wire.publish_packet, ha.link_payload
    fail = {'state': True, 'link': 2}

    def packet(topic, payload, retain=False):
        if topic.endswith('/state') and '"seq": 2' in payload and fail['state']:
            fail['state'] = False
            raise MemoryError('memory allocation failed, allocating 760 bytes')
        return real_packet(topic, payload, retain)

    def link(status):
        if fail['link']:
            fail['link'] -= 1
            raise MemoryError('memory allocation failed, allocating 64 bytes')
        return real_link(status)
    monkeypatch.setattr(mqtt_wire, 'publish_packet', packet)
    monkeypatch.setattr(ha, 'link_payload', link)
    m = make(make_cfg(broker.port))
    s = new_sub(subs, broker.port, 'mep/dev1/#')
    async with Running(m):
        m.publish_link({'link': 'ok', 'last_error': None})
        for seq in (1, 2, 3):
            m.publish_reading(reading(seq))
            await asyncio.sleep(0.2)
        assert await s.wait(lambda: len(s.topics('mep/dev1/state')) == 2)
        assert [json.loads(p)['seq'] for _, p, _ in s.topics('mep/dev1/state')] == [1, 3]
        assert await s.wait(lambda: s.topics('mep/dev1/link'))
        assert json.loads(s.topics('mep/dev1/link')[-1][1])['state'] == 'ok'
        st = m.stats()
        assert st['connected'] and st['reconnects'] == 0 and st['drops'] == 3
        assert 'out of memory' in st['last_error']
    assert fail == {'state': False, 'link': 0}


async def test_changed_ha_prefix_clears_the_old_configs(broker, subs):
    cfg = make_cfg(broker.port, ha_prefix='ha_old')
    m = make(cfg)
    s = new_sub(subs, broker.port)
    old = 'ha_old/sensor/mep_12345678/p_in/config'
    new = 'ha_new/sensor/mep_12345678/p_in/config'
    async with Running(m):
        assert await s.wait(lambda: s.topics(old))
        cfg['ha_prefix'] = 'ha_new'
        m.reconfigure()
        assert await s.wait(lambda: s.topics(new) and any(p == b'' for _, p, _ in s.topics(old)))
        assert json.loads(s.topics(new)[-1][1])['unique_id'] == 'mep_12345678_p_in'
        late = new_sub(subs, broker.port, 'ha_old/#')
        await asyncio.sleep(0.5)
        assert not late.msgs                    # nothing left retained under the old prefix
        later = new_sub(subs, broker.port, 'ha_new/#')
        assert await later.wait(lambda: later.topics(new))


async def test_raw_topic_is_opt_in(broker, subs):
    cfg = make_cfg(broker.port)
    m = make(cfg)
    s = new_sub(subs, broker.port, 'mep/dev1/#')
    async with Running(m):
        m.raw('tx', '000a30001c0200')
        m.publish_reading(reading(1))
        assert await s.wait(lambda: s.topics('mep/dev1/state'))
        await asyncio.sleep(0.2)
        assert not s.topics('mep/dev1/raw')
        cfg['mqtt_raw'] = True
        m.raw('rx', '0003000000')
        assert await s.wait(lambda: s.topics('mep/dev1/raw'))
        d = json.loads(s.topics('mep/dev1/raw')[0][1])
        assert d['dir'] == 'rx' and d['hex'] == '0003000000'


async def test_commands_off_by_default_and_reads_only(broker, subs):
    got = []
    m = make(make_cfg(broker.port), on_command=got.append)
    s = new_sub(subs, broker.port, 'mep/dev1/#')
    async with Running(m):
        assert await s.wait(lambda: s.topics('mep/dev1/status'))
        await asyncio.sleep(0.2)
        s.publish('mep/dev1/cmd', '30001c0200')
        await asyncio.sleep(0.6)
        assert got == [] and not s.topics('mep/dev1/cmd/result')
    m = make(make_cfg(broker.port, mqtt_commands=True), on_command=got.append)
    async with Running(m):
        assert await s.wait(lambda: m.stats()['connected'])
        await asyncio.sleep(0.2)
        s.publish('mep/dev1/cmd', '30001c0200')
        assert await s.wait(lambda: got == [bytes.fromhex('30001c0200')])
        s.publish('mep/dev1/cmd', '40000700020102')            # a write: refused
        s.publish('mep/dev1/cmd', '{"table": 23, "offset": 0, "count": 16}')
        assert await s.wait(lambda: len(s.topics('mep/dev1/cmd/result')) == 3)
        res = [json.loads(p) for _, p, _ in s.topics('mep/dev1/cmd/result')]
        assert [r['ok'] for r in res] == [True, False, True]
        assert 'READ' in res[1]['error']
        assert len(got) == 2 and got[1][0] == 0x3F


async def test_bad_password_is_reported_without_the_secret(subs):
    b = Broker(users={'meter': 'right-one'}).start()
    try:
        logs = []
        m = make(make_cfg(b.port, mqtt_user='meter', mqtt_password=SECRET), logs)
        async with Running(m):
            end = time.monotonic() + 5
            while not m.stats()['last_error'] and time.monotonic() < end:
                await asyncio.sleep(0.02)
        err = m.stats()['last_error']
        assert 'user name or password' in err or 'not authorized' in err
        assert SECRET not in err and not [l for l in logs if SECRET in l]
        assert not m.stats()['connected']
        # and with the right password it connects
        m = make(make_cfg(b.port, mqtt_user='meter', mqtt_password='right-one'))
        async with Running(m):
            end = time.monotonic() + 5
            while not m.stats()['connected'] and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert m.stats()['connected']
    finally:
        b.close()


async def test_disabled_publishes_nothing_and_queues_nothing():
    m = make(make_cfg(1, mqtt_enabled=False))
    async with Running(m):
        m.publish_reading(reading(1))
        await asyncio.sleep(0.1)
        assert m.stats()['queued'] == 0 and not m.stats()['connected']


async def test_alarm_events_published(broker, subs):
    m = make(make_cfg(broker.port))
    s = new_sub(subs, broker.port, 'mep/dev1/alarm')
    async with Running(m):
        m.publish_alarm({'alarm': 0, 'kind': 'power_above', 'state': 'on', 'value': 3500})
        assert await s.wait(lambda: s.msgs)
        assert json.loads(s.msgs[0][1])['kind'] == 'power_above'


def _fake_broker(hold_s=3.0):
    """A thread answering CONNECT and SUBSCRIBE, then sending the first byte of a PUBLISH
    and nothing more - umqtt.simple's check_msg() would then block on a blocking socket."""
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(1)

    def packet(conn):
        head = conn.recv(1)
        if not head:
            return None, b''
        n, shift = 0, 0
        while True:
            b = conn.recv(1)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        body = b''
        while len(body) < n:
            body += conn.recv(n - len(body))
        return head[0], body

    def serve():
        while True:                    # skip the client's TCP reachability probe
            conn, _ = lsock.accept()
            conn.settimeout(5)
            if packet(conn)[0] is not None:
                break
            conn.close()
        lsock.close()                  # reconnects are refused at once
        conn.sendall(b'\x20\x02\x00\x00')
        while True:
            op, body = packet(conn)
            if op == 0x82:
                conn.sendall(b'\x90\x03' + body[:2] + b'\x00')
                break
        time.sleep(0.3)
        conn.sendall(b'\x30')
        time.sleep(hold_s)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return lsock.getsockname()[1]


async def test_half_received_packet_does_not_block_the_loop():
    """The broker sends the first byte of a PUBLISH and nothing more: umqtt's read of the rest
    ends with the client's own time-out (ETIMEDOUT, before the server closes after 3 s), and
    the event loop goes on turning meanwhile (a blocking read would stop it)."""
    port = _fake_broker()
    logs = []
    m = make(make_cfg(port), logs)
    m.io_timeout = 0.25
    turns = [0]

    async def ticker():
        while True:
            turns[0] += 1
            await asyncio.sleep(0.01)
    tick = asyncio.create_task(ticker())
    async with Running(m):
        assert await until(lambda: m.stats()['connected'], 5)
        t0 = turns[0]
        assert await until(lambda: not m.stats()['connected'], 5)
        during = turns[0] - t0
        lost = [l for l in logs if 'connection lost' in l]
        assert lost and 'ETIMEDOUT' in lost[0], logs
    tick.cancel()
    assert during >= 5, during


# ---------- keep-alive, connect time-outs, back-off ----------
async def test_keepalive_pings_while_publishing_and_never_drops(broker, subs):
    """Readings flow all the time (nothing is ever received back for QoS 0): the client must
    still ping (and so hear from the broker) instead of declaring it silent."""
    logs = []
    m = make(make_cfg(broker.port), logs)
    m.keepalive = 2
    s = new_sub(subs, broker.port, 'mep/dev1/state')
    async with Running(m):
        for seq in range(1, 81):                  # 8 s = 4 keep-alive intervals
            m.publish_reading(reading(seq))
            await asyncio.sleep(0.1)
        assert await s.wait(lambda: any(json.loads(p)['seq'] == 80 for _, p, _ in s.msgs))
        st = m.stats()
        assert st['connected'] and st['reconnects'] == 0, (st, logs)
        assert not [l for l in logs if 'lost' in l], logs
    log = broker.read_log()
    assert log.count('Received PINGREQ from mep-dev1') >= 6, log[-2000:]


async def test_an_idle_connection_wakes_the_task_once_per_beat(broker, subs):
    """Connected with nothing to send, the task runs once per beat of its ticker (every
    idle_ms) to look for incoming messages, not on a polling time-out of its own (a 200 ms
    wait_for made five steps a beat); and new work wakes it at once, not at the next beat."""
    m = make(make_cfg(broker.port))
    m.idle_ms = 200                         # beats come fast; the count is what matters
    s = new_sub(subs, broker.port, 'mep/dev1/state')
    steps = [0]
    beats = [0]
    step, ev_set = m._step, m._ev.set

    def counted():
        steps[0] += 1
        return step()

    def beat():
        beats[0] += 1
        ev_set()
    m._step = counted
    m._ev.set = beat                        # when idle only the ticker sets the event
    async with Running(m):
        assert await s.wait(lambda: m.stats()['connected'] and not m._announce
                            and m._disc is None and m._link_sent is None and not m.q)
        assert await s.wait(lambda: steps[0] > 0)
        n0, b0 = steps[0], beats[0]
        assert await s.wait(lambda: beats[0] >= b0 + 10, 20)
        idle, nbeats = steps[0] - n0, beats[0] - b0
        assert nbeats - 1 <= idle <= nbeats + 1, (idle, nbeats)
    # new work wakes the task itself: with no beat at all a reading still goes out
    m = make(make_cfg(broker.port))
    m.idle_ms = 10 ** 7
    m.keepalive = 3600
    async with Running(m):
        assert await s.wait(lambda: m.stats()['connected'] and not m._announce
                            and m._disc is None)
        m.publish_reading(reading(1))
        assert await s.wait(lambda: s.topics('mep/dev1/state'))


def _silent_server(close_at_once=False):
    """Accepts TCP connections and never answers (or closes each one at once); returns
    (port, list of accepted connection times)."""
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(8)
    accepted = []
    held = []

    def serve():
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            if close_at_once:
                conn.close()
            else:
                held.append(conn)
    threading.Thread(target=serve, daemon=True).start()
    return lsock, accepted


def _instrument(m):
    """Counts the event loop's turns during each connect attempt and records the back-offs."""
    turns = [0]
    during = []
    backoffs = []
    class Counted(mqtt_wire.Client):
        async def aconnect(self, *a):
            t0 = turns[0]
            try:
                await super().aconnect(*a)
            finally:
                during.append(turns[0] - t0)
    m.factory = Counted
    backoff = m._backoff

    async def recorded(ms):
        backoffs.append(ms)
        await backoff(ms)
    m._backoff = recorded

    async def ticker():
        while True:
            turns[0] += 1
            await asyncio.sleep(0.01)
    return ticker, during, backoffs


async def test_broker_that_never_answers_does_not_stall_the_loop():
    lsock, accepted = _silent_server()
    logs = []
    m = make(make_cfg(lsock.getsockname()[1]), logs)
    m.connect_timeout = 1
    ticker, during, backoffs = _instrument(m)
    tick = asyncio.create_task(ticker())
    async with Running(m):
        assert await until(lambda: len(backoffs) >= 2, 15)
    tick.cancel()
    lsock.close()
    assert not m.stats()['connected']
    assert 'no CONNACK' in m.stats()['last_error'], logs
    # each attempt waited its second for CONNACK while the loop went on turning (a
    # blocking wait made no turn at all); then the back-off doubles, one attempt each
    assert min(during) >= 5, during
    assert backoffs[:2] == [mqtt.BACKOFF_MIN, 2 * mqtt.BACKOFF_MIN], backoffs
    assert len(accepted) == len(during) <= len(backoffs) + 1, (accepted, during, backoffs)


async def test_connect_failing_at_once_backs_off():
    lsock, accepted = _silent_server(close_at_once=True)
    m = make(make_cfg(lsock.getsockname()[1]))
    ticker, during, backoffs = _instrument(m)
    async with Running(m):
        assert await until(lambda: len(backoffs) >= 3, 20)
    lsock.close()
    assert not m.stats()['connected'] and m.stats()['last_error']
    assert backoffs[:3] == [1000, 2000, 4000], backoffs
    assert len(accepted) == len(during) <= len(backoffs) + 1, (accepted, during, backoffs)


# ---------- what goes out: device id, link state, publish interval ----------
async def test_announced_only_under_the_utility_serial_and_old_id_cleared(broker, subs):
    info = {'manufacturer': 'NES', 'model': 'x', 'mfg_serial': '0099887766'}
    pre = new_sub(subs, broker.port, 'none')
    old = 'homeassistant/sensor/mep_0099887766/p_in/config'
    pre.publish(old, '{"old": 1}', retain=True)      # what an earlier version left behind
    m = mqtt.Mqtt(make_cfg(broker.port), lambda: info, log=lambda s: None)
    s = new_sub(subs, broker.port, 'homeassistant/sensor/#')
    async with Running(m):
        m.publish_reading(reading(1))
        await asyncio.sleep(1.0)
        assert m.stats()['connected']
        assert not [t for t, p, _ in s.msgs if p and 'mep_0099887766' in t and p != b'{"old": 1}']
        assert not [t for t, _, _ in s.msgs if 'mep_12345678' in t]
        info['serial'] = '12345678'                 # ET03 arrived
        assert await s.wait(lambda: s.topics('homeassistant/sensor/mep_12345678/link/config'))
        assert await s.wait(lambda: any(p == b'' for _, p, _ in s.topics(old)))
        ids = {t.split('/')[2] for t, p, _ in s.msgs if p and p != b'{"old": 1}'}
        assert ids == {'mep_12345678'}
    late = new_sub(subs, broker.port, 'homeassistant/sensor/mep_0099887766/#')
    await asyncio.sleep(0.5)
    assert not late.msgs                            # nothing retained under the old id


async def test_link_state_in_words_only_on_change(broker, subs):
    m = make(make_cfg(broker.port))
    s = new_sub(subs, broker.port, 'mep/dev1/link')
    st = {'link': 'starting', 'state': 'wait-first', 'counters': {'retransmits': 0}}
    async with Running(m):
        for i in range(10):
            st = dict(st, state=('wait-first', 'idle', 'send')[i % 3])
            m.publish_link(st)
            await asyncio.sleep(0.05)
        assert await s.wait(lambda: s.msgs)
        m.publish_link(dict(st, link='ok', state='idle'))
        assert await s.wait(lambda: len(s.msgs) == 2)
        for _ in range(5):
            m.publish_link(dict(st, link='ok', state='wait-first'))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    states = [json.loads(p)['state'] for _, p, _ in s.msgs]
    assert states == ['starting', 'ok'], states


async def test_diagnostics_topic(broker, subs):
    sysinfo = {'uptime': 12, 'heap_free': 40000, 'reset_cause': 'power on'}
    m = mqtt.Mqtt(make_cfg(broker.port), lambda: INFO, log=lambda s: None,
                  sys_fn=lambda: sysinfo)
    s = new_sub(subs, broker.port, 'mep/dev1/diag')
    d = new_sub(subs, broker.port, 'homeassistant/sensor/mep_12345678/+/config')
    async with Running(m):
        m.publish_link({'link': 'ok', 'counters': {'retransmits': 3, 'timeouts': 1},
                        'diag': {'turnaround': {'p50': 21, 'p95': 40, 'max': 90}}})
        assert await s.wait(lambda: s.msgs)
        got = json.loads(s.msgs[0][1])
        assert got == {'link': 'ok', 'resends': 3, 'timeouts': 1, 'turn_p50': 21,
                       'turn_p95': 40, 'uptime': 12, 'heap_free': 40000,
                       'reset_cause': 'power on'}
        assert await d.wait(lambda: d.topics('homeassistant/sensor/mep_12345678/uptime/config'))
        keys = {t.split('/')[3] for t, _, _ in d.msgs}
        assert 'rssi' not in keys                   # nobody supplies it here


async def test_publish_interval_thins_out_state_messages(broker, subs):
    m = make(make_cfg(broker.port, mqtt_interval_s=1))
    s = new_sub(subs, broker.port, 'mep/dev1/state')
    async with Running(m):
        for seq in range(1, 31):                    # 3 s of readings at 10/s
            m.publish_reading(reading(seq))
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
    seqs = [json.loads(p)['seq'] for _, p, _ in s.msgs]
    assert 3 <= len(seqs) <= 5, seqs
    assert seqs[0] == 1


async def test_period_energy_topic(broker, subs, tmp_path):
    cfg = make_cfg(broker.port, timezone='Europe/Copenhagen')
    per = ha.Periods(cfg, str(tmp_path / 'periods.json'))
    m = mqtt.Mqtt(cfg, lambda: INFO, log=lambda s: None, periods=per)
    s = new_sub(subs, broker.port, 'mep/dev1/period')
    t0 = 1700002800 - 1       # 2023-11-14 22:59:59 UTC = 23:59:59 local (CET)
    async with Running(m):
        m.publish_reading(dict(reading(0), time=t0, e_in=5000))
        await asyncio.sleep(0.3)
        assert not s.msgs                           # booted mid-period: not known
        m.publish_reading(dict(reading(1), time=t0 + 1, e_in=5001))   # a new local day
        m.publish_reading(dict(reading(2), time=t0 + 61, e_in=5250))
        assert await s.wait(lambda: len(s.msgs) >= 2)
    d = json.loads(s.msgs[-1][1])
    # hour and day began at local midnight (23:00 UTC); the month's start is not known
    assert d == {'h': 250, 'h0': '2023-11-14T23:00:00+00:00',
                 'd': 250, 'd0': '2023-11-14T23:00:00+00:00'}, d
    late = new_sub(subs, broker.port, 'mep/dev1/period')     # retained
    assert await late.wait(lambda: late.msgs)
    assert json.loads(late.msgs[-1][1]) == d


class _CountingSock:
    """A connected socket as the CPython side of mqtt_wire.Stream sees it: records each send."""

    def __init__(self):
        self.sent = []

    def settimeout(self, t):
        pass

    def sendall(self, data):
        self.sent.append(bytes(data))


def test_a_publish_leaves_in_one_write():
    # umqtt writes a PUBLISH in pieces (micropython-lib's: fixed header, topic length,
    # topic, payload): each was a system call and a TCP segment of its own
    s = _CountingSock()
    m = mqtt.Mqtt(make_cfg(1883), lambda: INFO)
    m.c = mqtt_wire.Client('id', '127.0.0.1')
    m.c.sock = mqtt_wire.Stream(s, 0.25)
    m._send('mep/dev1/state', '{"p_in": 5}')
    payload = b'{"p_in": 5}'
    body = b'\x00\x0emep/dev1/state' + payload
    assert s.sent == [bytes((0x30, len(body))) + body]
    assert m.published == 1
    # retained, a payload over 127 bytes (two-byte remaining length), UTF-8, bytes
    big = '{"name": "m\u00e5ler", "pad": "%s"}' % ('x' * 200)
    m._send('mep/dev1/info', big, True)
    enc = big.encode()
    body = b'\x00\x0dmep/dev1/info' + enc
    n = len(body)
    assert n > 127
    assert s.sent[1] == bytes((0x31, (n & 0x7F) | 0x80, n >> 7)) + body
    m._send(b'mep/dev1/raw', b'\x00\x01')
    assert s.sent[2] == b'\x30\x10\x00\x0cmep/dev1/raw\x00\x01'
    assert m.published == 3 and len(s.sent) == 3
