#!/usr/bin/env python3
"""Web app benchmark on the PC (CPython: numbers are relative, not ESP32 timings).

Serves the web app on a loopback port for the real App (firmware/app.py) in fast mode, its link on
the in-process meter simulator, and prints:
  - dashboard first load: bytes on the wire (HTML + the gzip assets) and time to first value
  - /api/now JSON size and latency p50/p95/max with N concurrent clients
  - the alert chain latency measured meanwhile (an alert injected every few seconds)

  python tools/bench_web.py [--clients 20] [--seconds 15] [--alert-every 3]
"""
import argparse
import asyncio
import gzip
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (os.path.join(ROOT, 'tests', 'host', 'shim'), ROOT, os.path.join(ROOT, 'tests', 'host'),
          os.path.join(ROOT, 'tools', 'host'), os.path.join(ROOT, 'firmware')):
    if p not in sys.path:
        sys.path.insert(0, p)

from web_helpers import AppOnSim  # noqa: E402
from web.server import create_app  # noqa: E402


async def http_get(port, path):
    """One HTTP/1.0 GET; returns (status, headers dict, body bytes, wire bytes)."""
    r, w = await asyncio.open_connection('127.0.0.1', port)
    w.write(('GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n'
             % path).encode())
    await w.drain()
    data = await r.read()
    w.close()
    head, _, body = data.partition(b'\r\n\r\n')
    lines = head.decode().split('\r\n')
    hdr = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(':')
        hdr[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), hdr, body, len(data)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else float('nan')


async def main(a):
    d = tempfile.mkdtemp()
    run = AppOnSim(d, public=True).start()
    app = create_app(run.app)
    port = a.port
    task = asyncio.get_running_loop().create_task(app.start_server('127.0.0.1', port))
    await asyncio.sleep(0.3)
    t_boot = time.monotonic()
    await run.wait_reading(30)
    print('link start -> first reading: %.2f s' % (time.monotonic() - t_boot))

    # first load with a cold cache, the order a browser fetches in
    t0 = time.monotonic()
    st, h, body, wire = await http_get(port, '/')
    if st != 200:
        raise SystemExit('dashboard page missing (HTTP %d): run tools/build_web.py first' % st)
    if h.get('content-encoding') == 'gzip':
        body = gzip.decompress(body)
    total = wire
    parts = ['HTML %d' % wire]
    # the assets the page names, in its order (stylesheets, then scripts)
    for url in re.findall(r'(?:href|src)="(/static/[^"]+)"', body.decode()):
        st, h, b, n = await http_get(port, url)
        if st != 200:
            print('asset %s missing: run tools/build_web.py first' % url)
        total += n
        parts.append('%s %d' % (url.split('/')[-1].split('?')[0], n))
    st, h, b, n = await http_get(port, '/api/now')
    total += n
    ttfv = time.monotonic() - t0
    print('dashboard first load: %d bytes on the wire (%s, /api/now %d)'
          % (total, ', '.join(parts), n))
    print('time to first value (HTML + assets + /api/now, cold cache): %.0f ms' % (ttfv * 1000))
    print('/api/now JSON: %d bytes' % len(b))

    # load: N clients polling /api/now while alerts come in
    lat = []
    stop = time.monotonic() + a.seconds
    errors = [0]

    async def client():
        while time.monotonic() < stop:
            t = time.monotonic()
            try:
                s, _h2, _b, _n = await http_get(port, '/api/now')
                if s != 200:
                    errors[0] += 1
            except OSError:
                errors[0] += 1
            lat.append((time.monotonic() - t) * 1000)

    async def alerts():
        while time.monotonic() < stop - 1:
            await asyncio.sleep(a.alert_every)
            run.meter.alert(run.port.pump.now())
            run.port.pump.kick()

    r0 = run.app.poller.readings
    t1 = time.monotonic()
    await asyncio.gather(alerts(), *[client() for _ in range(a.clients)])
    dt = time.monotonic() - t1
    await asyncio.sleep(2.5)
    print('/api/now with %d clients for %.0f s: %d requests, %d errors, p50 %.1f ms, '
          'p95 %.1f ms, max %.1f ms' % (a.clients, dt, len(lat), errors[0], pct(lat, 50),
                                         pct(lat, 95), max(lat) if lat else float('nan')))
    print('readings meanwhile: %d (%.1f per s, fast mode)' % (
        run.app.poller.readings - r0, (run.app.poller.readings - r0) / dt))
    al = run.meter.alert_latency_ms
    st = run.app.link.engine.alerts.status()
    print('alerts: sent %d, answered %d (firmware: handled %d, failed %d)'
          % (run.meter.alerts_sent, run.meter.alerts_answered, st['handled'], st['failed']))
    if al:
        mx = max(al)
        print('alert chain latency (meter view): max %.0f ms, mean %.0f ms -> %s'
              % (mx, sum(al) / len(al), 'some exceeded 2 s' if mx > 2000 else 'all within 2 s'))
    else:
        print('alert chain latency: no alert answered')
    run.stop()
    task.cancel()


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--clients', type=int, default=20)
    ap.add_argument('--seconds', type=float, default=15)
    ap.add_argument('--alert-every', type=float, default=3)
    ap.add_argument('--port', type=int, default=8765)
    asyncio.run(main(ap.parse_args()))
