# /getDashDataWS: every key, type and unit; the 3 W rule; the time fields; the route.
import calendar
import datetime
import json
import random
import re

import pytest
from microdot import Microdot
from microdot.test_client import TestClient

import legacy
from mep.reading import FIELDS
from web import legacy_routes, server

INFO = {'manufacturer': 'NES ', 'model': '83334-3I', 'fw': '4.4', 'hw': '1.2',
        'serial': 'UT-0042', 'mfg_serial': '9988'}
FW = {'name': 'MEP open firmware', 'by': 'someone', 'version': '1.2.3'}

INT_KEYS = ['Fwd_Act_Wh', 'Rev_Act_Wh', 'Fwd_W', 'Rev_W', 'Freq_mHz', 'Fwd_Avg_W', 'Rev_Avg_W']
for _p in ('L1', 'L2', 'L3'):
    INT_KEYS += [_p + '_Fwd_W', _p + '_Rev_W', _p + '_RMS_V', _p + '_RMS_A',
                 _p + '_Fwd_Avg_W', _p + '_Rev_Avg_W']
STR_KEYS = ['Utility_SN', 'Meter_Manufacturer', 'Meter_Model', 'Meter_SW_Version', 'ESP_SW',
            'ESP_SW_By', 'ESP_SW_Version', 'CurrentDateTime', 'CurrentDateTimeString']


def base_reading(t=1717243200):
    r = {'time': t, 'seq': 1}
    for k, _, _ in FIELDS:
        r[k] = 0.0
    r.update({'p_in': 3456.4, 'p_out': 0.0, 'p_in_l1': 1000.4, 'p_in_l2': 1200.0,
              'p_in_l3': 1256.0, 'u_l1': 230.123, 'u_l2': 229.9, 'u_l3': 231.0005,
              'i_l1': 4.3499, 'i_l2': 5.2, 'i_l3': 5.5, 'freq': 49.987, 'e_in': 12345678.4,
              'e_out': 2345.6, 'p_in_avg': 3000.0, 'p_out_avg': 12.5, 'p_in_avg_l1': 999.5,
              'p_out_avg_l3': 12.5})
    return r


def test_every_key_type_and_unit():
    d = legacy.legacy_json(base_reading(), INFO, 1717243205, FW)
    assert set(d) == set(INT_KEYS) | set(STR_KEYS)
    for k in INT_KEYS:
        assert type(d[k]) is int, k
    for k in STR_KEYS:
        assert type(d[k]) is str, k
    assert d['Fwd_Act_Wh'] == 12345678 and d['Rev_Act_Wh'] == 2346
    assert d['Fwd_W'] == 3456 and d['Rev_W'] == 0
    assert (d['L1_Fwd_W'], d['L2_Fwd_W'], d['L3_Fwd_W']) == (1000, 1200, 1256)
    assert d['L1_RMS_V'] == 230123 and d['L2_RMS_V'] == 229900 and d['L3_RMS_V'] == 231001
    assert d['L1_RMS_A'] == 4350 and d['L2_RMS_A'] == 5200 and d['L3_RMS_A'] == 5500
    assert d['Freq_mHz'] == 49987
    assert d['Fwd_Avg_W'] == 3000 and d['Rev_Avg_W'] == 13
    assert d['L1_Fwd_Avg_W'] == 1000 and d['L3_Rev_Avg_W'] == 13 and d['L2_Rev_Avg_W'] == 0
    assert d['Utility_SN'] == 'UT-0042' and d['Meter_Manufacturer'] == 'NES'
    assert d['Meter_Model'] == '83334-3I' and d['Meter_SW_Version'] == '4.4'
    assert (d['ESP_SW'], d['ESP_SW_By'], d['ESP_SW_Version']) == ('MEP open firmware',
                                                                  'someone', '1.2.3')
    json.dumps(d)


