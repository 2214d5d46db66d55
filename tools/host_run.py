"""Run the firmware on this PC against the meter simulator.

The firmware code is the same that runs on the ESP32; the 'host' board profile swaps the
UART for a TCP connection (or a pseudo-terminal) to the simulator and makes WiFi a no-op.

    ./dev run                      simulator + firmware, web UI on http://127.0.0.1:8080/
    ./dev run --mep /dev/pts/5     talk to a simulator (or a real meter adapter) elsewhere
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_MBK = 'ABCDEFGHIJKLMNOPQRST'     # the simulator's default key


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_simulator(port, args):
    cmd = [sys.executable, '-m', 'tools.mepsim', '--tcp', '127.0.0.1:%d' % port, '--no-stdin']
    if args.alert_every:
        cmd += ['--alert-every', str(args.alert_every)]
    if args.sim_control:
        cmd += ['--control', args.sim_control]
    cmd += ['--turnaround-ms', str(args.meter_turnaround), '--gap-ms', str(args.meter_gap),
            '--baud', str(args.meter_baud)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=dict(os.environ, MEPSIM_MBK=DEMO_MBK))
    deadline = time.time() + 15
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if 'tcp' in line:
            return proc
    proc.kill()
    raise SystemExit('the meter simulator did not start')


def prepare_config(data_dir, args):
    """First run on the PC: point the firmware at the simulator with its demo MBK."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, 'config.json')
    sys.path.insert(0, os.path.join(ROOT, 'firmware'))
    from system.config import Config
    cfg = Config(path)
    cfg.load()
    changes = {'board': 'host', 'fast_mode': args.fast}
    if not cfg['mbk'] and not args.no_sim:
        changes['mbk'] = DEMO_MBK
    if args.mqtt:
        host, _, port = args.mqtt.rpartition(':')
        changes.update({'mqtt_enabled': True, 'mqtt_host': host, 'mqtt_port': int(port)})
    errors = cfg.update(changes)
    if errors:
        raise SystemExit('config: %s' % json.dumps(errors))
    cfg.save()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--http-port', type=int, default=8080, help='web UI port (0: none)')
    ap.add_argument('--data-dir', default=os.path.join(ROOT, '.run'),
                    help='where the config and history live (default .run/)')
    ap.add_argument('--mep', help='HOST:PORT or device path of a meter; default: start the '
                                  'built-in simulator')
    ap.add_argument('--no-sim', action='store_true', help='do not start the simulator')
    ap.add_argument('--fast', action='store_true', help='fast mode: BT28 back to back, BT23 at its interval')
    ap.add_argument('--mqtt', help='HOST:PORT of an MQTT broker to publish to')
    ap.add_argument('--alert-every', type=float, default=0,
                    help='let the simulator raise an alert this often (seconds)')
    ap.add_argument('--sim-control', help='HOST:PORT for the simulator control channel')
    ap.add_argument('--meter-turnaround', type=float, default=20, metavar='MS',
                    help='the simulated meter answers this long after a request (default 20)')
    ap.add_argument('--meter-gap', type=float, default=0, metavar='MS',
                    help='a pause this long inside every answer of the simulated meter')
    ap.add_argument('--meter-baud', type=float, default=9600,
                    help='pacing of the simulated meter\'s answers (default 9600)')
    ap.add_argument('--quiet', action='store_true', help='do not print every reading')
    args = ap.parse_args(argv)

    sim = None
    target = args.mep
    if not target:
        if args.no_sim:
            raise SystemExit('--no-sim needs --mep')
        port = free_port()
        sim = start_simulator(port, args)
        target = '127.0.0.1:%d' % port
        print('meter simulator on %s (MBK %s)' % (target, 'demo key'))
    prepare_config(args.data_dir, args)
    for p in (os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools', 'host'),
              os.path.join(ROOT, 'tests', 'host', 'shim')):
        if p not in sys.path:
            sys.path.insert(0, p)
    import app
    if args.http_port:
        print('web UI: http://127.0.0.1:%d/' % args.http_port)
    try:
        app.run('host', data_dir=args.data_dir, mep_target=target, http_port=args.http_port,
                console=not args.quiet, supervise=True)
    except KeyboardInterrupt:
        pass
    finally:
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(5)
            except subprocess.TimeoutExpired:
                sim.kill()


if __name__ == '__main__':
    main()
