# tools/mpy_lib.py: micropython-lib modules from PyPI, pinned by version and SHA-256. Only an
# archive with the pinned hash is unpacked, and only the pinned files leave it. The registry is
# played by a function that answers the two URLs the tool asks for (its `get`), with the JSON
# shape PyPI's project API has.
import hashlib
import io
import json
import os
import tarfile
import urllib.error

import pytest

from tools import mpy_lib


def sdist(name, version, files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for path, data in files.items():
            info = tarfile.TarInfo('%s-%s/%s' % (name, version, path))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def registry(name, version, archive, listed_sha=None):
    url = 'https://files.example/%s-%s.tar.gz' % (name, version)
    meta = {'releases': {version: [
        {'packagetype': 'bdist_wheel', 'url': 'https://files.example/other.whl',
         'digests': {'sha256': '0' * 64}},
        {'packagetype': 'sdist', 'url': url,
         'digests': {'sha256': listed_sha or hashlib.sha256(archive).hexdigest()}}]}}
    asked = []

    def get(u):
        asked.append(u)
        if u == mpy_lib.PYPI % name:
            return json.dumps(meta).encode()
        if u == url:
            return archive
        raise AssertionError('unexpected URL %s' % u)
    return get, asked


NAME, VERSION = 'micropython-demo.pkg', '9.9'
FILES = {'demo/pkg.py': b'X = 1\n', 'demo/other.py': b'Y = 2\n', 'setup.cfg': b'[x]\n'}


def pinned(monkeypatch, files=('demo/pkg.py',)):
    """Pins the demo archive (its real hash) to the given files: (archive, its sha256)."""
    archive = sdist(NAME, VERSION, FILES)
    sha = hashlib.sha256(archive).hexdigest()
    monkeypatch.setattr(mpy_lib, 'PINS', {NAME: (VERSION, sha, files)})
    return archive, sha


def test_installs_only_the_pinned_files_of_an_archive_with_the_pinned_hash(tmp_path, monkeypatch):
    archive, _ = pinned(monkeypatch)
    get, asked = registry(NAME, VERSION, archive)
    dest = str(tmp_path / 'lib')
    assert not mpy_lib.installed(dest)
    assert mpy_lib.install(dest, get) == dest
    assert open(os.path.join(dest, 'demo', 'pkg.py'), 'rb').read() == b'X = 1\n'
    assert not os.path.exists(os.path.join(dest, 'demo', 'other.py'))
    assert not os.path.exists(os.path.join(dest, 'setup.cfg'))
    assert mpy_lib.installed(dest)
    # installed: nothing is fetched again
    n = len(asked)
    mpy_lib.install(dest, get)
    assert len(asked) == n == 2


def test_an_archive_whose_hash_differs_from_the_pin_is_refused_and_nothing_unpacked(
        tmp_path, monkeypatch):
    _, sha = pinned(monkeypatch)
    tampered = sdist(NAME, VERSION, dict(FILES, **{'demo/pkg.py': b'import os\n'}))
    # the registry lists the pinned hash but serves other bytes
    get, _ = registry(NAME, VERSION, tampered, listed_sha=sha)
    dest = str(tmp_path / 'lib')
    with pytest.raises(SystemExit, match='not the pinned'):
        mpy_lib.install(dest, get)
    assert not os.path.exists(os.path.join(dest, 'demo', 'pkg.py'))
    assert not mpy_lib.installed(dest)


def test_a_release_without_the_pinned_sdist_is_refused(tmp_path, monkeypatch):
    archive = sdist(NAME, VERSION, FILES)
    monkeypatch.setattr(mpy_lib, 'PINS', {NAME: (VERSION, 'f' * 64, ('demo/pkg.py',))})
    get, _ = registry(NAME, VERSION, archive)
    with pytest.raises(SystemExit, match='no sdist with the pinned SHA-256'):
        mpy_lib.install(str(tmp_path / 'lib'), get)


def test_a_changed_pin_installs_again(tmp_path, monkeypatch):
    archive, _ = pinned(monkeypatch)
    get, asked = registry(NAME, VERSION, archive)
    dest = str(tmp_path / 'lib')
    mpy_lib.install(dest, get)
    pinned(monkeypatch, ('demo/pkg.py', 'demo/other.py'))
    assert not mpy_lib.installed(dest)
    mpy_lib.install(dest, get)
    assert open(os.path.join(dest, 'demo', 'other.py'), 'rb').read() == b'Y = 2\n'
    assert len(asked) == 4


def test_the_pinned_umqtt_is_installed_where_the_app_tests_look():
    # ./dev setup ran tools/mpy_lib.py: the pinned umqtt.simple is in this venv
    assert mpy_lib.installed(), './dev setup installs it (tools/mpy_lib.py)'
    from tools import bench_heap as bh
    assert bh.find_umqtt(bh.lib_dirs()) is not None
    assert mpy_lib.lib_dir() in bh.lib_dirs()


def test_an_unreachable_registry_is_a_clear_error(monkeypatch):
    def refuse(url, timeout=None):
        raise urllib.error.URLError(ConnectionRefusedError(111, 'Connection refused'))
    monkeypatch.setattr(mpy_lib.urllib.request, 'urlopen', refuse)
    with pytest.raises(SystemExit, match=r'could not fetch https://pypi\.org/.*Connection refused'):
        mpy_lib._get(mpy_lib.PYPI % 'micropython-umqtt.simple')
