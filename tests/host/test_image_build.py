# The image build (tools/image/build.sh, its board definitions and partition table) cannot
# run here: it needs ESP-IDF. What a PC can check is checked: the command says so and exits
# non-zero; the manifest freezes every app module, microdot and the stamped release.py; the
# board definitions name the right manifest, chip settings and table; flash.py reads the
# table inside a firmware.bin and builds the signed image file from an app image (and refuses
# firmware.bin in its place).
import json
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
IMG = os.path.join(ROOT, 'tools', 'image')
EMU = os.path.join(ROOT, 'tools', 'host', 'esp32_board')
if EMU not in sys.path:
    sys.path.insert(0, EMU)
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import esp32_flash as ef  # noqa: E402
import flash  # noqa: E402
import imagefile  # noqa: E402

KEY_HEX = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff'


def run_manifest(env, port='unix'):
    """Execute firmware/manifest.py as MicroPython's manifest tool does (in firmware/):
    the modules it freezes, as paths. port 'esp32': the unix port's variants/ is not there
    (the tool raises on a missing include), what freeze() takes is listed as 'freeze:...'."""
    frozen = []

    def include(p):
        if port == 'esp32' and 'variants/' in p:
            raise OSError('no such manifest: ' + p)
        frozen.append('include:' + p)
    g = {'metadata': lambda **k: None, 'include': include,
         'freeze': lambda p, *a, **k: frozen.append('freeze:' + p),
         'require': lambda *a, **k: frozen.append('require:' + a[0]),
         'module': lambda p, base_path='.': frozen.append(
             os.path.normpath(os.path.join(base_path, p)))}
    old = dict(os.environ)
    cwd = os.getcwd()
    os.environ.update(env)
    os.chdir(os.path.join(ROOT, 'firmware'))
    try:
        with open('manifest.py') as f:
            exec(compile(f.read(), 'manifest.py', 'exec'), g)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(old)
    return frozen


def test_manifest_freezes_every_app_module_and_the_release(tmp_path):
    rel = tmp_path / 'release.py'
    rel.write_text("VERSION = '9.9.9'\n")
    frozen = run_manifest({'MEP_RELEASE_PY': str(rel)})
    fw = os.path.join(ROOT, 'firmware')
    want = set()
    for d, dirs, names in os.walk(fw):
        dirs[:] = [x for x in dirs if x not in ('static', 'src', '__pycache__', 'node_modules')]
        for n in names:
            rel_p = os.path.relpath(os.path.join(d, n), fw)
            if n.endswith('.py') and rel_p not in ('boot.py', 'main.py', 'manifest.py'):
                want.add(rel_p)
    got = {p for p in frozen if not p.startswith(('require:', 'include:', '/', '..'))}
    assert want and got == want, (want - got, got - want)
    assert 'system/imgota.py' in got and 'web/imgupdate.py' in got
    assert str(rel) in frozen                                   # the stamped version
    assert any(p.endswith('microdot/microdot.py') for p in frozen)
    # without the stamp (a hand-made image) no release.py
    assert not any(p.endswith('release.py') for p in run_manifest({}))


