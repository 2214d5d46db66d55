# /metrics: parsed with prometheus_client's own text parser.
import types

from microdot import Microdot
from microdot.test_client import TestClient
from prometheus_client.parser import text_string_to_metric_families

from web import metrics
from mep.reading import rows

FIELDS = tuple(rows())
from web import legacy_routes, server

INFO = {'manufacturer': 'NES ', 'model': '83334-3I', 'fw': '4.4', 'hw': '1.2',
        'serial': 'A"B\\C', 'mfg_serial': '1'}
# as link.status() gives it: 'link' is the state in words, 'state' the engine's internal one
LINK = {'link': 'ok', 'state': 'wait-first', 'last_error': None, 'seq': 7, 'pseq': 5,
        'counters': {'rx': 120, 'tx': 125, 'retransmits': 5, 'timeouts': 3, 'resyncs': 1,
                     'auth_failures': 0, 'alerts': 4, 'alerts_handled': 4},
        'diag': {'turnaround': {'p50': 21, 'p95': 48, 'max': 130}}}
COUNTER_NAMES = {'rx': 'frames', 'tx': 'requests'}
SYS = {'heap_free': 54321, 'heap_alloc': 40000, 'uptime': 3600,
       'mqtt': {'connected': True, 'published': 99, 'drops': 2, 'reconnects': 1}}


def reading():
    r = {'time': 1717243200, 'seq': 42}
    for i, k in enumerate(f[0] for f in FIELDS):
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
    # energy in the base unit: joules (Wh x 3600), reactive in var*s
    assert fams['mep_energy_import_joules'].type == 'counter'
    assert sample(fams, 'mep_energy_import_joules',
                  'mep_energy_import_joules_total') == 12345678 * 3600
    assert sample(fams, 'mep_energy_export_joules') == r['e_out'] * 3600
    assert sample(fams, 'mep_reactive_energy_import_var_seconds') == r['eq_in'] * 3600
    assert not [n for n in fams if 'hour' in n or 'kilo' in n or 'milli' in n]
    for ph in ('1', '2', '3'):
        assert sample(fams, 'mep_voltage_volts', phase='L' + ph) == r['u_l' + ph]
        assert sample(fams, 'mep_current_amperes', phase='L' + ph) == r['i_l' + ph]
        assert sample(fams, 'mep_phase_power_import_watts', phase='L' + ph) == r['p_in_l' + ph]
    assert sample(fams, 'mep_power_factor_ratio', phase='L2') == 0.97
    assert sample(fams, 'mep_frequency_hertz') == r['freq']
    assert sample(fams, 'mep_reading_timestamp_seconds') == 1717243200
    # link counters are counters
    for key in ('rx', 'tx', 'retransmits', 'timeouts', 'resyncs', 'auth_failures', 'alerts',
                'alerts_handled'):
        fam = fams['mep_link_' + COUNTER_NAMES.get(key, key)]
        assert fam.type == 'counter'
        assert sample(fams, fam.name) == LINK['counters'][key]
    assert sample(fams, 'mep_link_up') == 1
    assert sample(fams, 'mep_link_state', state='ok') == 1
    assert sample(fams, 'mep_link_turnaround_seconds', stat='p95') == 0.048
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
    link = dict(LINK, link='no answer', state='idle')
    fams = parse(''.join(metrics.metrics_text(None, None, link, {'heap_free': 1})))
    assert 'mep_power_import_watts' not in fams
    assert sample(fams, 'mep_link_up') == 0
    assert sample(fams, 'mep_link_state', state='no answer') == 1
    assert list(metrics.metrics_text(None, None, None, None)) == []


def test_is_a_generator_of_lines():
    g = metrics.metrics_text(reading(), INFO, LINK, SYS)
    first = next(g)
    assert first.startswith('# HELP ') and first.endswith('\n')


async def test_route_streams_parseable_text(tmp_path):
    """/metrics of the real App (public legacy endpoints): parseable, with the reading, the
    link, MQTT and uptime sections."""
    from web_helpers import AppOnSim
    from web.server import create_app
    run = AppOnSim(str(tmp_path / 'data'))
    try:
        run.app.config.update({'legacy_public': True})
        run.app.poller.latest = reading()
        run.app.poller.info.update(INFO)
        res = await TestClient(create_app(run.app)).get('/metrics', headers={'Host': 'mep-test'})
        assert res.status_code == 200
        assert res.headers['Content-Type'].startswith('text/plain; version=0.0.4')
        fams = parse(res.text)
        assert 'mep_link_frames' in fams and 'mep_mqtt_published' in fams
        assert 'mep_uptime_seconds' in fams     # (no heap figures on CPython: mem_free() is None)
        assert sample(fams, 'mep_power_import_watts') == reading()['p_in']
    finally:
        run.stop()


def test_link_up_and_frames_from_the_real_app(tmp_path):
    """The real App against the simulator: /metrics' link section from link.status() as the
    engine produces it (not a hand-made dict)."""
    import asyncio
    import time
    from tools.mepsim import Meter
    from apphost import RunningApp, write_config

    write_config(str(tmp_path))
    out = {}

    async def scenario():
        async with RunningApp(tmp_path, Meter(key=b'ABCDEFGHIJKLMNOP')) as a:
            end = time.monotonic() + 20
            while a.poller.readings < 3 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            out['text'] = ''.join(metrics.metrics_text(a.poller.latest, a.poller.info,
                                                       a.link.status(), {}))
            out['status'] = a.link.status()
    asyncio.run(scenario())
    fams = parse(out['text'])
    assert sample(fams, 'mep_link_up') == 1, out['status']
    assert sample(fams, 'mep_link_state', state='ok') == 1
    assert sample(fams, 'mep_link_frames') >= 3
    assert sample(fams, 'mep_link_requests') >= sample(fams, 'mep_link_frames')
    for link, up in (('starting', 0), ('no answer', 0), ('auth failed', 0)):
        st = dict(out['status'], link=link)
        assert sample(parse(''.join(metrics.metrics_text(None, None, st, None))),
                      'mep_link_up') == up
