#!/usr/bin/env python3
"""The firmware's version, as builds record it: MAJOR.MINOR.PATCH+N.gHASH[.dirty].

MAJOR.MINOR.PATCH is pyproject.toml's `version`; N counts the commits since the commit that
last changed that line (so versions order without git tags, which a clone may lack); HASH is
the commit's short hash; `.dirty` marks a tree with uncommitted changes. Without git (an
exported tree) it is MAJOR.MINOR.PATCH+unknown. firmware/system/version.py orders them.

    python tools/version.py            # prints describe()
    python tools/version.py --release  # prints the release.py a build puts on the board
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(ROOT, 'pyproject.toml')
_LINE = re.compile(r'^version\s*=\s*"(\d+\.\d+\.\d+)"\s*$', re.M)


class VersionError(Exception):
    pass


def base(path=PYPROJECT):
    """pyproject.toml's version: 'MAJOR.MINOR.PATCH'."""
    with open(path, encoding='utf-8') as f:
        m = _LINE.search(f.read())
    if not m:
        raise VersionError('%s has no version = "MAJOR.MINOR.PATCH" line' % path)
    return m.group(1)


def _git(root, *args):
    r = subprocess.run(['git', '-C', root] + list(args), capture_output=True, text=True,
                       timeout=30)
    if r.returncode != 0:
        raise OSError(r.stderr.strip())
    return r.stdout.strip()


def describe(root=ROOT):
    """'0.2.0+5.g1a2b3c4' (plus '.dirty'), or '0.2.0+unknown' outside a git checkout."""
    v = base(os.path.join(root, 'pyproject.toml'))
    try:
        head = _git(root, 'rev-parse', '--short', 'HEAD')
        since = _git(root, 'log', '-1', '--format=%H', '-G', r'^version *=', '--',
                     'pyproject.toml')
        n = _git(root, 'rev-list', '--count', since + '..HEAD') if since else \
            _git(root, 'rev-list', '--count', 'HEAD')
        dirty = _git(root, 'status', '--porcelain', '--untracked-files=no')
    except (OSError, subprocess.TimeoutExpired):
        return v + '+unknown'
    return '%s+%s.g%s%s' % (v, n, head, '.dirty' if dirty else '')


def release_source(version):
    """The top-level module release.py that tells the firmware which release it runs
    (firmware/system/version.py reads it)."""
    if not re.fullmatch(r'[0-9A-Za-z.+_-]{1,64}', version or ''):
        raise VersionError('version %r: 1 to 64 letters, digits and . + _ -' % (version,))
    return '# The release this firmware is (written by the build).\nVERSION = %r\n' % version


def write_release(path, version):
    with open(path, 'w', encoding='utf-8') as f:
        f.write(release_source(version))


if __name__ == '__main__':
    v = describe()
    sys.stdout.write(release_source(v) if sys.argv[1:] == ['--release'] else v + '\n')
