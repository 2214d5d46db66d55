# The version scheme: tools/version.py names a build MAJOR.MINOR.PATCH+N.gHASH from
# pyproject.toml and git (no tags needed), firmware/system/version.py orders those and reads
# the release.py a build writes. Tried on a throw-away git repository.
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools')):
    if p not in sys.path:
        sys.path.insert(0, p)

import version as tool  # noqa: E402  (tools/version.py)
from system import version  # noqa: E402


def git(repo, *args):
    subprocess.run(['git', '-C', str(repo), '-c', 'user.name=t', '-c', 'user.email=t@t'] +
                   list(args), check=True, capture_output=True)


def commit(repo, name, text, msg):
    (repo / name).write_text(text)
    git(repo, 'add', name)
    git(repo, 'commit', '-q', '-m', msg)


@pytest.fixture
def repo(tmp_path):
    if not shutil.which('git'):
        pytest.fail('git is needed to build versions')
    r = tmp_path / 'repo'
    r.mkdir()
    git(r, 'init', '-q')
    commit(r, 'pyproject.toml', '[project]\nname = "x"\nversion = "0.2.0"\n', 'start')
    return r


def test_describe_counts_commits_since_the_version_line_changed(repo):
    v0 = tool.describe(str(repo))
    assert v0.startswith('0.2.0+0.g') and not v0.endswith('.dirty')
    commit(repo, 'a.py', 'x = 1\n', 'one')
    commit(repo, 'pyproject.toml', '[project]\nname = "x"\nversion = "0.2.0"\n# c\n', 'two')
    v2 = tool.describe(str(repo))
    assert v2.startswith('0.2.0+2.g')         # a change beside the version line counts on
    (repo / 'a.py').write_text('x = 2\n')
    assert tool.describe(str(repo)) == v2 + '.dirty'
    git(repo, 'checkout', '-q', 'a.py')
    commit(repo, 'pyproject.toml', '[project]\nname = "x"\nversion = "0.3.0"\n# c\n', 'bump')
    v3 = tool.describe(str(repo))
    assert v3.startswith('0.3.0+0.g')
    keys = [version.key(v) for v in (v0, v2, v3)]
    assert keys == sorted(keys) and len(set(keys)) == 3
    head = subprocess.run(['git', '-C', str(repo), 'rev-parse', '--short', 'HEAD'],
                          capture_output=True, text=True).stdout.strip()
    assert v3.endswith('.g' + head)


def test_outside_git_it_says_unknown(tmp_path):
    (tmp_path / 'pyproject.toml').write_text('version = "1.4.2"\n')
    assert tool.describe(str(tmp_path)) == '1.4.2+unknown'
    (tmp_path / 'pyproject.toml').write_text('name = "x"\n')
    with pytest.raises(tool.VersionError):
        tool.describe(str(tmp_path))


def test_versions_order_and_hashes_do_not():
    k = version.key
    assert k('0.2.0+12.gabc1234') > k('0.2.0+5.gfff0000') > k('0.2.0') > k('0.1.0+300.g1')
    assert k('0.10.0+0.g1') > k('0.9.9+99.g1')
    assert k('0.2.0+5.g1a2b3c4.dirty') == k('0.2.0+5.g1a2b3c4') == (0, 2, 0, 5)
    for bad in ('a5b7acc', '43be387', 'dev', '', None, '1.2', '1.2.x', '1.2.3+g12', 7):
        assert k(bad) is None, bad
    assert k(version.UNKNOWN) == (0, 0, 0, 0)


def test_release_module_is_what_the_firmware_reads(tmp_path, monkeypatch):
    path = tmp_path / 'release.py'
    tool.write_release(str(path), '0.2.0+3.g1234567')
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop('release', None)
    assert version.running() == '0.2.0+3.g1234567'
    assert 'release' not in sys.modules            # only the string stays
    path.unlink()
    assert version.running() == version.UNKNOWN
    with pytest.raises(tool.VersionError):
        tool.release_source("0.2.0'; import os")
