# Image updates end to end on the virtual board with the ESP32's update machinery emulated
# (tools/vboard.py --ota-flash: a flash file with the project's OTA partition table, otadata,
# esp32.Partition on the board, a bootloader with rollback at every hard reset; an image is
# the frozen app plus release.py with its version). The real app on real MicroPython takes a
# signed image file on its update page, the bootloader starts it, the app confirms it once it
# proven itself (run a while, served its web UI, read the meter); a release that crashes at
# start is rolled back by the bootloader at the reset that follows, one whose web UI never
# answers once its time to prove itself is over (the watchdog's reset); a power cut during
# the upload or before the confirmation always brings the board back on the old image.
# MEP_VBOARD_POWERCUT_TRIALS=N runs N power-cut trials of each kind (default 1).
import json
import os
import random
import shutil
import sys
import threading
import time
import urllib.request

import pytest

from test_vboard import (Console, MBK, READING, WEB_PW, WIFI_PW, first_config, frozen_app,  # noqa: F401
                         free_port, login, sim, wait_for, web)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EMU = os.path.join(ROOT, 'tools', 'host', 'esp32_board')
if EMU not in sys.path:
    sys.path.insert(0, EMU)

import esp32_flash as ef  # noqa: E402
import vimage  # noqa: E402
import flash  # noqa: E402
import vboard  # noqa: E402
from tools import imagefile  # noqa: E402

CSV = os.path.join(ROOT, 'tools', 'image', 'partitions-mep-4MiB-ota.csv')
NO_WEB_UI = {'web/server.mpy': None,  # starts, reads the meter, feeds the watchdog; no web UI
             'web/server.py': b"raise ImportError('no web UI here')\n"}
