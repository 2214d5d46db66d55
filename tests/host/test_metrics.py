# /metrics: parsed with prometheus_client's own text parser.
import types

from microdot import Microdot
from microdot.test_client import TestClient
from prometheus_client.parser import text_string_to_metric_families

import metrics
from mep.reading import FIELDS
from web import legacy_routes, server

INFO = {'manufacturer': 'NES ', 'model': '83334-3I', 'fw': '4.4', 'hw': '1.2',
        'serial': 'A"B\\C', 'mfg_serial': '1'}
LINK = {'state': 'ok', 'last_error': None, 'seq': 7, 'pseq': 5,
        'counters': {'frames': 120, 'timeouts': 3, 'resyncs': 1, 'auth_failures': 0,
                     'alerts': 4, 'alerts_handled': 4}}
SYS = {'heap_free': 54321, 'heap_alloc': 40000, 'uptime': 3600,
       'mqtt': {'connected': True, 'published': 99, 'drops': 2, 'reconnects': 1}}


def reading():
    r = {'time': 1717243200, 'seq': 42}
    for i, (k, _, _) in enumerate(FIELDS):
        r[k] = 1.25 + i
    r['e_in'] = 12345678
    r['pf_l2'] = 0.97
    return r


def parse(text):
    fams = {}
    for f in text_string_to_metric_families(text):
        fams[f.name] = f
    return fams


def sample(fams, family, name=None, **labels):
    f = fams[family]
    for s in f.samples:
        if (name is None or s.name == name) and all(s.labels.get(k) == v
                                                    for k, v in labels.items()):
            return s.value
    raise KeyError((family, labels))


def test_full_page_parses_with_types_and_units():
    r = reading()
    text = ''.join(metrics.metrics_text(r, INFO, LINK, SYS))
    assert text.endswith('\n')
    fams = parse(text)
    assert fams['mep_power_import_watts'].type == 'gauge'
    assert sample(fams, 'mep_power_import_watts') == r['p_in']
    assert sample(fams, 'mep_power_export_watts') == r['p_out']
    assert fams['mep_energy_import_watt_hours'].type == 'counter'
    assert sample(fams, 'mep_energy_import_watt_hours',
                  'mep_energy_import_watt_hours_total') == 12345678
    assert sample(fams, 'mep_energy_export_watt_hours') == r['e_out']
    for ph in ('1', '2', '3'):
        assert sample(fams, 'mep_voltage_volts', phase='L' + ph) == r['u_l' + ph]
        assert sample(fams, 'mep_current_amperes', phase='L' + ph) == r['i_l' + ph]
        assert sample(fams, 'mep_phase_power_import_watts', phase='L' + ph) == r['p_in_l' + ph]
    assert sample(fams, 'mep_power_factor_ratio', phase='L2') == 0.97
    assert sample(fams, 'mep_frequency_hertz') == r['freq']
    assert sample(fams, 'mep_reading_timestamp_seconds') == 1717243200
    # link counters are counters
    for key in ('frames', 'timeouts', 'resyncs', 'auth_failures', 'alerts', 'alerts_handled'):
        fam = fams['mep_link_' + key]
        assert fam.type == 'counter'
        assert sample(fams, 'mep_link_' + key) == LINK['counters'][key]
    assert sample(fams, 'mep_link_up') == 1
    assert sample(fams, 'mep_link_state', state='ok') == 1
    assert sample(fams, 'mep_heap_free_bytes') == 54321
    assert sample(fams, 'mep_uptime_seconds') == 3600
    assert sample(fams, 'mep_mqtt_drops') == 2 and fams['mep_mqtt_drops'].type == 'counter'
    # label escaping survives the round trip
    assert sample(fams, 'mep_meter_info', serial='A"B\\C', manufacturer='NES') == 1
    # every family has HELP text, no family appears twice
    assert all(f.documentation for f in fams.values())
    types_lines = [l.split()[2] for l in text.splitlines() if l.startswith('# TYPE')]
    assert len(types_lines) == len(set(types_lines))


def test_before_first_reading_and_link_down():
    link = dict(LINK, state='no answer')
    fams = parse(''.join(metrics.metrics_text(None, None, link, {'heap_free': 1})))
    assert 'mep_power_import_watts' not in fams
    assert sample(fams, 'mep_link_up') == 0
    assert sample(fams, 'mep_link_state', state='no answer') == 1
    assert list(metrics.metrics_text(None, None, None, None)) == []


def test_is_a_generator_of_lines():
    g = metrics.metrics_text(reading(), INFO, LINK, SYS)
    first = next(g)
    assert first.startswith('# HELP ') and first.endswith('\n')


async def test_route_streams_parseable_text():
    ctx = types.SimpleNamespace(config={'legacy_public': True},
                                poller=types.SimpleNamespace(latest=reading(), info=INFO,
                                                             status=lambda: LINK),
                                mqtt=types.SimpleNamespace(stats=lambda: SYS['mqtt']))
    app = Microdot()
    server.add_routes(app, ctx)
    res = await TestClient(app).get('/metrics')
    assert res.status_code == 200
    assert res.headers['Content-Type'].startswith('text/plain; version=0.0.4')
    fams = parse(res.text)
    assert sample(fams, 'mep_link_frames') == 120
    assert sample(fams, 'mep_mqtt_published') == 99
    assert 'mep_uptime_seconds' in fams
