# A real Home Assistant (pinned in tests/ha/requirements.txt, its own virtualenv .venv-ha
# made by tests/ha/setup.sh with a Python 3.13) against a real mosquitto and the firmware
# on this PC with the meter simulator (tools/host_run.py). One scenario, in order:
#   1. the meter appears as exactly one device, every entity with the expected unit,
#      device_class and state_class; still one device after two firmware restarts
#   2. MEP_HA_RUN_S (75) seconds of readings every second: no entity of the meter goes
#      unavailable and the firmware keeps its one MQTT connection. The live values expire
#      after 30 s, so the run spans more than two of their windows; the diagnostics expire
#      after 210 s and come once a minute: the run sees one arrive and the gap between two
#      is less than their expiry
#   3. Home Assistant restarts: the firmware announces again (live, not only retained)
#   4. the broker restarts: what Home Assistant shows, and that it recovers
#   5. the Energy dashboard (grid import/export = the meter's counters, set up before 2.)
#      validates clean, and so do the recorder's statistics. They exist after the recorder's
#      first 5-minute compile, which steps 2 to 4 mostly wait out
#   6. the meter falls silent: live values go unavailable within expire_after, the energy
#      counters stay, the link sensor says so in words
# Numbers (reconnects per hour, times) are printed for the record (pytest -s).
# Without a Python 3.13 for Home Assistant the test fails (it is never skipped).
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import paho.mqtt.client as paho
import pytest

from mqtt_broker import Broker, free_port, mosquitto_path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HA_VENV = os.environ.get('MEP_HA_VENV') or os.path.join(ROOT, '.venv-ha')
HA_PY = os.path.join(HA_VENV, 'bin', 'python')
HACTL = os.path.join(ROOT, 'tests', 'ha', 'hactl.py')
RUN_S = float(os.environ.get('MEP_HA_RUN_S', '75'))     # the no-flapping run
LIVE_EXPIRE_S, DIAG_EXPIRE_S = 30, 210      # net/ha_discovery.py: expire_after

# key -> (device_class, unit, state_class) as Home Assistant must show them
EXPECT = {
    'e_in': ('energy', 'kWh', 'total_increasing'),
    'e_out': ('energy', 'kWh', 'total_increasing'),
    'eq_in': (None, 'kvarh', 'total_increasing'),
    'eq_out': (None, 'kvarh', 'total_increasing'),
    'e_h': ('energy', 'kWh', 'total'),
    'e_d': ('energy', 'kWh', 'total'),
    'e_m': ('energy', 'kWh', 'total'),
    'p_in': ('power', 'W', 'measurement'),
    'p_out': ('power', 'W', 'measurement'),
    'q_in': ('reactive_power', 'var', 'measurement'),
    'q_out': ('reactive_power', 'var', 'measurement'),
    's': ('apparent_power', 'VA', 'measurement'),
    'pf': ('power_factor', None, 'measurement'),
    'freq': ('frequency', 'Hz', 'measurement'),
    'last_reading': ('timestamp', None, None),
    'link': (None, None, None),
    'uptime': ('duration', 's', 'total_increasing'),
    'heap_free': ('data_size', 'B', 'measurement'),
    'rssi': ('signal_strength', 'dBm', 'measurement'),
    'reset_cause': (None, None, None),
    'resends': (None, None, 'total_increasing'),
    'timeouts': (None, None, 'total_increasing'),
    'turn_p50': ('duration', 'ms', 'measurement'),
    'turn_p95': ('duration', 'ms', 'measurement'),
}
for _ph in ('l1', 'l2', 'l3'):
    EXPECT['p_in_' + _ph] = ('power', 'W', 'measurement')
    EXPECT['p_out_' + _ph] = ('power', 'W', 'measurement')
    EXPECT['u_' + _ph] = ('voltage', 'V', 'measurement')
    EXPECT['i_' + _ph] = ('current', 'A', 'measurement')
    EXPECT['pf_' + _ph] = ('power_factor', None, 'measurement')
# what every meter must have (diagnostics depend on what the platform can tell)
REQUIRED = set(EXPECT) - {'rssi', 'heap_free', 'turn_p50', 'turn_p95', 'resends', 'timeouts'}
LIVE = [k for k in EXPECT if EXPECT[k][2] == 'measurement' and k not in
        ('rssi', 'heap_free', 'turn_p50', 'turn_p95')]


