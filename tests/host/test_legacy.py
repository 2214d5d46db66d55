# /getDashDataWS: every key, type and unit; the 3 W rule; the time fields; the route.
import asyncio
import calendar
import datetime
import json
import random
import re

from urllib.parse import urlencode

from microdot.test_client import TestClient

from web import legacy
from compat import unix_time
from mep.reading import rows

FIELDS = tuple(rows())
from tools.mepsim.meter import Meter
from web.server import create_app
from web_helpers import AppOnSim, MBK, PASSWORD

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
    for k in (f[0] for f in FIELDS):
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


# ---------- the routes, served by the real App ----------
# The App (firmware/app.py) with its web app (web.server.create_app) and its MEP link on the
# in-process meter simulator (web_helpers.AppOnSim). Where App.main() is not started, the
# poller is idle (as before the meter first answers) and a test sets the reading on it.
FORM = {'Content-Type': 'application/x-www-form-urlencoded'}
JSON = {'Content-Type': 'application/json'}


def client(run):
    """Microdot's test client of the App's web app, sending the module's hostname as Host."""
    return TestClient(create_app(run.app), host='mep-test')


async def csrf(c):
    r = await c.get('/api/session')
    assert r.status_code == 200, r.text
    return r.json['csrf']


async def login(c, password=PASSWORD):
    """The login form's post; True when the App let the client in (302)."""
    r = await c.post('/login', headers=dict(FORM),
                     body=urlencode({'csrf': await csrf(c), 'password': password}))
    return r.status_code == 302


async def set_legacy_public(c, on):
    """The settings page's save of the "Legacy endpoints without login" switch (it asks for
    the current password)."""
    body = {'section': 'security', 'values': {'legacy_public': on},
            'current_password': PASSWORD}
    r = await c.post('/api/config', headers=dict(JSON, **{'X-CSRF-Token': await csrf(c)}),
                     body=body)
    assert r.status_code == 200, r.text


def idle_app(tmp_path, reading=True):
    """The App, not started, with base_reading() (now) and INFO on its poller."""
    run = AppOnSim(str(tmp_path))
    run.app.poller.info.update(INFO)
    if reading:
        run.app.poller.latest = base_reading(unix_time())
    return run


def check_types(d):
    assert set(d) == set(INT_KEYS) | set(STR_KEYS)
    for k in INT_KEYS:
        assert type(d[k]) is int, k
    for k in STR_KEYS:
        assert type(d[k]) is str, k


async def wait_new_reading(run, timeout=10.0):
    """The poller's next reading with a later time than the current one."""
    t0 = run.app.poller.latest['time']
    waited = 0.0
    while run.app.poller.latest['time'] == t0:
        assert waited < timeout, 'no new reading from the simulator'
        await asyncio.sleep(0.05)
        waited += 0.05
    return run.app.poller.latest


async def test_route_503_then_the_meters_json(tmp_path):
    """Before the App's first reading: 503 + Retry-After; then the simulated meter's values,
    every field typed, and CurrentDateTime changing with the readings."""
    meter = Meter(key=MBK)
    meter.model.set(p1=1000, p2=1200, p3=-1256, u1=230.123, freq=49.987, e_in=12345678)
    run = AppOnSim(str(tmp_path), meter=meter).start()
    try:
        c = client(run)
        assert await login(c)
        assert run.app.poller.latest is None
        res = await c.get('/getDashDataWS')
        assert res.status_code == 503 and res.headers.get('Retry-After') == '10'
        assert res.headers['Content-Type'].startswith('text/plain')
        assert run.app.poller.latest is None          # the 503 was really before a reading
        assert await run.wait_reading() is not None
        res = await c.get('/getDashDataWS')
        assert res.status_code == 200
        assert res.headers['Content-Type'].startswith('application/json')
        d = json.loads(res.text)
        check_types(d)
        assert (d['L1_Fwd_W'], d['L2_Fwd_W'], d['L3_Fwd_W']) == (1000, 1200, 0)
        assert (d['L1_Rev_W'], d['L2_Rev_W'], d['L3_Rev_W']) == (0, 0, 1256)
        assert (d['Fwd_W'], d['Rev_W']) == (2200, 1256)
        _check_3w(d)
        assert d['L1_RMS_V'] == 230123 and d['Freq_mHz'] == 49987
        assert d['Fwd_Act_Wh'] >= 12345678
        assert d['Utility_SN'] == meter.model.utility_serial
        assert (d['Meter_Manufacturer'], d['Meter_Model'], d['Meter_SW_Version']) == \
            ('NES', '83334-3I', '4.38')                # the simulator's BT01
        fw = legacy.FW_INFO
        assert (d['ESP_SW'], d['ESP_SW_By'], d['ESP_SW_Version']) == \
            (fw['name'], fw['by'], fw['version'])
        t1 = d['CurrentDateTime']
        r = await wait_new_reading(run)
        d = json.loads((await c.get('/getDashDataWS')).text)
        assert d['CurrentDateTime'] != t1 and d['CurrentDateTime'] == legacy.iso_utc(r['time'])
    finally:
        run.stop()


