"""Link benchmark: the poller in fast mode against the meter simulator with real 9600-baud
pacing. Prints the achieved BT23+BT28 cycle period, the wire-time floor for the same bytes and
their ratio (target <= 1.15; the original firmware idles 2 s per cycle).

    .venv/bin/python tools/bench_link.py [--seconds 20] [--tcp] [--turnaround-ms 20]

--tcp goes through the real TCP transport and the firmware's host port (as ./dev run does);
the default couples the link to the simulator in-process (no socket overhead).
"""
import argparse
import asyncio
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'firmware'), ROOT]

from mep.link import Link                      # noqa: E402
from mep.engine import Settings                 # noqa: E402
from mep.poller import Poller                   # noqa: E402
from mep import requests as rq                  # noqa: E402
from tools.mepsim import Meter                  # noqa: E402
from tools.mepsim.serve import SimPort, serve_tcp   # noqa: E402

KEY = b'ABCDEFGHIJKLMNOP'


def cycle_bytes():
    """Bytes on the wire for one BT23 partial + BT28 full read, both directions."""
    bt23_req = 2 + len(rq.partial_read(rq.BT23, 0, 16)) + 12
    bt23_resp = 2 + 1 + 2 + 16 + 8
    bt28_req = 2 + len(rq.full_read(rq.BT28)) + 12
    bt28_resp = 2 + 1 + 2 + 220 + 8
    return bt23_req + bt23_resp + bt28_req + bt28_resp


async def bench(seconds, tcp, turnaround_ms):
    meter = Meter(key=KEY, turnaround_ms=turnaround_ms)
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
    poller.on_reading(lambda r: stamps.append(time.monotonic()))
    task = asyncio.create_task(link.run())
    t0 = time.monotonic()
    while len(stamps) < 3 and time.monotonic() - t0 < 30:
        await asyncio.sleep(0.05)
    if len(stamps) < 3:
        raise SystemExit('no readings: %r' % (link.status(),))
    first = len(stamps)
    await asyncio.sleep(seconds)
    task.cancel()
    if server is not None:
        server.close()
    n = len(stamps) - first
    period = (stamps[-1] - stamps[first - 1]) / n * 1000
    nbytes = cycle_bytes()
    floor = nbytes * 10 / 9600 * 1000
    st = link.status()
    print('transport            %s' % ('TCP + firmware host port' if tcp else 'in-process'))
    print('cycles measured      %d in %.1f s' % (n, stamps[-1] - stamps[first - 1]))
    print('cycle period         %.1f ms (BT23 partial + BT28 full read)' % period)
    print('wire-time floor      %.1f ms (%d bytes at 9600 8N1)' % (floor, nbytes))
    print('meter turnaround     %d ms x 2 (simulator setting, part of the period)' % turnaround_ms)
    print('ratio period/floor   %.3f (target <= 1.15)' % (period / floor))
    print('original firmware    ~%.0f ms (2 s idle + the same bytes)' % (2000 + floor))
    print('link counters        timeouts %d, retransmits %d, seq errors %d'
          % (st['counters']['timeouts'], st['counters']['retransmits'],
             st['counters']['seq_errors']))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=20)
    ap.add_argument('--tcp', action='store_true')
    ap.add_argument('--turnaround-ms', type=int, default=20)
    a = ap.parse_args()
    asyncio.run(bench(a.seconds, a.tcp, a.turnaround_ms))


if __name__ == '__main__':
    main()
