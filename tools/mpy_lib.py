"""micropython-lib modules the tests run the app with on the MicroPython unix port, from PyPI.

    python -m tools.mpy_lib            install them (./dev setup does), print the folder

The app needs micropython-lib's umqtt.simple. mip's index is no package registry, so the
project takes the copy micropython-lib published on PyPI (micropython-umqtt.simple, an sdist
pip cannot install: it has no setup.py): the tests run it, tools/flash.py puts it on the board
(before a stock image's frozen copy) and firmware/manifest.py freezes it into the project's
image. The version and the archive's SHA-256 are
pinned here; the archive is checked before anything is unpacked, and only the pinned files
leave it. They go to mpy-lib/ in this Python's environment (the project's .venv), never
into the work tree.
"""
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request

PYPI = 'https://pypi.org/pypi/%s/json'

# name: (version, sha256 of the sdist, files taken from it)
PINS = {
    'micropython-umqtt.simple': (
        '1.3.4', 'b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f',
        ('umqtt/simple.py',)),
}


def lib_dir():
    """Where the modules go: mpy-lib/ in the environment of the Python running this."""
    return os.path.join(sys.prefix, 'mpy-lib')


def _stamp():
    return json.dumps(PINS, sort_keys=True)


def installed(dest=None):
    """True when dest holds every pinned file of the pinned versions."""
    dest = dest or lib_dir()
    try:
        with open(os.path.join(dest, '.pins')) as f:
            if f.read() != _stamp():
                return False
    except OSError:
        return False
    return all(os.path.isfile(os.path.join(dest, p)) for _, _, files in PINS.values()
               for p in files)


def _get(url, timeout=60):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except OSError as e:            # URLError, HTTPError, time-outs
        raise SystemExit('could not fetch %s: %s' % (url, getattr(e, 'reason', None) or e))


def fetch(name, version, sha256, files, dest, get=_get):
    """Download name==version's sdist from PyPI, check its SHA-256, unpack `files`."""
    meta = json.loads(get(PYPI % name))
    urls = [u for u in meta.get('releases', {}).get(version, []) if u.get('packagetype') == 'sdist'
            and u.get('digests', {}).get('sha256') == sha256]
    if not urls:
        raise SystemExit('%s %s: PyPI lists no sdist with the pinned SHA-256 %s'
                         % (name, version, sha256))
    data = get(urls[0]['url'])
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise SystemExit('%s %s: the download has SHA-256 %s, not the pinned %s'
                         % (name, version, got, sha256))
    top = '%s-%s/' % (name, version)
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as tar:
        for path in files:
            member = tar.getmember(top + path)
            if not member.isfile():
                raise SystemExit('%s %s: %s is not a file in the archive' % (name, version, path))
            out = os.path.join(dest, *path.split('/'))
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out + '.tmp', 'wb') as f:
                f.write(tar.extractfile(member).read())
            os.replace(out + '.tmp', out)


def install(dest=None, get=_get):
    dest = dest or lib_dir()
    if installed(dest):
        return dest
    os.makedirs(dest, exist_ok=True)
    for name, (version, sha256, files) in sorted(PINS.items()):
        fetch(name, version, sha256, files, dest, get)
    with open(os.path.join(dest, '.pins'), 'w') as f:
        f.write(_stamp())
    return dest


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    print(install())
    return 0


if __name__ == '__main__':
    sys.exit(main())
