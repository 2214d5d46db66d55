"""What a TLS connection to the MQTT broker costs the firmware on a MicroPython unix port:
heap held while connected, the heap the connect needs at its peak (the smallest -X heapsize at
which it still connects), and how long the event loop is held at most while connecting.
Plain MQTT, TLS verified (a CA made here, given as mqtt_ca, besides the built-in roots) and
TLS with mqtt_tls_insecure, against a local mosquitto. Prints numbers; passes or fails nothing.

    python -m tools.bench_tls [--micropython PATH] [--runs 3]

On the unix port mbedTLS allocates from MicroPython's heap (so it is counted here); on the
ESP32 it allocates from ESP-IDF's heap, beside MicroPython's (README, Memory).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = os.path.join(ROOT, 'tests', 'host')
for _p in (HOST, ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from mqtt_broker import Broker          # noqa: E402
from tlsca import TestCA                # noqa: E402
from tools import bench_heap as bh      # noqa: E402


TREE = [os.path.join(ROOT, 'firmware')]     # main() puts the compiled tree here


def probe(exe, cfg, heap):
    lib = bh.find_umqtt(bh.lib_dirs())
    env = dict(os.environ, MICROPYPATH=':'.join(['.frozen', TREE[0], lib]))
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
        json.dump(cfg, f)
    try:
        r = subprocess.run([exe, '-X', 'heapsize=%d' % heap,
                            os.path.join(HOST, 'mpy_tls_probe.py'), 'mqtt', f.name],
                           capture_output=True, text=True, timeout=60, env=env)
    finally:
        os.unlink(f.name)
    lines = r.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {'connected': False, 'last_error': (r.stdout + r.stderr)[-200:]}


def smallest_heap(exe, cfg, lo=16 * 1024, hi=1024 * 1024, step=1024):
    """The smallest heap (bytes, to `step`) at which the publisher connects and publishes."""
    ok = lambda h: probe(exe, cfg, h).get('published', 0) >= 1
    if not ok(hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--micropython', default=None, help='default: the pinned unix port')
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--source', action='store_true', help='run firmware/*.py, not .mpy files')
    a = ap.parse_args()
    exe = a.micropython or bh.pinned_micropython()
    tmp = tempfile.mkdtemp(prefix='bench-tls-')
    if not a.source:
        TREE[0] = os.path.join(tmp, 'fw')       # the firmware as .mpy files, as flash.py puts it
        bh.build_tree(TREE[0], bh.mpy_cross_cmd(None), False)
    ca = TestCA(tmp)
    plain = Broker().start()
    tls = Broker(tls=ca.server('localhost', '127.0.0.1')).start()
    base = {'mqtt_enabled': True, 'mqtt_host': '127.0.0.1', 'mqtt_user': '', 'mqtt_password': '',
            'mqtt_prefix': 'mep', 'mqtt_device_id': 'bench', 'mqtt_commands': False,
            'ha_discovery': False, 'hostname': 'mepmod', 'mqtt_tls_insecure': False,
            'mqtt_ca': ''}
    cases = (('plain', dict(base, mqtt_port=plain.port, mqtt_tls=False)),
             ('TLS verified', dict(base, mqtt_port=tls.port, mqtt_tls=True,
                                   mqtt_ca=ca.pem.decode())),
             ('TLS insecure', dict(base, mqtt_port=tls.port, mqtt_tls=True,
                                   mqtt_tls_insecure=True)))
    try:
        out = subprocess.run([exe, '-c', 'import sys; print(sys.implementation._machine, '
                              'sys.maxsize)'], capture_output=True, text=True).stdout.strip()
        print('binary: %s (%s)' % (exe, out))
        res = {}
        for name, cfg in cases:
            held, lag = [], []
            for _ in range(a.runs):
                r = probe(exe, cfg, 1024 * 1024)
                if not r.get('connected'):
                    raise SystemExit('%s: not connected: %s' % (name, r.get('last_error')))
                held.append(r['heap_tls'])
                lag.append(r['lag_ms'])
            peak = smallest_heap(exe, cfg)
            res[name] = (held, lag, peak)
            print('%-13s heap held while connected %s B; smallest heap that connects %s B; '
                  'loop held at most %s ms' % (name, '/'.join(map(str, held)), peak,
                                               '/'.join(map(str, lag))))
        lib = bh.find_umqtt(bh.lib_dirs())
        env = dict(os.environ, MICROPYPATH=':'.join(['.frozen', TREE[0], lib]))
        code = ('import gc, ssl\nfrom net import tcp\ngc.collect()\nf = gc.mem_free()\n'
                'c = tcp.tls_context(%s)\ngc.collect()\nprint(f - gc.mem_free())')
        for name, arg in (('an empty context', 'None, True'), ('the owner\'s CA', repr(ca.pem)),
                          ('the built-in roots', '')):
            r = subprocess.run([exe, '-c', code % arg], capture_output=True, text=True, env=env)
            print('a context with %s holds %s B' % (name, r.stdout.strip() or r.stderr[-200:]))
        p, v = res['plain'], res['TLS verified']
        print('TLS verified over plain: held +%d B, smallest heap +%d B'
              % (min(v[0]) - min(p[0]), (v[2] or 0) - (p[2] or 0)))
    finally:
        plain.close()
        tls.close()


if __name__ == '__main__':
    main()