def test_sw_version_forms():
    assert legacy.sw_version('4.4') == '4.4'
    assert legacy.sw_version('4.4.1') == '4.4'
    assert legacy.sw_version((4, 12)) == '4.12'
    assert legacy.sw_version(0x040C) == '4.12'
    assert legacy.sw_version(None) == ''


def test_negative_values_stay_negative():
    r = base_reading()
    r.update({'p_in': -150.6, 'p_in_l1': -150.6, 'p_in_l2': 0.0, 'p_in_l3': 0.0,
              'p_out': 0.0, 'p_in_avg': -20.5, 'p_in_avg_l2': -0.6})
    d = legacy.legacy_json(r, INFO, r['time'], FW)
    assert d['Fwd_W'] == -151 and d['L1_Fwd_W'] == -151
    assert d['Fwd_Avg_W'] == -21 and d['L2_Fwd_Avg_W'] == -1


def _check_3w(d):
    fwd = d['L1_Fwd_W'] + d['L2_Fwd_W'] + d['L3_Fwd_W']
    rev = d['L1_Rev_W'] + d['L2_Rev_W'] + d['L3_Rev_W']
    assert abs((d['Fwd_W'] - d['Rev_W']) - (fwd - rev)) <= 3, d


def test_three_watt_rule_over_many_readings():
    rnd = random.Random(1234)
    replaced = kept = 0
    for n in range(5000):
        r = base_reading(1717243200 + n)
        pin = [0.0] * 3
        pout = [0.0] * 3
        for i in range(3):
            v = rnd.choice((rnd.uniform(-4000, 4000), rnd.uniform(-2, 2), 0.0, 0.5, -0.5))
            if v >= 0 or rnd.random() < 0.3:   # some meters report export as negative import
                pin[i] = v
            else:
                pout[i] = -v
            r['p_in_l%d' % (i + 1)] = pin[i]
            r['p_out_l%d' % (i + 1)] = pout[i]
        net = sum(pin) - sum(pout)
        # the meter's totals: usually consistent, sometimes off by a lot or by rounding
        err = rnd.choice((0.0, 0.0, rnd.uniform(-1.4, 1.4), rnd.uniform(-500, 500)))
        total = net + err
        r['p_in'], r['p_out'] = (total, 0.0) if total >= 0 else (0.0, -total)
        if rnd.random() < 0.2:   # both directions reported at once
            r['p_in'] += 40.0
            r['p_out'] += 40.0
        d = legacy.legacy_json(r, INFO, r['time'], FW)
        _check_3w(d)
        if d['Fwd_W'] == legacy._ri(r['p_in']) and d['Rev_W'] == legacy._ri(r['p_out']):
            kept += 1
        else:
            replaced += 1
    assert kept > 1000 and replaced > 500     # both paths exercised


def test_totals_replaced_by_phase_sums_when_meter_disagrees():
    r = base_reading()
    r.update({'p_in': 5000.0, 'p_out': 0.0, 'p_in_l1': 1000.0, 'p_in_l2': 0.0,
              'p_in_l3': 0.0, 'p_out_l2': 300.0})
    d = legacy.legacy_json(r, INFO, r['time'], FW)
    assert (d['Fwd_W'], d['Rev_W']) == (1000, 300)
    r['p_in'] = 702.9     # within 3 W: the meter's own totals are kept
    d = legacy.legacy_json(r, INFO, r['time'], FW)
    assert (d['Fwd_W'], d['Rev_W']) == (703, 0)


