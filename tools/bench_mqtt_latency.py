"""Meter reply to MQTT publish latency on this PC: the firmware app (link, poller, MQTT) runs
against the meter simulator and a local mosquitto; for every reading, the time from the
link holding the meter's complete BT28 reply to a subscriber receiving the state message.
Prints p50, p95 and max (target p95 <= 50 ms).

    .venv/bin/python tools/bench_mqtt_latency.py [--readings 200]
"""
import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools', 'host'),
                os.path.join(ROOT, 'tests', 'host', 'shim'),
                os.path.join(ROOT, 'tests', 'host'), ROOT]


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


async def bench(n, tmp, broker):
    from tools.mepsim import Meter
    from tools.mepsim.serve import serve_tcp
    from apphost import write_config, Subscriber, state_seq
    import app as app_mod
    write_config(tmp, mqtt_enabled=True, mqtt_host='127.0.0.1', mqtt_port=broker.port)
    sub = Subscriber(broker.port, 'mep/+/state')
    meter = Meter(key=b'ABCDEFGHIJKLMNOP')
    server = await serve_tcp(meter, '127.0.0.1', 0)
    a = app_mod.App('host', data_dir=tmp, mep_target='127.0.0.1:%d' % server.port, http_port=0,
                    log=lambda *x: None, supervise=False)
    stamps = {}
    a.poller.on_reading(lambda r: stamps.__setitem__(r['seq'], time.monotonic()))
    task = asyncio.create_task(a.main())
    t0 = time.monotonic()
    while len(sub.msgs) < n + 5 and time.monotonic() - t0 < n * 2 + 60:
        await asyncio.sleep(0.1)
    task.cancel()
    try:
        await task
    except BaseException:
        pass
    server.close()
    sub.close()
    lat = []
    for t, topic, payload, retain in sub.msgs[5:]:
        seq = json.loads(payload)['seq']
        if seq in stamps:
            lat.append((t - stamps[seq]) * 1000)
    return lat, a.mqtt.stats()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--readings', type=int, default=200)
    args = ap.parse_args()
    from mqtt_broker import Broker, mosquitto_path
    if not mosquitto_path():
        print('SKIPPED: mosquitto is not installed (./dev setup installs it)')
        return
    broker = Broker()
    broker.start()
    tmp = tempfile.mkdtemp()
    try:
        lat, stats = asyncio.run(bench(args.readings, tmp, broker))
    finally:
        broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if not lat:
        raise SystemExit('no state messages received')
    print('readings measured    %d' % len(lat))
    print('latency p50          %.1f ms' % pct(lat, 50))
    print('latency p95          %.1f ms (target <= 50 ms)' % pct(lat, 95))
    print('latency max          %.1f ms' % max(lat))
    print('mqtt                 published %d, dropped %d, reconnects %d'
          % (stats.get('published', 0), stats.get('drops', 0), stats.get('reconnects', 0)))


if __name__ == '__main__':
    main()
