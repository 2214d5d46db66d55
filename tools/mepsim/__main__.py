# python -m tools.mepsim: the meter simulator as a standalone program (run from the repo root).
#
#   python -m tools.mepsim [--tcp HOST:PORT | --pty | --serial DEV] [--mbk KEY | --mbk -]
#                          [--seed N] [--turnaround-ms MS] [--baud B] [--gap-ms MS]
#                          [--dup seq|replay] [--auth-rate P] [--alert-every S] [--et58]
#                          [--fault NAME[:COUNT]]... [--control HOST:PORT] [-v]
#
# Control lines (stdin, and --control over TCP, loopback only):
#   alert | fault NAME [COUNT] [key=value...] | status | set p1=1200 u1=231 ... | quit
import argparse
import asyncio
import getpass
import ipaddress
import json
import os
import sys
import threading

from tools.mepsim import Meter
from tools.mepsim.faults import NAMES as FAULTS
from tools.mepsim import serve
from mep import requests

DEMO_MBK = 'ABCDEFGHIJKLMNOPQRST'


def _hostport(text, default_host='127.0.0.1'):
    host, _, port = text.rpartition(':')
    return host or default_host, int(port)


def _value(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v in ('true', 'false'):
        return v == 'true'
    return v


def command(meter, line, kick=None):
    """Execute one control line; returns the reply text (one line)."""
    words = line.split()
    if not words:
        return ''
    cmd = words[0].lower()
    try:
        if cmd == 'alert':
            meter.alert()
            out = 'ok alert scheduled'
        elif cmd == 'fault':
            if len(words) < 2:
                return 'error usage: fault NAME [COUNT] [key=value...]; names: ' + \
                    ' '.join(FAULTS)
            count = 1
            kw = {}
            for w in words[2:]:
                if '=' in w:
                    k, _, v = w.partition('=')
                    kw[k] = _value(v)
                else:
                    count = int(w)
            meter.inject(words[1], count, **kw)
            out = 'ok fault %s x%d' % (words[1], count)
        elif cmd == 'status':
            st = dict(meter.stats)
            st['by_table'] = dict((requests.table_name(k), v)
                                  for k, v in meter.stats['by_table'].items())
            out = json.dumps({'expected_seq': meter.expected_seq, 'stats': st,
                              'alerts_sent': meter.alerts_sent,
                              'alerts_answered': meter.alerts_answered,
                              'alert_latency_ms': [round(x, 1) for x in
                                                   meter.alert_latency_ms],
                              'pending_alert': meter.pending_alert(),
                              'faults': meter.faults.active,
                              'model': meter.model.snapshot()})
        elif cmd == 'set':
            vals = {}
            for w in words[1:]:
                k, _, v = w.partition('=')
                vals[k] = None if v in ('', 'none') else _value(v)
            meter.model.set(**vals)
            out = 'ok set ' + ' '.join(sorted(vals))
        elif cmd == 'quit':
            out = 'ok quit'
        else:
            out = 'error unknown command %r (alert, fault, status, set, quit)' % cmd
    except (ValueError, TypeError) as e:
        out = 'error %s' % e
    if kick is not None:
        kick()
    return out


def _logger(direction, t, data, text):
    sys.stdout.write('%10.1f %s %-48s %s\n' % (t, direction, text, data.hex(' ')))
    sys.stdout.flush()


async def _main(args):
    mbk = args.mbk
    if mbk == '-':
        mbk = getpass.getpass('MBK (20 characters, not echoed): ')
    elif mbk is None:
        mbk = os.environ.get('MEPSIM_MBK', DEMO_MBK)
    meter = Meter(key=mbk, seed=args.seed, turnaround_ms=args.turnaround_ms,
                  byte_ms=10000.0 / args.baud)
    meter.model.et58 = args.et58
    meter.gap_ms = args.gap_ms
    meter.gap_at = args.gap_at
    meter.dup_mode = args.dup
    meter.auth_rate = args.auth_rate
    if args.verbose:
        meter.on_log = _logger
    for f in args.fault or ():
        name, _, count = f.partition(':')
        meter.inject(name, int(count or 1))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    if args.pty:
        path = serve.open_pty(meter)
        pump = serve._PTYS[path].pump
        print('mepsim: pty %s' % path, flush=True)
    elif args.serial:
        link = serve.open_serial(meter, args.serial)
        pump = link.pump
        print('mepsim: serial %s 9600 8N1' % args.serial, flush=True)
    else:
        host, port = _hostport(args.tcp)
        srv = await serve.serve_tcp(meter, host, port)
        pump = srv.pump
        print('mepsim: tcp %s:%d' % (host, srv.port), flush=True)

    def run_line(line):
        reply = command(meter, line, pump.kick)
        if line.split()[:1] == ['quit']:
            stop.set()
        return reply

    def stdin_thread():
        for line in sys.stdin:
            if line.strip():
                fut = asyncio.run_coroutine_threadsafe(_call(run_line, line), loop)
                print(fut.result(), flush=True)
        # stdin closed: keep running (a daemon under a service manager has no stdin)

    async def _call(fn, line):
        return fn(line)

    if not args.no_stdin:
        threading.Thread(target=stdin_thread, daemon=True).start()

    if args.control:
        chost, cport = _hostport(args.control)
        if not ipaddress.ip_address(chost).is_loopback:
            raise SystemExit('--control must be a loopback address')

        async def control_client(reader, writer):
            try:
                while True:
                    line = await reader.readline()
                    if not line:
                        break
                    text = line.decode(errors='replace').strip()
                    if text:
                        writer.write((run_line(text) + '\n').encode())
                        await writer.drain()
            except (ConnectionError, OSError):
                pass
            writer.close()

        csrv = await asyncio.start_server(control_client, chost, cport)
        print('mepsim: control %s:%d' % (chost, csrv.sockets[0].getsockname()[1]),
              flush=True)

    async def alerts():
        while True:
            await asyncio.sleep(args.alert_every)
            meter.alert(pump.now())
            pump.kick()

    if args.alert_every:
        loop.create_task(alerts())
    await stop.wait()


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.mepsim',
                                description='NES meter simulator behind the MEP.')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--tcp', default='127.0.0.1:7700', help='HOST:PORT (default %(default)s)')
    g.add_argument('--pty', action='store_true', help='serve on a new pseudo-terminal')
    g.add_argument('--serial', metavar='DEV', help='serve on a serial device (9600 8N1)')
    p.add_argument('--mbk', nargs='?', const='-',
                   help='the 20-character MBK; "--mbk" alone asks without echo '
                        '(default: $MEPSIM_MBK or the demo key %s)' % DEMO_MBK)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--turnaround-ms', type=float, default=20,
                   help='end of a request to the first answer byte (default %(default)s)')
    p.add_argument('--baud', type=float, default=9600,
                   help='pacing of the answers in bits/s, 10 bits a byte; below 9600 '
                        'sends slower than the line rate (default %(default)s)')
    p.add_argument('--gap-ms', type=float, default=0,
                   help='a pause this long inside every answer (default none)')
    p.add_argument('--gap-at', type=int, metavar='BYTES',
                   help='where the pause goes (default: half-way)')
    p.add_argument('--dup', choices=('seq', 'replay'), default='seq',
                   help='a repeated request: refused with 0x0C and SEQ+1 as a real meter '
                        'does (seq, default) or answered again (replay)')
    p.add_argument('--auth-rate', type=float, default=0.0, metavar='P',
                   help='chance of an occasional 0x0B with the right key (e.g. 0.02)')
    p.add_argument('--alert-every', type=float, metavar='SECONDS')
    p.add_argument('--fault', action='append', metavar='NAME[:COUNT]',
                   help='inject a fault at start (repeatable): ' + ', '.join(FAULTS))
    p.add_argument('--et58', action='store_true', help='procedure results go to ET58')
    p.add_argument('--control', metavar='HOST:PORT', help='control lines over TCP (loopback)')
    p.add_argument('--no-stdin', action='store_true', help='no control lines on stdin')
    p.add_argument('-v', '--verbose', action='store_true', help='log every request/response')
    args = p.parse_args(argv)
    try:
        asyncio.run(_main(args))
    except KeyboardInterrupt:
        pass
    except ValueError as e:
        raise SystemExit('mepsim: %s' % e)


if __name__ == '__main__':
    main()
