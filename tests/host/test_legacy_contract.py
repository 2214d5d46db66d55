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
import json

from microdot import Microdot
from microdot.test_client import TestClient

from web import legacy_routes, server
from test_legacy import INFO, FW, base_reading

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

    def __init__(self, client):
        self.client = client
        self.data = None
        self.stuck = False
        self.prev_time = None
        self.last_good = 0.0

    async def poll(self, now):
        res = await self.client.get('/getDashDataWS', headers={'Accept': 'application/json'})
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


class Poller:
    def __init__(self):
        self.latest = None
        self.info = INFO
        self.status = {'link': 'ok', 'counters': {}}


class Ctx:
    def __init__(self):
        self.config = {'legacy_public': True}
        self.poller = Poller()
        self.fw_info = FW


def make_client(ctx):
    app = Microdot()
    server.add_routes(app, ctx)
    return TestClient(app)


async def test_503_before_the_first_reading_then_recovery():
    ctx = Ctx()
    ha = OldIntegration(make_client(ctx))
    # boot: no reading yet -> 503, not JSON, with Retry-After; the poll fails, nothing kept
    res = await ha.client.get('/getDashDataWS')
    assert res.status_code == 503
    assert res.headers['Content-Type'].startswith('text/plain')
    assert res.headers.get('Retry-After') == '10'
    for _ in range(3):
        try:
            await ha.poll(0)
            raise AssertionError('a poll without data must fail')
        except PollFailed:
            pass
    assert ha.data is None
    # the first reading: the next poll works and every sensor has its value and unit
    now = legacy_routes.unix_time()
    ctx.poller.latest = base_reading(now)
    assert await ha.poll(10) == 200
    v = ha.sensors()
    assert v['Utility_SN'] == 'UT-0042' and v['Meter_Manufacturer'] == 'NES'
    assert v['Fwd_Act_Wh'] == 12345.678            # kWh
    assert v['L1_RMS_V'] == 230.123 and v['L1_RMS_A'] == 4.35 and v['Freq_mHz'] == 49.987
    assert v['Fwd_W'] == 3456
    assert (v['ESP_SW'], v['ESP_SW_By'], v['ESP_SW_Version']) == \
        ('MEP open firmware', 'someone', '1.2.3')
    assert not ha.problem()


async def test_stale_reading_503_then_recovery_without_reload():
    ctx = Ctx()
    ha = OldIntegration(make_client(ctx))
    now = legacy_routes.unix_time()
    ctx.poller.latest = base_reading(now)
    assert await ha.poll(0) == 200
    first = ha.sensors()
    ha.problem()
    # the meter falls silent: after 600 s without a reading the endpoint answers 503
    ctx.poller.latest = base_reading(now - 601)
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
    r = base_reading(legacy_routes.unix_time() + 1)
    r['e_in'] += 5.0
    ctx.poller.latest = r
    assert await ha.poll(70) == 200
    v = ha.sensors()
    assert ha.data['Fwd_Act_Wh'] == 12345683
    assert not ha.stuck and not ha.problem()


async def test_every_answer_passes_the_consumers_checks():
    """A run of readings: each accepted (3 W rule, energy growth), CurrentDateTime changes."""
    ctx = Ctx()
    ha = OldIntegration(make_client(ctx))
    t0 = legacy_routes.unix_time() - 100
    for i in range(20):
        r = base_reading(t0 + i)
        r['e_in'] += i * 2.5
        r['p_in_l2'] += i * 7.3                      # phases no longer add up to the total
        ctx.poller.latest = r
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