async def test_route_stale_reading_503(tmp_path):
    run = idle_app(tmp_path)
    c = client(run)
    assert await login(c)
    assert (await c.get('/getDashDataWS')).status_code == 200
    run.app.poller.latest = base_reading(unix_time() - 601)
    res = await c.get('/getDashDataWS')
    assert res.status_code == 503 and res.headers.get('Retry-After') == '10'


async def test_route_private_by_default_needs_login(tmp_path):
    run = idle_app(tmp_path)
    assert run.app.config['legacy_public'] is False
    c = client(run)
    for path in ('/getDashDataWS', '/metrics'):
        res = await c.get(path)
        assert res.status_code == 401 and res.json == {'error': 'login required'}, path
    assert not await login(c, 'not the password')
    assert (await c.get('/getDashDataWS')).status_code == 401
    assert await login(c)
    res = await c.get('/getDashDataWS')
    assert res.status_code == 200 and json.loads(res.text)['Fwd_W'] == 3456
    res = await c.get('/metrics')
    assert res.status_code == 200 and 'mep_power_import_watts 3456' in res.text
    assert (await client(run).get('/metrics')).status_code == 401   # another client: no session
    r = await c.post('/logout', headers=dict(JSON, **{'X-CSRF-Token': await csrf(c)}), body={})
    assert r.status_code == 200, r.text
    assert (await c.get('/getDashDataWS')).status_code == 401
    assert (await c.get('/metrics')).status_code == 401


async def test_route_public_when_configured(tmp_path):
    run = idle_app(tmp_path)
    admin = client(run)
    assert await login(admin)
    await set_legacy_public(admin, True)
    assert run.app.config['legacy_public'] is True
    anon = client(run)
    res = await anon.get('/getDashDataWS')
    assert res.status_code == 200 and json.loads(res.text)['Fwd_W'] == 3456
    assert (await anon.get('/metrics')).status_code == 200
    await set_legacy_public(admin, False)
    assert (await anon.get('/getDashDataWS')).status_code == 401
    assert (await anon.get('/metrics')).status_code == 401


async def test_route_legacy_key_prefix_without_login(tmp_path):
    run = idle_app(tmp_path, reading=False)
    tok = run.app.config['legacy_token']
    assert len(tok) >= 32
    anon = client(run)
    res = await anon.get('/%s/getDashDataWS' % tok)        # no reading yet
    assert res.status_code == 503 and res.headers.get('Retry-After') == '10'
    run.app.poller.latest = base_reading(unix_time())
    res = await anon.get('/%s/getDashDataWS' % tok)
    assert res.status_code == 200 and res.headers['Content-Type'].startswith('application/json')
    d = json.loads(res.text)
    check_types(d)
    assert d['Fwd_W'] == 3456 and d['Utility_SN'] == 'UT-0042'
    res = await anon.get('/%s/metrics' % tok)
    assert res.status_code == 200 and 'mep_power_import_watts 3456' in res.text
    assert (await anon.get('/getDashDataWS')).status_code == 401    # still private
    for bad in ('/%s/getDashDataWS' % ('0' * len(tok)), '/%s/getDashDataWS' % tok[:-1],
                '/%s0/getDashDataWS' % tok, '/%s/metrics' % tok.upper(),
                '/%s/config' % tok, '/%s/x/metrics' % tok, '/x/%s/metrics' % tok):
        assert (await anon.get(bad)).status_code == 404, bad