def ha_python():
    """The Home Assistant venv's python, made by tests/ha/setup.sh if missing. No Python
    3.13 -> the test fails with the reason."""
    if not os.path.exists(os.path.join(HA_VENV, '.dev-stamp')):
        r = subprocess.run(['bash', os.path.join(ROOT, 'tests', 'ha', 'setup.sh'), HA_VENV],
                           capture_output=True, text=True)
        if r.returncode == 3:
            pytest.fail('Home Assistant test NOT RUN: ' + r.stderr.strip(), pytrace=False)
        if r.returncode != 0:
            pytest.fail('tests/ha/setup.sh failed:\n' + (r.stdout + r.stderr)[-3000:],
                        pytrace=False)
    return HA_PY


def wait(cond, timeout, step=0.5, what=''):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    v = cond()
    assert v, 'timed out (%ds): %s' % (timeout, what)
    return v


class HomeAssistant:
    def __init__(self, py, work, broker_port):
        self.py = py
        self.dir = os.path.join(work, 'ha')
        self.port = free_port()
        self.url = 'http://127.0.0.1:%d' % self.port
        self.broker_port = broker_port
        self.proc = None
        self.token = None
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, 'configuration.yaml'), 'w') as f:
            f.write('\n'.join((
                'homeassistant:',
                '  name: MEP test',
                '  latitude: 55.68', '  longitude: 12.57', '  elevation: 10',
                '  unit_system: metric', '  time_zone: Europe/Copenhagen',
                '  currency: DKK', '  country: DK', '  language: en',
                'http:', '  server_host: 127.0.0.1', '  server_port: %d' % self.port,
                'recorder:', '  commit_interval: 1',
                'history:', 'energy:', 'config:',
                'logger:', '  default: warning', '')))
        self.log_path = os.path.join(self.dir, 'ha.out')

    def start(self):
        self.log = open(self.log_path, 'a')
        self.proc = subprocess.Popen(
            [self.py, '-m', 'homeassistant', '-c', self.dir, '--skip-pip',
             '--log-no-color'], stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

        def up():
            assert self.proc.poll() is None, 'Home Assistant exited:\n' + self.tail()
            try:
                with socket.create_connection(('127.0.0.1', self.port), 0.5):
                    pass
            except OSError:
                return False
            import urllib.request
            try:
                with urllib.request.urlopen(self.url + '/api/onboarding', timeout=5) as r:
                    return r.status == 200
            except Exception as e:
                return getattr(e, 'code', None) in (200, 401)
        wait(up, 240, 1, 'Home Assistant HTTP')

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def tail(self, n=4000):
        try:
            with open(self.log_path) as f:
                return f.read()[-n:]
        except OSError:
            return ''

    def ctl(self, *args, timeout=60):
        r = subprocess.run([self.py, HACTL] + [str(a) for a in args], capture_output=True,
                           text=True, timeout=timeout)
        assert r.returncode == 0, 'hactl %s: %s' % (args[0], r.stderr[-3000:])
        return json.loads(r.stdout)

    def ws(self, *msgs):
        with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
            json.dump(list(msgs), f)
        try:
            res = self.ctl('ws', self.url, self.token, f.name)
        finally:
            os.unlink(f.name)
        for r in res:
            assert r.get('success'), r
        return [r['result'] for r in res]

    def onboard(self):
        self.token = self.ctl('onboard', self.url)['token']
        flow = self.ctl('mqtt', self.url, self.token, '127.0.0.1', self.broker_port)
        assert flow.get('type') == 'create_entry', flow

    def login(self):
        self.token = self.ctl('token', self.url)['token']

    def meter(self):
        """(devices of our meters, {key: entity registry entry}, {entity_id: state})."""
        devs, ents, states = self.ws({'type': 'config/device_registry/list'},
                                     {'type': 'config/entity_registry/list'},
                                     {'type': 'get_states'})
        ours = [d for d in devs if any(i[0] == 'mqtt' and i[1].startswith('mep_')
                                       for i in d['identifiers'])]
        by_key = {}
        for e in ents:
            if e['platform'] == 'mqtt' and (e.get('unique_id') or '').startswith('mep_'):
                node = e['unique_id']
                by_key.setdefault(e['device_id'], {})[node] = e
        st = {s['entity_id']: s for s in states}
        return ours, by_key, st


class Firmware:
    """The firmware on this PC (tools/host_run.py) and the meter simulator, which keeps
    running while the firmware restarts (a meter does not restart with its module)."""

    def __init__(self, work, broker_port):
        self.data = os.path.join(work, 'fw')
        self.broker_port = broker_port
        self.control = free_port()
        self.meter_port = free_port()
        self.proc = None
        self.sim_proc = None
        self.out_path = os.path.join(work, 'fw.out')
        self.starts = 0

    def start_meter(self):
        from apphost import write_config, DEMO_MBK
        os.makedirs(self.data, exist_ok=True)
        write_config(self.data, fast_mode=False)
        self.sim_out = open(os.path.join(os.path.dirname(self.data), 'sim.out'), 'a')
        self.sim_proc = subprocess.Popen(
            [sys.executable, '-m', 'tools.mepsim', '--tcp', '127.0.0.1:%d' % self.meter_port,
             '--no-stdin', '--control', '127.0.0.1:%d' % self.control],
            cwd=ROOT, stdout=self.sim_out, stderr=subprocess.STDOUT,
            env=dict(os.environ, MEPSIM_MBK=DEMO_MBK), start_new_session=True)

        def up():
            try:
                socket.create_connection(('127.0.0.1', self.control), 0.5).close()
                return True
            except OSError:
                return False
        wait(up, 15, 0.2, 'meter simulator')

    def start(self):
        if self.sim_proc is None:
            self.start_meter()
        self.out = open(self.out_path, 'a')
        self.out.write('=== start %d\n' % self.starts)
        self.out.flush()
        self.starts += 1
        self.proc = subprocess.Popen(
            [sys.executable, '-u', os.path.join(ROOT, 'tools', 'host_run.py'),
             '--http-port', '0', '--data-dir', self.data, '--quiet',
             '--mep', '127.0.0.1:%d' % self.meter_port, '--no-sim',
             '--mqtt', '127.0.0.1:%d' % self.broker_port],
            cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)

    def close(self):
        self.stop()
        if self.sim_proc is not None and self.sim_proc.poll() is None:
            self.sim_proc.terminate()
            try:
                self.sim_proc.wait(5)
            except subprocess.TimeoutExpired:
                self.sim_proc.kill()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def text(self):
        with open(self.out_path) as f:
            return f.read()

    def sim(self, line):
        with socket.create_connection(('127.0.0.1', self.control), 5) as s:
            s.sendall((line + '\n').encode())
            return s.makefile().readline().strip()


class ConfigSpy:
    """Counts discovery configs of our meter as they arrive (retained or live)."""

    def __init__(self, port):
        self.msgs = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id='spy-' + uuid.uuid4().hex)
        self.c.on_message = lambda c, u, m: self.msgs.append((time.time(), m.topic,
                                                              m.retain, len(m.payload)))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe('homeassistant/sensor/+/+/config')
        self.c.reconnect_delay_set(0.2, 1)
        self.c.connect('127.0.0.1', port)
        self.c.loop_start()

    def live_since(self, t, node):
        return [m for m in self.msgs if m[0] >= t and not m[2] and m[3] and
                m[1].split('/')[2] == node]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def read_watch(path):
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def check_entities(ha, report):
    devs, by_dev, st = ha.meter()
    assert len(devs) == 1, [d['identifiers'] for d in devs]
    dev = devs[0]
    ents = by_dev.get(dev['id'], {})
    node = [i[1] for i in dev['identifiers'] if i[0] == 'mqtt'][0]
    keys = {}
    for uid, e in ents.items():
        assert uid.startswith(node + '_'), uid
        keys[uid[len(node) + 1:]] = e
    missing = REQUIRED - set(keys)
    assert not missing, 'not created: %s' % sorted(missing)
    unknown = set(keys) - set(EXPECT)
    assert not unknown, 'unexpected entities: %s' % sorted(unknown)
    for k, e in keys.items():
        s = st.get(e['entity_id'])
        assert s is not None, e['entity_id']
        a = s['attributes']
        got = (a.get('device_class'), a.get('unit_of_measurement'), a.get('state_class'))
        assert got == EXPECT[k], (k, got, EXPECT[k])
        if k in ('link', 'uptime', 'heap_free', 'reset_cause', 'resends', 'timeouts',
                 'rssi', 'turn_p50', 'turn_p95'):
            assert e.get('entity_category') == 'diagnostic', k
    report['device'] = {'name': dev['name'], 'identifiers': dev['identifiers'],
                        'manufacturer': dev['manufacturer'], 'model': dev['model'],
                        'configuration_url': dev.get('configuration_url')}
    report['entities'] = len(keys)
    report['entity_keys'] = sorted(keys)
    return node, {k: e['entity_id'] for k, e in keys.items()}


