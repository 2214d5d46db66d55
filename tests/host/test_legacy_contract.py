# Contract of GET /getDashDataWS with the original Home Assistant integration for the MEP
# module (jnxxx/homeassistant-dabblerdk_powermeterreader). What it expects, as read from its
# public source and restated here as a small model of the consumer:
# - it polls with "Accept: application/json" and decodes the body with aiohttp's json(),
#   which refuses any Content-Type but application/json: such a poll fails, nothing kept;
# - the status code is not looked at: the first JSON body it decodes becomes its data
#   (and is what it keeps answering from); a JSON error object there is fatal until the
#   integration is reloaded (every sensor then fails with KeyError);
# - later bodies replace the data only when Fwd_Act_Wh is an int that did not decrease
#   (nor jump by more than 3 x 16 A x 3 x 230 V for the time since the last good poll,
#   at least a minute) and Fwd_W - Rev_W equals the sum over L1..L3 of Lx_Fwd_W - Lx_Rev_W
#   within 3 W; otherwise it keeps the previous data ("sticking");
# - sensors: int(value) of Fwd_Act_Wh / Rev_Act_Wh (Wh -> kWh), Lx_RMS_V (mV -> V),
#   Lx_RMS_A (mA -> A), Fwd_W / Rev_W / Lx_Fwd_W / Lx_Rev_W (W), Freq_mHz (mHz -> Hz);
#   Utility_SN is part of every unique id; Meter_Manufacturer, Meter_Model,
#   Meter_SW_Version, ESP_SW, ESP_SW_By, ESP_SW_Version name the devices; a "problem"
#   binary sensor turns on when CurrentDateTime did not change since the previous poll.
#
# The endpoint is the real App's (firmware/app.py with web.server.create_app), its MEP link on
# the in-process meter simulator (web_helpers.AppOnSim).
import json

from microdot import Microdot
from microdot.test_client import TestClient

from web import legacy
from compat import unix_time
from tools.mepsim.meter import Meter
from web.server import create_app
from web_helpers import AppOnSim, MBK
from test_legacy import INFO, base_reading, wait_new_reading

INT_SENSORS = {'Fwd_Act_Wh': 1000, 'Rev_Act_Wh': 1000, 'Fwd_W': 1, 'Rev_W': 1,
               'Freq_mHz': 1000}
for _p in ('L1', 'L2', 'L3'):
    INT_SENSORS.update({_p + '_RMS_V': 1000, _p + '_RMS_A': 1000, _p + '_Fwd_W': 1,
                        _p + '_Rev_W': 1})
NAME_KEYS = ('Utility_SN', 'Meter_Manufacturer', 'Meter_Model', 'Meter_SW_Version', 'ESP_SW',
             'ESP_SW_By', 'ESP_SW_Version')


class PollFailed(Exception):
    pass


class OldIntegration:
    """The consumer's behaviour as described above (a model, not its code)."""

    def __init__(self, client, path='/getDashDataWS'):
        self.client = client
        self.path = path
        self.data = None
        self.stuck = False
        self.prev_time = None
        self.last_good = 0.0

    async def poll(self, now):
        res = await self.client.get(self.path, headers={'Accept': 'application/json'})
        ctype = (res.headers.get('Content-Type') or '').split(';')[0].strip().lower()
        if ctype != 'application/json':
            raise PollFailed('%d %s' % (res.status_code, ctype))
        new = json.loads(res.text)
        self.stuck = False
        if self.data is None:
            self.data = new
            self.last_good = now
            return res.status_code
        energy = new['Fwd_Act_Wh']
        if not isinstance(energy, int):
            self.stuck = True
            return res.status_code
        limit = 16 * 3 * 230 / 3600 * 3 * max(60.0, now - self.last_good)
        diff = energy - self.data['Fwd_Act_Wh']
        if 0 <= diff <= limit or now - self.last_good > 1800:
            phases = sum(new[p + '_Fwd_W'] - new[p + '_Rev_W'] for p in ('L1', 'L2', 'L3'))
            if abs((new['Fwd_W'] - new['Rev_W']) - phases) <= 3:
                self.data = new
                self.last_good = now
                return res.status_code
        self.stuck = True
        return res.status_code

    def sensors(self):
        """Every sensor value, as the integration computes it (raises like it would)."""
        d = self.data
        out = {k: int(d[k]) / div for k, div in INT_SENSORS.items()}
        for k in NAME_KEYS:
            out[k] = d[k]
        return out

    def problem(self):
        if self.data is None:
            return True
        changed = self.data['CurrentDateTime'] != self.prev_time
        self.prev_time = self.data['CurrentDateTime']
        return not changed or self.stuck


def fw_names():
    fw = legacy.FW_INFO               # what the App names itself (it sets no other)
    return fw['name'], fw['by'], fw['version']


def public_app(tmp_path):
    """The real App (not started) with "Legacy endpoints without login" on, as a user of the
    original integration sets it, and a test client of its web app."""
    run = AppOnSim(str(tmp_path))
    errs = run.app.config.update({'legacy_public': True})
    assert not errs, errs
    return run, TestClient(create_app(run.app), host='mep-test')