def test_current_datetime_format_and_change():
    fmt = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$')
    prev = None
    for t in (0, 951782400, 1709210096, 1717243200, 1717243201, 4102444799, 1234567890):
        d = legacy.legacy_json(base_reading(t), INFO, None, FW)
        assert fmt.match(d['CurrentDateTime']), d['CurrentDateTime']
        expect = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        assert d['CurrentDateTime'] == expect.strftime('%Y-%m-%dT%H:%M:%S.000Z')
        assert d['CurrentDateTimeString'] == expect.strftime('%Y-%m-%d %H:%M:%S')
        assert calendar.timegm(
            datetime.datetime.strptime(d['CurrentDateTime'], '%Y-%m-%dT%H:%M:%S.000Z')
            .timetuple()) == t
        assert d['CurrentDateTime'] != prev
        prev = d['CurrentDateTime']
    # every day of four years, to catch leap-year slips
    for day in range(19000, 19000 + 4 * 366):
        t = day * 86400 + 3661
        e = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        assert legacy.iso_utc(t) == e.strftime('%Y-%m-%dT%H:%M:%S.000Z')


def test_no_reading_and_stale_reading():
    assert legacy.legacy_json(None, INFO, 1717243200, FW) is None
    r = base_reading(1717243200)
    assert legacy.legacy_json(r, INFO, 1717243200 + 601, FW) is None
    assert legacy.legacy_json(r, INFO, 1717243200 + 30, FW) is not None
    # a clock that is not set yet (year 2000) does not make the reading stale
    assert legacy.legacy_json(r, INFO, 5, FW) is not None


def test_missing_phases_are_zero():
    r = {'time': 1717243200, 'seq': 1, 'p_in': 500.0, 'p_out': 0.0, 'p_in_l1': 500.0,
         'u_l1': 230.0, 'i_l1': 2.2, 'freq': 50.0, 'e_in': 10.0, 'e_out': 0.0}
    d = legacy.legacy_json(r, {}, None, None)
    for k in INT_KEYS:
        assert type(d[k]) is int
    assert d['L2_RMS_V'] == 0 and d['L3_Fwd_W'] == 0 and d['Utility_SN'] == ''


# ---------- the Microdot routes ----------
class Poller:
    def __init__(self):
        self.latest = None
        self.info = INFO
        self.status = {'state': 'ok', 'last_error': None, 'seq': 3, 'pseq': 5,
                       'counters': {'frames': 10, 'timeouts': 1, 'resyncs': 0,
                                    'auth_failures': 0, 'alerts': 2, 'alerts_handled': 2}}


class Ctx:
    def __init__(self, public=True):
        self.config = {'legacy_public': public}
        self.poller = Poller()
        self.fw_info = FW
        self.logged_in = False

    def require_login(self, request):
        return None if self.logged_in else ({'error': 'login'}, 401)


def client(ctx):
    app = Microdot()
    server.add_routes(app, ctx)
    return TestClient(app)


async def test_route_503_then_json():
    ctx = Ctx()
    c = client(ctx)
    res = await c.get('/getDashDataWS')
    assert res.status_code == 503 and res.headers.get('Retry-After') == '10'
    ctx.poller.latest = base_reading(legacy_routes.unix_time())
    res = await c.get('/getDashDataWS')
    assert res.status_code == 200
    assert res.headers['Content-Type'].startswith('application/json')
    d = json.loads(res.text)
    assert d['Fwd_W'] == 3456 and d['ESP_SW_Version'] == '1.2.3'
    t1 = d['CurrentDateTime']
    ctx.poller.latest = base_reading(legacy_routes.unix_time() + 1)
    d = json.loads((await c.get('/getDashDataWS')).text)
    assert d['CurrentDateTime'] != t1


async def test_route_private_needs_login():
    ctx = Ctx(public=False)
    ctx.poller.latest = base_reading(legacy_routes.unix_time())
    c = client(ctx)
    assert (await c.get('/getDashDataWS')).status_code == 401
    assert (await c.get('/metrics')).status_code == 401
    ctx.logged_in = True
    assert (await c.get('/getDashDataWS')).status_code == 200
    assert (await c.get('/metrics')).status_code == 200


async def test_route_async_require_login():
    ctx = Ctx(public=False)
    ctx.poller.latest = base_reading(legacy_routes.unix_time())

    async def check(request):
        return False
    ctx.require_login = check
    assert (await client(ctx).get('/getDashDataWS')).status_code == 401