BROKEN = {'hw_host.mpy': None,       # the release fails inside app.run(): device_main resets
          'hw_host.py': b"raise RuntimeError('broken release')\n"}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The frozen app, a key, and a prepared filesystem (boot.py, main.py, pages, config)."""
    tmp = tmp_path_factory.mktemp('imgota')
    app_dir, build = frozen_app(tmp)
    fs = tmp / 'fs-template'
    fs.mkdir()
    for rel in flash.AS_SOURCE:
        shutil.copyfile(os.path.join(build, rel), str(fs / rel))
    shutil.copytree(os.path.join(build, 'web', 'static'), str(fs / 'lib' / 'web' / 'static'))
    cfg = first_config(tmp, fs)
    key = bytes.fromhex(cfg['ota_key'])
    images = {v: vimage.make_image(app_dir, v) for v in ('1.0.0', '2.0.0')}
    images['3.0.0'] = vimage.make_image(app_dir, '3.0.0', BROKEN)
    images['4.0.0'] = vimage.make_image(app_dir, '4.0.0', NO_WEB_UI)
    return {'tmp': tmp, 'fs': str(fs), 'key': key, 'images': images}


GOOD_AFTER_MS = 5000    # the supervisor's "ran long enough" (60 s on a board)
WDT_SCALE = 0.25        # the virtual watchdog's 30 s run as 7.5 s


class Board:
    def __init__(self, setup, sim, name, env=None):
        tmp = setup['tmp'] / name
        tmp.mkdir()
        self.fs = str(tmp / 'fs')
        shutil.copytree(setup['fs'], self.fs)
        self.flash_path = str(tmp / 'flash.bin')
        fl = ef.new_flash(self.flash_path, ef.parse_csv(open(CSV).read()))
        vimage.write_slot(fl, 'ota_0', setup['images']['1.0.0'])   # as written by cable
        self.flash = fl
        self.http = free_port()
        self.console = Console(str(tmp / 'console.log'))
        self.vb = vboard.VBoard(self.fs, console=self.console.f, log=lambda m: None,
                                ota_flash=self.flash_path, wdt_scale=WDT_SCALE,
                                env=dict({'MEP_TARGET': sim, 'MEP_HTTP_PORT': str(self.http),
                                          'MEP_CONSOLE': '1',
                                          'MEP_GOOD_AFTER_MS': str(GOOD_AFTER_MS)},
                                         **(env or {})))
        self.vb.http = self.http
        self.key = setup['key']
        self.images = setup['images']

    def start(self):
        self.vb.start()

    def stop(self):
        self.vb.stop()

    def up(self, timeout=90):
        """Wait for the app of this boot to serve its web UI; a logged-in opener."""
        since = self.console.size()

        def ok():
            try:
                return web(self.vb, '/api/session')[0] == 200
            except OSError:
                return False
        wait_for(ok, timeout, 'the web UI')
        del since
        return login(self.vb, WEB_PW)

    def status(self, o):
        st, body = web(self.vb, '/api/status', opener=o)
        assert st == 200, body
        return json.loads(body)

    def upload(self, o, data, csrf):
        req = urllib.request.Request('http://127.0.0.1:%d/api/ota' % self.http, data=data,
                                     headers={'X-CSRF-Token': csrf,
                                              'Content-Type': 'application/octet-stream'})
        try:
            r = o.open(req, timeout=120)
            return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def file(self, version, key=None):
        return imagefile.pack(self.images[version], key or self.key, version)

    def reset(self):
        """RESET pressed (the interpreter killed, the bootloader runs)."""
        self.vb.hard_reset()

    def cut(self):
        """The power fails at this moment and comes back."""
        self.vb.power_cut()


def test_image_update_end_to_end(setup, sim):
    b = Board(setup, sim, 'e2e')
    b.start()
    try:
        assert b.vb.booted == ('ota_0', '1.0.0')
        o = b.up()
        d = b.status(o)
        im = d['image']
        assert im['slot'] == 'ota_0' and im['version'] == '1.0.0' and im['slot_kb'] == 1920
        assert im['staged'] is None and im['trial'] is None and d['update'] is None

        # refused: another key, another chip; nothing staged
        st, r = b.upload(o, b.file('2.0.0', key=bytes(32)), d['csrf'])
        assert st == 400 and 'bad signature' in r['error'], r
        esp32 = imagefile.pack(b.images['2.0.0'], b.key, '2.0.0', device='esp32')
        st, r = b.upload(o, esp32, d['csrf'])
        assert st == 400 and "image is for 'esp32', this device is 'host'" in r['error'], r
        assert b.status(o)['image']['staged'] is None

        # the update: streamed into ota_1, verified, made the boot slot
        st, r = b.upload(o, b.file('2.0.0'), d['csrf'])
        assert st == 200 and r['slot'] == 'ota_1' and r['version'] == '2.0.0', r
        im = b.status(o)['image']
        assert im['slot'] == 'ota_0' and im['staged'] == {'slot': 'ota_1', 'version': '2.0.0'}
        b.reset()
        assert b.vb.booted == ('ota_1', '2.0.0')
        o = b.up()
        d = b.status(o)
        im = d['image']
        assert im['slot'] == 'ota_1' and im['version'] == '2.0.0' and im['trial'] == '2.0.0'
        assert d['version'] == '2.0.0'
        assert d['update']['result'] == 'on trial' and d['update']['previous'] == '1.0.0'
        assert ef.state_of(b.flash, 'ota_1') == 'pending verify'
        # kept once it has run a while (here 5 s, a minute on a board) and served its web UI
        # and read the meter (the supervisor's proven-good hook), not before
        wait_for(lambda: READING.search(b.console.text()), 60, 'a reading')
        wait_for(lambda: (b.status(o)['update'] or {}).get('result') == 'updated', 100,
                 'the image confirmed')
        assert ef.state_of(b.flash, 'ota_1') == 'valid'
        d = b.status(o)
        assert d['image']['trial'] is None and d['update']['version'] == '2.0.0'

        # a release that crashes at start: the reset that follows goes back to 2.0.0
        d = b.status(o)
        st, r = b.upload(o, b.file('3.0.0'), d['csrf'])
        assert st == 200 and r['slot'] == 'ota_0', r
        n = b.vb.resets['hard']
        b.reset()
        assert b.vb.booted == ('ota_0', '3.0.0')
        wait_for(lambda: 'broken release' in b.console.text(), 60, 'the crash')
        # device_main reboots 10 s after the crash: the bootloader rolls the image back
        wait_for(lambda: b.vb.resets['hard'] >= n + 2, 60, 'the reset after the crash')
        assert b.vb.booted == ('ota_1', '2.0.0')
        o = b.up()
        d = b.status(o)
        im = d['image']
        assert im['slot'] == 'ota_1' and im['version'] == '2.0.0'
        u = d['update']
        assert u['rolled_back'] and u['version'] == '3.0.0' and u['previous'] == '2.0.0'
        assert 'did not confirm itself' in u['reason'] and 'started ota_1 again' in u['reason']
        st, body = web(b.vb, '/status', opener=o)
        assert st == 200
    finally:
        b.stop()


def test_an_image_whose_web_ui_never_answers_is_never_confirmed(setup, sim):
    """It starts, reads the meter and feeds the watchdog, but serves no web UI: it is never
    marked valid; once its time to prove itself is over (here 12 s, 10 min on a board) the
    supervisor stops feeding the watchdog, and the bootloader starts the previous image."""
    b = Board(setup, sim, 'noweb', env={'MEP_PROVE_WITHIN_MS': '12000'})
    b.start()
    try:
        o = b.up()
        d = b.status(o)
        st, r = b.upload(o, b.file('4.0.0'), d['csrf'])
        assert st == 200 and r['slot'] == 'ota_1', r
        n = b.console.size()
        b.reset()
        assert b.vb.booted == ('ota_1', '4.0.0')
        wait_for(lambda: 'web UI unavailable' in b.console.text(n), 60, 'the new image')
        wait_for(lambda: READING.search(b.console.text(n)), 60, 'a reading')
        assert ef.state_of(b.flash, 'ota_1') == 'pending verify'      # never confirmed
        wait_for(lambda: b.vb.booted == ('ota_0', '1.0.0'), 120, 'the rollback')
        assert b.vb.watchdog_resets == 1
        assert 'supervisor: it did not prove itself within 12 s' in b.console.text(n)
        o = b.up()
        u = b.status(o)['update']
        assert u['rolled_back'] and u['version'] == '4.0.0' and u['previous'] == '1.0.0', u
        assert u['reason'] == ('it did not prove itself within 12 s (the web UI has not '
                               'answered): the bootloader started ota_0 again'), u
    finally:
        b.stop()


def upload_cut(b, o, data, csrf, cut_at):
    """POST the image file and cut the power once `cut_at` bytes of it have gone out."""
    import http.client
    cookie = '; '.join('%s=%s' % (c.name, c.value) for c in COOKIES[o])
    conn = http.client.HTTPConnection('127.0.0.1', b.http, timeout=60)
    conn.putrequest('POST', '/api/ota')
    for k, v in (('Content-Length', str(len(data))), ('X-CSRF-Token', csrf),
                 ('Content-Type', 'application/octet-stream'), ('Cookie', cookie)):
        conn.putheader(k, v)
    conn.endheaders()
    sent = 0
    try:
        while sent < cut_at:
            n = min(4096, cut_at - sent)
            conn.send(data[sent:sent + n])
            sent += n
        time.sleep(0.3)             # let the board take in what was sent
    finally:
        b.cut()
        conn.close()
    return sent


COOKIES = {}


def login_keep(b):
    """Log in; keep the cookie jar to send it by hand during a cut upload."""
    import http.cookiejar
    jar = http.cookiejar.CookieJar()
    o = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    st, body = web(b.vb, '/api/session', opener=o)
    st, body = web(b.vb, '/login', json.dumps({'password': WEB_PW}).encode(),
                   {'Content-Type': 'application/json',
                    'X-CSRF-Token': json.loads(body)['csrf']}, o)
    assert st == 200, body
    COOKIES[o] = jar
    return o


def test_power_cut_during_upload_and_before_confirmation(setup, sim):
    n = int(os.environ.get('MEP_VBOARD_POWERCUT_TRIALS', '1'))
    rnd = random.Random(int(os.environ.get('MEP_POWERCUT_SEED', '27')))
    b = Board(setup, sim, 'cuts', env={'MEP_GOOD_AFTER_MS': '20000'})
    b.start()
    tally = []
    try:
        b.up()
        o = login_keep(b)
        old = b.vb.booted
        data = b.file('2.0.0')
        for i in range(n):
            # during the upload: the power fails after a random share of the file went out
            d = b.status(o)
            cut = rnd.randrange(100, len(data))
            upload_cut(b, o, data, d['csrf'], cut)
            b.up()
            o = login_keep(b)
            tally.append(('upload at %d of %d bytes' % (cut, len(data)), b.vb.booted[1]))
            assert b.vb.booted == old, b.vb.booted
            im = b.status(o)['image']
            assert im['staged'] is None and im['trial'] is None, im
            # before the confirmation: a complete upload, restart, cut at a random moment
            # before the app may confirm it (here after 20 s, on a board after a minute)
            d = b.status(o)
            st, r = b.upload(o, data, d['csrf'])
            assert st == 200, r
            b.reset()
            assert b.vb.booted[1] == '2.0.0'
            t = rnd.random() * 15
            time.sleep(t)
            b.cut()
            b.up()
            o = login_keep(b)
            tally.append(('%.0f s after the new image started' % t, b.vb.booted[1]))
            assert b.vb.booted == old
            u = b.status(o)['update']
            assert u['rolled_back'] and u['version'] == '2.0.0', u
        print('\nvirtual board power cuts (%d trials of each kind): %s' % (n, tally))
    finally:
        b.stop()