async def test_503_before_the_first_reading_then_recovery(tmp_path):
    """The App on the simulator, polled through the private address (no login): no JSON
    before its first reading, then every sensor from the meter's values, reading after
    reading."""
    meter = Meter(key=MBK)
    meter.model.set(p1=1000, p2=1200, p3=-1256, u1=230.123, freq=49.987, e_in=12345678)
    run = AppOnSim(str(tmp_path), meter=meter).start()
    try:
        assert run.app.config['legacy_public'] is False
        path = '/%s/getDashDataWS' % run.app.config['legacy_token']
        ha = OldIntegration(TestClient(create_app(run.app), host='mep-test'), path)
        # boot: no reading yet -> 503, not JSON, with Retry-After; the poll fails, nothing kept
        res = await ha.client.get(path)
        assert res.status_code == 503
        assert res.headers['Content-Type'].startswith('text/plain')
        assert res.headers.get('Retry-After') == '10'
        for _ in range(3):
            try:
                await ha.poll(0)
                raise AssertionError('a poll without data must fail')
            except PollFailed:
                pass
        assert run.app.poller.latest is None           # those polls were before a reading
        assert ha.data is None
        # the first reading: the next poll works and every sensor has its value and unit
        assert await run.wait_reading() is not None
        assert await ha.poll(10) == 200
        v = ha.sensors()
        assert v['Utility_SN'] == meter.model.utility_serial and v['Meter_Manufacturer'] == 'NES'
        assert v['Meter_Model'] == '83334-3I' and v['Meter_SW_Version'] == '4.38'
        assert v['Fwd_Act_Wh'] >= 12345.678            # kWh
        assert v['L1_RMS_V'] == 230.123 and v['Freq_mHz'] == 49.987
        assert v['L1_Fwd_W'] == 1000 and v['L3_Rev_W'] == 1256
        assert (v['Fwd_W'], v['Rev_W']) == (2200, 1256)
        assert 0 < v['L1_RMS_A'] < 100
        assert (v['ESP_SW'], v['ESP_SW_By'], v['ESP_SW_Version']) == fw_names()
        assert not ha.problem()
        # the next readings: each accepted (3 W rule, energy growth), the time moving on
        for i in range(3):
            await wait_new_reading(run)
            assert await ha.poll(70 + i * 2.0) == 200
            assert not ha.stuck, (i, ha.data)
            assert not ha.problem(), i
            assert ha.sensors()['Fwd_Act_Wh'] >= v['Fwd_Act_Wh']
    finally:
        run.stop()


async def test_stale_reading_503_then_recovery_without_reload(tmp_path):
    run, c = public_app(tmp_path)
    run.app.poller.info.update(INFO)
    ha = OldIntegration(c)
    now = unix_time()
    run.app.poller.latest = base_reading(now)
    assert await ha.poll(0) == 200
    first = ha.sensors()
    assert first['Utility_SN'] == 'UT-0042' and first['Fwd_Act_Wh'] == 12345.678
    assert first['L1_RMS_A'] == 4.35 and first['Freq_mHz'] == 49.987
    assert (first['ESP_SW'], first['ESP_SW_By'], first['ESP_SW_Version']) == fw_names()
    ha.problem()
    # the meter falls silent: after 600 s without a reading the endpoint answers 503
    run.app.poller.latest = base_reading(now - 601)
    res = await ha.client.get('/getDashDataWS')
    assert res.status_code == 503 and res.headers['Content-Type'].startswith('text/plain')
    for t in (2, 4):
        try:
            await ha.poll(t)
            raise AssertionError('a stale answer must fail the poll')
        except PollFailed:
            pass
    assert ha.sensors() == first                     # the old data is kept, not replaced
    # readings again: the very next poll takes the new data, no KeyError, no reload
    r = base_reading(unix_time() + 1)
    r['e_in'] += 5.0
    run.app.poller.latest = r
    assert await ha.poll(70) == 200
    ha.sensors()
    assert ha.data['Fwd_Act_Wh'] == 12345683
    assert not ha.stuck and not ha.problem()


async def test_every_answer_passes_the_consumers_checks(tmp_path):
    """A run of readings: each accepted (3 W rule, energy growth), CurrentDateTime changes."""
    run, c = public_app(tmp_path)
    run.app.poller.info.update(INFO)
    ha = OldIntegration(c)
    t0 = unix_time() - 100
    for i in range(20):
        r = base_reading(t0 + i)
        r['e_in'] += i * 2.5
        r['p_in_l2'] += i * 7.3                      # phases no longer add up to the total
        run.app.poller.latest = r
        assert await ha.poll(i * 2.0) == 200
        assert not ha.stuck, (i, ha.data)
        assert not ha.problem(), i
        assert isinstance(ha.data['Fwd_Act_Wh'], int)


async def test_the_model_catches_a_json_503():
    """The model is strict enough to fail: a JSON error body at boot breaks the consumer
    for good, as it did with the original integration."""
    async def json_503(request):
        return {'error': 'no meter reading yet'}, 503
    app = Microdot()
    app.route('/getDashDataWS')(json_503)
    ha = OldIntegration(TestClient(app))
    assert await ha.poll(0) == 503                   # decoded and kept
    try:
        ha.sensors()
        raise AssertionError('the consumer should be broken now')
    except KeyError as e:
        assert e.args[0] in INT_SENSORS or e.args[0] in NAME_KEYS
