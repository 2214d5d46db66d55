# The real App against a slow simulated meter (550 ms turnaround, 150 ms pauses inside
# answers, duplicates refused with 0x0C): readings keep coming, energies are consistent,
# the status API shows the link's measured timing, and "download diagnostics" gives one
# JSON file with the last 64 exchanges and no secret.
import gzip
import json
import time

from test_web_security import Running, Http
from web_helpers import PASSWORD

WIFI_PW = 'wifi-secret-0815'
MQTT_PW = 'mqtt-secret-4711'


def login(h):
    r = h.post('/login', json.dumps({'password': PASSWORD, 'next': '/status'}),
               headers={'Content-Type': 'application/json', 'X-CSRF-Token': h.token()})
    assert r.status == 200 and r.json == {'ok': True, 'next': '/status'}, (r.status, r.text[:200])


def test_slow_meter_readings_status_and_diagnostics(tmp_path):
    app = Running(str(tmp_path), wifi_ssid='home', wifi_password=WIFI_PW,
                  mqtt_password=MQTT_PW)
    try:
        meter = app.sim.pump.meter
        meter.turnaround_ms = 550
        meter.gap_ms = 150
        n0 = len(app.stamps)
        t0 = time.monotonic()
        h = Http(app.port)
        login(h)

        def enough():
            """4 readings at the slow timing (after some 10 s of start-up tables) and 16
            exchanges for the log and the diagnostics file."""
            st = h.get('/api/status').json
            d = st['link']['diag']
            done = (len(app.stamps) - n0 >= 4 and d['status_codes'].get('00', 0) >= 16
                    and d['timeout_ms'] >= 1500)
            return done and st
        st = enough()
        while not st and time.monotonic() - t0 < 120:
            time.sleep(0.5)
            st = enough()
        got = len(app.stamps) - n0
        assert st, (got, app.app.link.status())
        print('4 readings and 16 exchanges at the slow timing after %.1f s'
              % (time.monotonic() - t0))
        d = st['link']['diag']
        assert d['turnaround']['p50'] >= 500, d
        assert d['timeout_ms'] >= 1500 and d['max_gap_ms'] >= 150, d
        assert st['link']['link'] == 'ok'
        page = h.get('/status')
        body = page.body
        if page.headers.get('content-encoding') == 'gzip':   # a pre-gzipped static page
            body = gzip.decompress(body)
        assert page.status == 200 and b'/api/diagnostics' in body
        r = h.get('/api/diagnostics')
        assert r.status == 200
        assert 'attachment' in r.headers.get('content-disposition', '')
        diag = r.json
        assert diag['version'] and diag['board'] == 'host'
        assert 16 <= len(diag['exchanges']) <= 64      # 64 once that many happened
        assert diag['link']['counters']['rx'] >= 16
        kinds = set(e['kind'] for e in diag['exchanges'])
        assert 'poll' in kinds
        text = r.text
        for secret in (WIFI_PW, MQTT_PW, PASSWORD, 'ABCDEFGHIJKLMNOPQRST',
                       '41 42 43 44 45 46 47 48'):
            assert secret not in text, secret
        log = h.get('/api/log').json                  # streamed entry by entry
        assert log['count'] >= 16 and len(log['items']) == 16
        assert all(x.get('desc') for x in log['items'])
        assert len(h.get('/api/log?since=%d' % (log['count'] - 2)).json['items']) <= 2
        # the log goes out a value at a time: no piece of the answer is over 1 KB (an
        # entry with a decoded BT28 answer is ~1.7 KB), and it is the entries' JSON
        from web import server, tinker
        eng_log = app.app.link.engine.log
        entries = eng_log.items
        assert any(len(json.dumps(tinker.entry_view(app.app, e))) > 1024 for e in entries)
        pieces = list(server.chunked(tinker._log_json(app.app, entries, eng_log.count)))
        assert max(len(p) for p in pieces) <= 1024, [len(p) for p in pieces]
        assert json.loads(''.join(pieces)) == json.loads(json.dumps(
            {'count': eng_log.count, 'items': [tinker.entry_view(app.app, e) for e in entries]}))
        now = h.get('/api/now').json
        assert 'e_in' in json.dumps(now)
        # unauthenticated: no diagnostics
        anon = Http(app.port)
        r = anon.get('/api/diagnostics')
        assert r.status in (302, 303, 401), r.status
    finally:
        app.stop()
