"""The version stamped into an image (release.py) and the record of a built image
(image.json), for tools/image/build.sh; host only."""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'host', 'esp32_board'))


def version():
    """tools/version.py's describe() where the project has it, else pyproject's version and
    the commit."""
    try:
        from tools.version import describe
        return describe()
    except ImportError:
        pass
    with open(os.path.join(ROOT, 'pyproject.toml')) as f:
        v = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)
    try:
        h = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        h = ''
    return v + ('+g' + h if h else '')


def describe(out, chip, board, ver):
    import esp32_flash as ef
    with open(os.path.join(out, 'partitions.csv')) as f:
        parts = ef.parse_csv(f.read())
    slot = ef.ota_slots(parts)[0]['size']
    size = os.path.getsize(os.path.join(out, 'micropython.bin'))
    rec = {'chip': chip, 'board': board, 'version': ver, 'app_bytes': size,
           'slot_bytes': slot, 'free_bytes': slot - size}
    with open(os.path.join(out, 'image.json'), 'w') as f:
        json.dump(rec, f, indent=1)
    print('image %s for %s: app %d bytes in a %d-byte slot (%d KB, %.0f %% free)'
          % (ver, chip, size, slot, (slot - size) // 1024, 100.0 * (slot - size) / slot))
    return rec


if __name__ == '__main__':
    if sys.argv[1:2] == ['--describe']:
        describe(*sys.argv[2:6])
    else:
        print(version())