@pytest.mark.parametrize('port', ['esp32', 'unix'])
def test_manifest_freezes_the_pinned_umqtt_not_micropython_libs(port, tmp_path):
    """The image has the umqtt.simple every test runs: the pinned PyPI release from the venv
    (tools/mpy_lib.py), frozen as umqtt/simple.py; micropython-lib's is not required, on
    the esp32 port neither through the port's own list (umqtt.robust requires it), which is
    kept otherwise. Without the pinned file the build stops with a clear error."""
    from tools import mpy_lib
    lib = mpy_lib.lib_dir()
    assert mpy_lib.installed(lib), 'no pinned umqtt.simple: ./dev setup'
    frozen = run_manifest({'MEP_VENV': sys.prefix}, port)
    assert os.path.join(lib, 'umqtt', 'simple.py') in frozen
    assert [p for p in frozen if p.endswith('umqtt/simple.py')] == \
        [os.path.join(lib, 'umqtt', 'simple.py')]
    assert not [p for p in frozen if 'umqtt' in p and p.startswith(('require:', 'include:'))]
    if port == 'esp32':
        assert 'include:$(PORT_DIR)/boards/manifest.py' not in frozen
        for kept in ('freeze:$(PORT_DIR)/modules', 'include:$(MPY_DIR)/extmod/asyncio',
                     'require:bundle-networking', 'require:neopixel', 'require:upysh'):
            assert kept in frozen, kept
    else:
        assert 'include:$(PORT_DIR)/variants/standard/manifest.py' in frozen
    # MEP_MPY_LIB names the folder: one without the pinned file (or another version of it)
    # stops the build and says what to do
    (tmp_path / 'umqtt').mkdir()
    (tmp_path / 'umqtt' / 'simple.py').write_text('# another umqtt\n')
    with pytest.raises(Exception, match=r'the pinned umqtt.simple \(micropython-umqtt.simple '
                       r'1\.3\.4, tools/mpy_lib.py\) is not in .*: run ./dev setup'):
        run_manifest({'MEP_MPY_LIB': str(tmp_path)}, port)
    got = run_manifest({'MEP_MPY_LIB': lib}, port)
    assert os.path.join(lib, 'umqtt', 'simple.py') in got


def test_board_definitions_name_the_right_files():
    for board, chip in (('MEP_ESP32', 'esp32'), ('MEP_ESP32_C3', 'esp32c3')):
        d = os.path.join(IMG, 'boards', board)
        cm = open(os.path.join(d, 'mpconfigboard.cmake')).read()
        m = re.search(r'MICROPY_FROZEN_MANIFEST \$\{MICROPY_BOARD_DIR\}/([^)\s]+)', cm)
        assert m, board
        assert os.path.normpath(os.path.join(d, m.group(1))) == \
            os.path.join(ROOT, 'firmware', 'manifest.py')
        assert '$ENV{MEP_SDKCONFIG_PARTITIONS}' in cm
        if chip == 'esp32':
            assert 'set(IDF_TARGET esp32)' in cm and 'boards/sdkconfig.base' in cm
        else:
            assert 'include(boards/mpconfigboard_esp32c3_common.cmake)' in cm
        assert 'MICROPY_HW_BOARD_NAME' in open(os.path.join(d, 'mpconfigboard.h')).read()
        sh = open(os.path.join(IMG, 'build.sh')).read()
        assert '%s) BOARD=%s ;;' % (chip, board) in sh
    assert 'partitions-mep-4MiB-ota.csv' in sh and 'MEP_RELEASE_PY' in sh
    assert 'v1.29.0' in sh