@pytest.fixture
def work():
    """Working directory (HA config, logs, firmware data); MEP_KEEP_HA=1 keeps it."""
    d = tempfile.mkdtemp(prefix='mep-ha-')
    yield d
    if not os.environ.get('MEP_KEEP_HA'):
        import shutil
        shutil.rmtree(d, ignore_errors=True)


def test_real_home_assistant(work):
    py = ha_python()
    assert mosquitto_path(), 'mosquitto is not installed (./dev setup installs it)'
    report = {'step_s': {}}
    t_start = time.monotonic()

    def mark(step):
        """Seconds from the start to the end of each step, for the record."""
        report['step_s'][step] = round(time.monotonic() - t_start)
    broker = Broker().start()
    ha = HomeAssistant(py, work, broker.port)
    fw = Firmware(work, broker.port)
    spy = watcher = None
    try:
        ha.start()
        ha.onboard()
        mark('ha up')
        watch_path = os.path.join(work, 'watch.jsonl')
        watcher = subprocess.Popen([py, HACTL, 'watch', ha.url, ha.token, watch_path],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        spy = ConfigSpy(broker.port)
        fw.start()

        # 1. one device, every entity right; two firmware restarts change nothing
        def ready():
            devs, by_dev, st = ha.meter()
            if not devs:
                return False
            ents = by_dev.get(devs[0]['id'], {})
            return len(ents) >= len(REQUIRED) and all(
                st.get(e['entity_id'], {}).get('state') not in (None, 'unavailable', 'unknown')
                for uid, e in ents.items() if uid.endswith(('_p_in', '_e_in')))
        wait(ready, 120, 1, 'the meter in Home Assistant\n' + fw.text()[-2000:])
        node, ids = check_entities(ha, report)
        for _ in range(2):
            fw.stop()
            t_r = time.time()
            fw.start()
            # announced again by the new start (live), and Home Assistant shows its readings
            wait(lambda: len(spy.live_since(t_r, node)) >= len(ids), 60, 1,
                 're-announce after the firmware restart')
            wait(lambda: ha.meter()[2].get(ids['p_in'], {}).get('last_updated', '') >
                 time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t_r)), 60, 1,
                 'readings after restart')
            assert check_entities(ha, report)[0] == node
        assert node.startswith('mep_UTIL-'), node       # the utility serial, from the start
        configs = {m[1].split('/')[2] for m in spy.msgs if m[3]}
        assert configs == {node}, configs                 # never under another id
        mark('1 device and restarts')

        # the Energy dashboard set up now: its validation (5.) needs the recorder's first
        # 5-minute statistics compile, which the steps between wait out
        ha.ws({'type': 'energy/save_prefs', 'energy_sources': [{
            'type': 'grid', 'cost_adjustment_day': 0,
            'flow_from': [{'stat_energy_from': ids['e_in'], 'stat_cost': None,
                           'entity_energy_price': None, 'number_energy_price': None}],
            'flow_to': [{'stat_energy_to': ids['e_out'], 'stat_compensation': None,
                         'entity_energy_price': None, 'number_energy_price': None}]}],
            'device_consumption': []})

        # 2. readings every second: nothing goes unavailable, one connection
        connects0 = fw.text().count('mqtt: connected')
        t0 = time.time()
        time.sleep(RUN_S)
        t1 = time.time()
        mine = set(ids.values())
        flaps = [w for w in read_watch(watch_path)
                 if t0 <= w['t'] <= t1 and w.get('e') in mine and w['new'] == 'unavailable']
        reconnects = fw.text().count('mqtt: connected') - connects0
        lost = re.findall(r'mqtt: connection lost.*', fw.text())
        report['run_s'] = round(t1 - t0)
        report['reconnects_per_hour'] = reconnects * 3600 / (t1 - t0)
        changes = [w for w in read_watch(watch_path)
                   if t0 <= w['t'] <= t1 and w.get('e') == ids['p_in']]
        report['p_in_updates_per_s'] = round(len(changes) / (t1 - t0), 2)
        assert not flaps, flaps[:10]
        assert reconnects == 0, lost
        assert len(changes) > (t1 - t0) * 0.3, 'readings did not reach Home Assistant'
        assert RUN_S >= 2 * LIVE_EXPIRE_S, 'MEP_HA_RUN_S shorter than two expiry windows'
        # the diagnostics come once a minute, well inside their expiry
        diag = sorted(w['t'] for w in read_watch(watch_path)
                      if w.get('e') == ids['uptime'] and w['t'] <= t1)
        report['diag_updates'] = len([t for t in diag if t >= t0])
        assert report['diag_updates'] >= 1, 'no diagnostics during the run'
        gaps = [b - a for a, b in zip(diag, diag[1:])]
        report['diag_gap_max_s'] = round(max(gaps), 1) if gaps else None
        assert gaps and max(gaps) < DIAG_EXPIRE_S, gaps
        mark('2 run')

        # 3. Home Assistant restarts: the configs are sent again, live
        ha.stop()
        t_restart = time.time()
        ha.start()
        ha.login()
        watcher.kill()
        watcher.wait(5)
        watcher = subprocess.Popen([py, HACTL, 'watch', ha.url, ha.token, watch_path],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        wait(lambda: len(spy.live_since(t_restart, node)) >= len(ids), 60, 1,
             're-announce after the Home Assistant restart')
        wait(lambda: all(ha.meter()[2].get(ids[k], {}).get('state') not in
                         (None, 'unavailable', 'unknown') for k in ('p_in', 'e_in', 'link')),
             60, 1, 'values after the Home Assistant restart')
        assert check_entities(ha, report)[0] == node
        report['ha_restart_reannounced'] = len(spy.live_since(t_restart, node))
        mark('3 ha restart')

        # nothing Home Assistant complained about so far (templates, units, state classes,
        # counters going backwards, ...)
        complaints = [l for l in ha.tail(10 ** 7).splitlines()
                      if re.search(r' (WARNING|ERROR) .*homeassistant\.(components\.(mqtt|sensor|'
                                   r'energy|recorder)|helpers\.(template|entity))', l)]
        assert not complaints, complaints[:10]

        # 4. the broker restarts (without persistence: retained messages are gone)
        time.sleep(3)
        t_b = time.time()
        broker.stop()
        time.sleep(5)
        broker.start()

        def back():
            st = ha.meter()[2]
            return all(st.get(ids[k], {}).get('state') not in
                       (None, 'unavailable', 'unknown') for k in ('p_in', 'e_in', 'link'))
        wait(back, 120, 1, 'values after the broker restart\n' + fw.text()[-1500:])
        t_back = time.time()
        seen = read_watch(watch_path)
        during = sorted({w['new'] for w in seen if t_b <= w['t'] <= t_back and
                         w.get('e') == ids['p_in']})
        report['broker_restart'] = {'p_in_states_seen': during,
                                    'recovered_after_s': round(t_back - t_b - 5, 1)}
        mark('4 broker restart')

        # 5. Energy dashboard and statistics validation (statistics exist after the first
        # 5-minute compile; wait for what is left of it)
        def energy_clean():
            v = ha.ws({'type': 'energy/validate'})[0]
            report['energy_validate'] = v
            return all(not issues for issues in v['energy_sources']) and \
                all(not issues for issues in v['device_consumption'])
        wait(energy_clean, 330, 10, 'energy validation: %r' % report.get('energy_validate'))
        stats = ha.ws({'type': 'recorder/validate_statistics'})[0]
        ours = {k: v for k, v in stats.items() if k in mine}
        assert not ours, ours
        mark('5 energy and statistics')

        # 6. the meter falls silent
        time.sleep(3)
        assert fw.sim('fault silence 100000').startswith('ok'), 'simulator control'
        t_s = time.time()

        def silent():
            st = ha.meter()[2]
            return all(st.get(ids[k], {}).get('state') == 'unavailable' for k in LIVE)
        wait(silent, 2 * LIVE_EXPIRE_S, 1, 'live values unavailable after the meter fell silent')
        t_unav = time.time() - t_s
        st = ha.meter()[2]
        report['silence'] = {
            'live_unavailable_after_s': round(t_unav, 1),
            'e_in': st[ids['e_in']]['state'], 'last_reading': st[ids['last_reading']]['state'],
            'link': wait(lambda: ha.meter()[2][ids['link']]['state'] != 'ok' and
                         ha.meter()[2][ids['link']]['state'], 60, 1, 'link state')}
        float(report['silence']['e_in'])                  # the counter stays, a number
        assert report['silence']['last_reading'] not in ('unavailable', 'unknown')
        assert report['silence']['link'] in ('no answer', 'starting'), report['silence']
        mark('6 silence')
    finally:
        print('\nHOME ASSISTANT REPORT ' + json.dumps(report, indent=1, default=str))
        print('logs: %s (kept with MEP_KEEP_HA=1)' % work)
        if spy is not None:
            spy.close()
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
        fw.close()
        ha.stop()
        broker.close()
