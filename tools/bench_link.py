"""Link benchmark: the poller in fast mode against the meter simulator with real 9600-baud
pacing (BT28 back to back, BT23 once a second). Prints the achieved period between readings, the
wire-time floor for the same requests and answers (each BT28 and its share of BT23s) and
their ratio (target <= 1.15; the original firmware idles 2 s per cycle), readings per minute,
responses taken as the answer to another table's request (wrong decodes, must be 0), energy
values that moved implausibly, and the alert-chain latency.

    .venv/bin/python tools/bench_link.py [--seconds 20] [--tcp] [--turnaround 20] [--gap 0]
                                         [--dup seq|replay] [--alert-every 10]

--tcp goes through the real TCP transport and the firmware's host port (as ./dev run does);
the default couples the link to the simulator in-process (no socket overhead).
"""
import argparse
import asyncio
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools', 'host'), ROOT]

from drivers.link import Link                      # noqa: E402
from mep.engine import Settings                 # noqa: E402
from mep.poller import Poller                   # noqa: E402
from mep import requests as rq                  # noqa: E402
from tools.mepsim import Meter                  # noqa: E402
from tools.mepsim.answers import track          # noqa: E402
from tools.mepsim.serve import SimPort, serve_tcp   # noqa: E402

KEY = b'ABCDEFGHIJKLMNOP'


def exchange_bytes():
    """Bytes on the wire for a BT23 partial read and a BT28 full read, both directions."""
    bt23_req = 2 + len(rq.partial_read(rq.BT23, 0, 16)) + 12
    bt23_resp = 2 + 1 + 2 + 16 + 8
    bt28_req = 2 + len(rq.full_read(rq.BT28)) + 12
    bt28_resp = 2 + 1 + 2 + 220 + 8
    return bt23_req + bt23_resp, bt28_req + bt28_resp


async def bench(seconds, tcp, turnaround_ms, gap_ms=0, dup='seq', alert_every=0):
    meter = Meter(key=KEY, turnaround_ms=turnaround_ms)
    meter.gap_ms = gap_ms
    meter.dup_mode = dup
    server = None
    if tcp:
        import hw_host
        server = await serve_tcp(meter, '127.0.0.1', 0)
        port = hw_host.open_port({'chip': 'host'}, '127.0.0.1:%d' % server.port)
    else:
        port = SimPort(meter)
    link = Link(port, None, KEY, Settings(), lambda: int(time.time()))
    link.engine.s.settle_ms = 50
    poller = Poller(link.submit, lambda: int(time.time()), fast=True)
    link.hooks.append(poller)
    stamps = []
    energy = {'last': None, 'bad': 0}

    def on_reading(r):
        stamps.append(time.monotonic())
        e = r.get('e_in')
        if e is not None:
            if energy['last'] is not None and e < energy['last']:
                energy['bad'] += 1
            energy['last'] = e
    poller.on_reading(on_reading)
    wrong = track(meter, link.engine, poller)
    task = asyncio.create_task(link.run())
    t0 = time.monotonic()
    while len(stamps) < 3 and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.05)
    if len(stamps) < 3:
        raise SystemExit('no readings: %r' % (link.status(),))
    first = len(stamps)
    tables0 = dict(meter.stats['by_table'])
    t_end = time.monotonic() + seconds
    next_alert = time.monotonic() + alert_every if alert_every else None
    while time.monotonic() < t_end:
        await asyncio.sleep(0.05)
        if next_alert is not None and time.monotonic() >= next_alert:
            pump = getattr(port, 'pump', None) or server.pump    # in-process or TCP
            meter.alert(pump.now())
            pump.kick()
            next_alert += alert_every
    task.cancel()
    if server is not None:
        server.close()
    pump = getattr(port, 'pump', None)
    if pump is not None:
        pump.close()
    n = len(stamps) - first
    period = (stamps[-1] - stamps[first - 1]) / n * 1000
    b23, b28 = exchange_bytes()
    polled = {t: meter.stats['by_table'].get(t, 0) - tables0.get(t, 0) for t in (rq.BT23, rq.BT28)}
    per23 = polled[rq.BT23] / max(1, polled[rq.BT28])        # BT23s per reading
    nbytes = b28 + per23 * b23
    floor = nbytes * 10 / 9600 * 1000
    st = link.status()
    print('transport            %s' % ('TCP + firmware host port' if tcp else 'in-process'))
    print('readings measured    %d in %.1f s' % (n, stamps[-1] - stamps[first - 1]))
    print('reading period       %.1f ms (a BT28 full read, %.2f BT23 partial reads a reading)'
          % (period, per23))
    print('wire-time floor      %.1f ms (%.0f bytes at 9600 8N1)' % (floor, nbytes))
    print('meter turnaround     %d ms an exchange (simulator setting, part of the period)'
          % turnaround_ms)
    print('ratio period/floor   %.3f (target <= 1.15)' % (period / floor))
    print('original firmware    ~%.0f ms (2 s idle + a BT23 and a BT28)'
          % (2000 + (b23 + b28) * 10 / 9600 * 1000))
    c = st['counters']
    d = st['diag']
    lat = meter.alert_latency_ms
    print('meter pauses         %d ms inside every answer; duplicates: %s' % (gap_ms, dup))
    print('readings per minute  %.1f' % (n * 60 / (stamps[-1] - stamps[first - 1])))
    print('wrong decodes        %d of %d answers taken (responses of another table)'
          % (len(wrong['wrong']), wrong['ok']))
    print('energy backwards     %d published' % energy['bad'])
    print('alerts answered      %d of %d, latency max %s ms'
          % (meter.alerts_answered, meter.alerts_sent,
             '%.0f' % max(lat) if lat else '-'))
    print('link counters        timeouts %d, retransmits %d, seq errors %d, late %d, '
          'drained %d, mismatched %d, power cycles %d'
          % (c['timeouts'], c['retransmits'], c['seq_errors'], c['late'], c['drained'],
             c['mismatched'], c['power_cycles']))
    print('turnaround measured  p50 %s p95 %s max %s ms, wait %d ms, largest pause %d ms'
          % (d['turnaround']['p50'], d['turnaround']['p95'], d['turnaround']['max'],
             d['timeout_ms'], d['max_gap_ms']))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=20)
    ap.add_argument('--tcp', action='store_true')
    ap.add_argument('--turnaround', '--turnaround-ms', dest='turnaround', type=int,
                    default=20, help='meter turnaround in ms (default 20)')
    ap.add_argument('--gap', type=int, default=0,
                    help='pause in ms inside every meter answer (default 0)')
    ap.add_argument('--dup', choices=('seq', 'replay'), default='seq',
                    help='how the meter treats a repeated request (default seq: 0x0C)')
    ap.add_argument('--alert-every', type=float, default=0,
                    help='raise an alert this often (seconds; default never)')
    a = ap.parse_args()
    asyncio.run(bench(a.seconds, a.tcp, a.turnaround, a.gap, a.dup, a.alert_every))


if __name__ == '__main__':
    main()