def test_build_says_it_needs_esp_idf():
    env = {k: v for k, v in os.environ.items() if not k.startswith('IDF_')}
    env['PATH'] = '/usr/bin:/bin'
    r = subprocess.run(['sh', os.path.join(IMG, 'build.sh'), 'esp32'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert 'ESP-IDF is not set up in this shell' in r.stderr
    assert 'espressif/idf' in r.stderr
    r = subprocess.run(['sh', os.path.join(IMG, 'build.sh'), 'esp8266'], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'usage' in r.stderr


def fake_firmware_bin(path, chip, parts):
    """What build.sh's firmware.bin holds where flash.py looks: the table at 0x8000."""
    data = bytearray(b'\xff' * (ef.PT_OFFSET - flash.FLASH_OFFSET[chip] + 0x1000))
    data[0:16] = bytes([0xE9, 3, 2, 0x20] + [0] * 8 + [{'esp32': 0, 'esp32c3': 5}[chip], 0, 0,
                                                         0])       # the bootloader's header
    off = ef.PT_OFFSET - flash.FLASH_OFFSET[chip]
    data[off:off + ef.PT_SIZE] = ef.table_bin(parts)
    with open(path, 'wb') as f:
        f.write(bytes(data) + ef.build_image([(0x3F400020, ef.app_desc('1.0.0'))], 0))


@pytest.mark.parametrize('chip', ['esp32', 'esp32c3'])
def test_flash_reads_the_table_in_firmware_bin(tmp_path, chip):
    csv = open(os.path.join(IMG, 'partitions-mep-4MiB-ota.csv')).read()
    p = str(tmp_path / 'firmware.bin')
    fake_firmware_bin(p, chip, ef.parse_csv(csv))
    assert [x['name'] for x in flash.image_table(p, chip)] == \
        ['nvs', 'otadata', 'phy_init', 'ota_0', 'ota_1', 'vfs']
    assert 'app slots ota_0, ota_1 of 1920 KB' in flash.describe_table(p, chip)
    stock = ef.parse_csv('nvs, data, nvs, 0x9000, 0x6000\nphy_init, data, phy, 0xf000, 0x1000\n'
                         'factory, app, factory, 0x10000, 0x1F0000\n')
    fake_firmware_bin(p, chip, stock)
    assert 'no OTA slots' in flash.describe_table(p, chip)


def test_flash_image_builds_the_signed_update_file(tmp_path):
    key = tmp_path / 'key'
    key.write_text(KEY_HEX)
    app = ef.build_image([(0x3F400020, ef.app_desc('1.2.3')), (0x3F410020, b'x' * 5000)], 5)
    d = tmp_path / 'image' / 'esp32c3'
    d.mkdir(parents=True)
    (d / 'micropython.bin').write_bytes(app)
    (d / 'image.json').write_text(json.dumps({'version': '1.2.3+4.gabc'}))
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'flash.py'), 'image',
                        '--image', str(d / 'micropython.bin'), '--key-file', str(key)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    out = d / 'mep-1.2.3-4.gabc.img'
    assert 'signed image file %s: esp32c3, version 1.2.3+4.gabc' % out in r.stdout
    m = imagefile.verify(str(out), bytes.fromhex(KEY_HEX))
    assert m['device'] == 'esp32c3' and m['size'] == len(app) and m['kind'] == 'image'
    # firmware.bin (bootloader first) in place of the app image: refused
    fw = tmp_path / 'firmware.bin'
    fake_firmware_bin(str(fw), 'esp32c3', [])
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'flash.py'), 'image',
                        '--image', str(fw), '--key-file', str(key), '--version', '1'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'not firmware.bin' in r.stderr, r.stderr


def test_write_micropython_writes_the_image_with_its_table(tmp_path, monkeypatch, capsys):
    """--write-micropython with build.sh's firmware.bin: esptool erases the flash (otadata
    too, so ota_0 starts first) and writes the file with the bootloader and the OTA table at
    the chip's offset; flash.py names the image and the table. (esptool's answers stand in
    for a board here: a real one cannot be attached.)"""
    import subprocess as sp
    d = tmp_path / 'image' / 'esp32'
    d.mkdir(parents=True)
    fw = d / 'firmware.bin'
    fake_firmware_bin(str(fw), 'esp32', ef.parse_csv(open(os.path.join(
        IMG, 'partitions-mep-4MiB-ota.csv')).read()))
    (d / 'image.json').write_text(json.dumps({'version': '0.2.0+3.gabcdef0'}))
    calls = []
    monkeypatch.setattr(flash, 'run', lambda cmd, timeout, what: calls.append(cmd) or
                        sp.CompletedProcess(cmd, 0, '', ''))
    monkeypatch.setattr(flash.time, 'sleep', lambda s: None)
    assert flash.write_micropython('/dev/ttyUSB9', str(fw)) == 'esp32'
    out = capsys.readouterr().out
    assert "the project's image, version 0.2.0+3.gabcdef0" in out
    assert 'partition table: OTA, app slots ota_0, ota_1 of 1920 KB' in out
    assert calls[0][3:5] == ['--chip', 'esp32']
    assert [c[7:] for c in calls] == [['erase-flash'],
                                      ['--baud', '460800', 'write-flash', '0x1000', str(fw)]]
