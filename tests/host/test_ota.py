# OTA bundles: built by tools/bundle.py, received by firmware/system/ota.py in a temp "flash root",
# applied at the next "boot" by safemode.boot() (system/ota_apply.py), rolled back after 3
# failed starts.
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for p in (os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools')):
    if p not in sys.path:
        sys.path.insert(0, p)

import bundle  # noqa: E402
from system import ota  # noqa: E402
from system import ota_apply  # noqa: E402
from system import update_status  # noqa: E402
from system import safemode  # noqa: E402

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MPY = b'M\x06\x00\x1f' + b'\x02' * 60          # plain bytecode header, any chip
MPY_C3_NATIVE = b'M\x06\x2f\x1f' + b'\x00' * 20  # arch 11 (rv32imc) << 2 | sub-version 3

NEW = {'app.mpy': MPY + b'new app', 'web/index.html': b'<p>new</p>' * 50,
       'mep/extra.mpy': MPY + b'added module'}
OLD = {'app.mpy': MPY + b'old app', 'web/index.html': b'<p>old</p>',
       'config.json': b'{"ap_password": "abcdefghijkmnpqr"}', 'boot.py': b'# boot',
       'main.py': b'# main', 'release.py': b"VERSION = '0.2.0+4.g43be387'\n"}
NEW_VERSION = '0.2.0+9.ga5b7acc'


def tree(root):
    out = {}
    for d, _dirs, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            with open(p, 'rb') as f:
                out[os.path.relpath(p, root).replace(os.sep, '/')] = f.read()
    return out


def populate(root, files):
    for rel, data in files.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'wb') as f:
            f.write(data)


def make_bundle(tmp_path, files=NEW, key=KEY, device='esp32', device_id=None, name='b.ota',
                remove=()):
    src = tmp_path / ('src-' + name)
    populate(str(src), files)
    out = str(tmp_path / name)
    bundle.write_bundle(out, [(rel, str(src / rel)) for rel in files], key, device, NEW_VERSION,
                        device_id, created=1700000000, remove=remove)
    with open(out, 'rb') as f:
        return f.read()


def receive(root, data, chip='esp32', key=KEY, chunk=4096, device_id=None):
    rx = ota.OtaReceiver(str(root), key, chip, device_id)
    for i in range(0, len(data), chunk):
        rx.feed(data[i:i + chunk])
    return rx, rx.finish()


@pytest.fixture
def dev(tmp_path):
    root = tmp_path / 'flash'
    populate(str(root), OLD)
    return root


def refused(dev, data, match, **kw):
    before = tree(str(dev))
    with pytest.raises(ota.OtaError, match=match):
        receive(dev, data, **kw)
    assert tree(str(dev)) == before, 'a refused bundle changed the flash'
    assert not ota.Fs(str(dev)).exists(ota.STAGE)


def boot(root, out=None):
    return safemode.boot(ota.Fs(str(root)), out=(out.append if out is not None else
                                                 (lambda *a: None)))


def test_good_bundle_is_staged_then_applied_at_boot(tmp_path, dev):
    data = make_bundle(tmp_path)
    before = tree(str(dev))
    rx, summary = receive(dev, data)
    assert summary == {'version': NEW_VERSION, 'files': 4, 'bytes': len(data)}
    staged = tree(str(dev))
    for rel in before:  # the running app is untouched until the next boot
        assert staged[rel] == before[rel]
    assert ota.Fs(str(dev)).exists(ota.COMPLETE)

    msgs = []
    assert boot(dev, msgs) is False  # not safe mode
    assert 'ota: update applied' in msgs
    after = tree(str(dev))
    for rel, content in NEW.items():
        assert after[rel] == content
    assert after['ota_old/app.mpy'] == OLD['app.mpy']
    assert after['config.json'] == OLD['config.json'] and after['boot.py'] == OLD['boot.py']
    assert after['release.py'] == b"# The release this firmware is (written by the build).\n" \
        b"VERSION = '0.2.0+9.ga5b7acc'\n"             # what the board reports from now on
    assert ota.STAGE + '/.complete' not in after
    assert ota.TRIAL in after
    st = update_status.status(ota.Fs(str(dev)))
    assert st['result'] == 'on trial' and st['version'] == NEW_VERSION
    assert st['previous'] == '0.2.0+4.g43be387' and not st['rolled_back']

    safemode.mark_good(ota.Fs(str(dev)))  # the supervisor's proven-good hook
    after = tree(str(dev))
    assert not any(k.startswith('ota_old/') for k in after) and ota.TRIAL not in after
    st = update_status.status(ota.Fs(str(dev)))
    assert st == {'result': 'updated', 'version': NEW_VERSION, 'rolled_back': False,
                  'reason': None, 'previous': '0.2.0+4.g43be387', 'when': st['when']}
    assert st['when'] > 1600000000


@pytest.mark.parametrize('where', ['file', 'manifest', 'header'])
def test_tampered_byte_is_refused(tmp_path, dev, where):
    data = bytearray(make_bundle(tmp_path))
    nl = data.index(b'\n')
    pos = {'file': len(data) - 3, 'manifest': nl + 20, 'header': nl - 5}[where]
    data[pos] ^= 0x01
    refused(dev, bytes(data), {'file': 'damaged', 'manifest': 'bad signature',
                               'header': 'bad signature|malformed'}[where])


def test_wrong_key_refused(tmp_path, dev):
    refused(dev, make_bundle(tmp_path, key=OTHER_KEY), 'bad signature')


def test_unsigned_bundle_refused(tmp_path, dev):
    data = make_bundle(tmp_path)
    nl = data.index(b'\n')
    magic, length, _sig = data[:nl].split(b' ')
    refused(dev, magic + b' ' + length + b'\n' + data[nl + 1:], 'unsigned')
    refused(dev, magic + b' ' + length + b' \n' + data[nl + 1:], 'unsigned')


def test_not_a_bundle_refused_at_once(dev):
    rx = ota.OtaReceiver(str(dev), KEY, 'esp32')
    with pytest.raises(ota.OtaError, match='not an OTA bundle'):
        rx.feed(b'<html>')
    with pytest.raises(ota.OtaError, match='not an OTA bundle'):
        rx.feed(b'x')  # stays failed


@pytest.mark.parametrize('cut', [5, 200, -1])
def test_truncated_upload_refused(tmp_path, dev, cut):
    data = make_bundle(tmp_path)
    refused(dev, data[:cut] if cut > 0 else data[:cut], 'truncated')


def test_trailing_data_refused(tmp_path, dev):
    refused(dev, make_bundle(tmp_path) + b'x', 'after the last file')


def test_wrong_chip_refused(tmp_path, dev):
    refused(dev, make_bundle(tmp_path, device='esp32c3'), "bundle is for 'esp32c3'", chip='esp32')


def test_wrong_device_id_refused(tmp_path, dev):
    data = make_bundle(tmp_path, device_id='mep-kitchen')
    refused(dev, data, 'mep-kitchen', device_id='mep-garage')
    receive(dev, data, device_id='mep-kitchen')  # the right one is accepted


def test_mpy_for_other_arch_refused_even_in_a_generic_bundle(tmp_path, dev):
    files = {'fast.mpy': MPY_C3_NATIVE}
    refused(dev, make_bundle(tmp_path, files, device='mep'), 'not a .mpy file', chip='esp32')
    receive(dev, make_bundle(tmp_path, files, device='mep', name='c.ota'), chip='esp32c3')


def signed(manifest):
    raw = json.dumps(manifest).encode()
    return ota.header_line(raw, KEY) + raw


@pytest.mark.parametrize('path,match', [('../evil.py', 'bad file path'),
                                        ('/abs.py', 'bad file path'),
                                        ('boot.py', 'cannot be replaced'),
                                        ('main.py', 'cannot be replaced'),
                                        ('system/safemode.mpy', 'rolls back updates'),
                                        ('system/ota.py', 'rolls back updates'),
                                        ('system/signed.mpy', 'rolls back updates'),
                                        ('system/__init__.mpy', 'rolls back updates'),
                                        ('storage/fs.mpy', 'rolls back updates'),
                                        ('system/ota/__init__.mpy', 'rolls back updates'),
                                        ('system.mpy', 'rolls back updates'),
                                        ('ota_old/x.py', 'cannot be replaced'),
                                        ('ota_trial/x.py', 'cannot be replaced'),
                                        ('config.json', 'not allowed')])
def test_dangerous_paths_refused_even_when_signed(dev, path, match):
    m = {'format': 1, 'device': 'esp32', 'version': '1',
         'files': [{'path': path, 'size': 1, 'sha256': '0' * 64}]}
    refused(dev, signed(m) + b'x', match)


class CountingFs(ota.Fs):
    """Counts the bytes the receiver hands to files (CPython's own file buffer aside)."""
    written = 0

    def open(self, rel, mode):
        f = ota.Fs.open(self, rel, mode)
        fs = self
        real_write = f.write

        def write(data):
            fs.written += len(data)
            return real_write(data)
        f.write = write
        return f


def test_one_byte_chunks_hold_nothing_but_header_or_manifest(tmp_path, dev):
    data = make_bundle(tmp_path)
    nl = data.index(b'\n')
    mlen = int(data[:nl].split(b' ')[1])
    fs = CountingFs(str(dev))
    rx = ota.OtaReceiver(fs, KEY, 'esp32')
    for i in range(len(data)):
        rx.feed(data[i:i + 1])
        if i < nl:
            assert rx.buffered() == i + 1 <= ota.MAX_HEADER
        elif i < nl + mlen:
            assert rx.buffered() <= mlen
        else:  # every file byte went on to a file at once: nothing kept back
            assert rx.buffered() == 0
            assert fs.written == i + 1 - (nl + 1 + mlen)
    rx.finish()
    assert tree(str(dev))[ota.STAGE + '/web/index.html'] == NEW['web/index.html']


def test_abort_cleans_up(tmp_path, dev):
    data = make_bundle(tmp_path)
    before = tree(str(dev))
    rx = ota.OtaReceiver(str(dev), KEY, 'esp32')
    rx.feed(data[:len(data) // 2])
    assert ota.Fs(str(dev)).exists(ota.PART) and not ota.Fs(str(dev)).exists(ota.STAGE)
    rx.abort()
    assert tree(str(dev)) == before


def test_a_refused_or_broken_upload_keeps_the_staged_update(tmp_path, dev):
    receive(dev, make_bundle(tmp_path))
    staged = tree(str(dev))
    assert ota.COMPLETE in staged
    with pytest.raises(ota.OtaError, match='bad signature'):
        receive(dev, make_bundle(tmp_path, key=OTHER_KEY, name='other.ota'))
    assert tree(str(dev)) == staged, 'a refused bundle removed the staged update'
    newer = make_bundle(tmp_path, files=dict(NEW, **{'extra.mpy': MPY + b'x'}), name='n.ota')
    rx = ota.OtaReceiver(str(dev), KEY, 'esp32')
    rx.feed(newer[:len(newer) - 3])
    with pytest.raises(ota.OtaError, match='truncated'):
        rx.finish()
    assert tree(str(dev)) == staged, 'a broken upload removed the staged update'
    receive(dev, newer)                 # a complete newer one replaces it
    after = tree(str(dev))
    assert after[ota.STAGE + '/extra.mpy'] == MPY + b'x' and ota.COMPLETE in after
    assert not any(k.startswith(ota.PART + '/') for k in after)
    assert boot(dev) is False and tree(str(dev))['extra.mpy'] == MPY + b'x'


def test_new_upload_refused_while_previous_update_on_trial(tmp_path, dev):
    receive(dev, make_bundle(tmp_path))
    boot(dev)
    refused(dev, make_bundle(tmp_path, name='c.ota'), 'still on trial')


def test_rollback_after_three_failed_starts(tmp_path, dev):
    receive(dev, make_bundle(tmp_path))
    fs = ota.Fs(str(dev))
    assert boot(dev) is False
    for _ in range(3):  # main.py counts each start; the new app never reaches 60 s
        safemode.count_start(fs)
        msgs = []
        active = boot(dev, msgs)
        if 'ota: update rolled back' in msgs:
            break
    assert 'ota: update rolled back' in msgs and active is False
    after = tree(str(dev))
    for rel, content in OLD.items():
        assert after[rel] == content
    assert 'mep/extra.mpy' not in after  # added by the update, removed again
    assert not any(k.startswith(('ota_old/', 'ota_new/')) for k in after)
    assert safemode.crashes(fs) == 0
    st = update_status.status(fs)
    assert st['result'] == 'rolled back' and st['version'] == NEW_VERSION and st['rolled_back']
    assert st['reason'] == 'it failed to start 3 times in a row'
    assert st['previous'] == '0.2.0+4.g43be387'


def test_rollback_removes_the_folders_the_update_made(tmp_path, dev):
    """An update that brings a package (net/) to an app with a module of that name (net.mpy):
    rolled back, no empty net/ stays behind to be imported instead of the old net.mpy. A
    folder the old app has (web/) stays."""
    populate(str(dev), {'net.mpy': MPY + b'old wifi module'})
    files = dict(NEW)
    files.update({'net/__init__.mpy': MPY + b'pkg', 'net/sub/deep.mpy': MPY + b'deep',
                  'web/added.mpy': MPY + b'added'})
    receive(dev, make_bundle(tmp_path, files))
    fs = ota.Fs(str(dev))
    boot(dev)
    assert os.path.isdir(os.path.join(str(dev), 'net', 'sub'))
    msgs = []
    for _ in range(3):
        safemode.count_start(fs)
        boot(dev, msgs)
    assert 'ota: update rolled back' in msgs
    for gone in ('net', 'mep'):
        assert not os.path.exists(os.path.join(str(dev), gone)), gone
    after = tree(str(dev))
    assert after['net.mpy'] == MPY + b'old wifi module'
    assert after['web/index.html'] == OLD['web/index.html'] and 'web/added.mpy' not in after


def test_crashes_before_three_keep_the_update(tmp_path, dev):
    receive(dev, make_bundle(tmp_path))
    fs = ota.Fs(str(dev))
    boot(dev)
    safemode.count_start(fs)
    safemode.count_start(fs)
    boot(dev)
    assert tree(str(dev))['app.mpy'] == NEW['app.mpy']


def test_apply_survives_a_power_cut_half_way(tmp_path, dev, monkeypatch):
    receive(dev, make_bundle(tmp_path))
    fs = ota.Fs(str(dev))
    real = os.rename
    calls = []

    def cut(a, b):
        calls.append(a)
        if len(calls) == 4:  # journal .tmp, app.mpy -> old, new app.mpy in, then: power cut
            raise OSError('power cut')
        return real(a, b)

    monkeypatch.setattr(ota.os, 'rename', cut)
    with pytest.raises(OSError):
        ota_apply.apply_pending(fs)
    monkeypatch.setattr(ota.os, 'rename', real)
    assert ota_apply.apply_pending(fs) == 'applied'
    after = tree(str(dev))
    for rel, content in NEW.items():
        assert after[rel] == content
    ota_apply.rollback(fs, 'test')
    after = tree(str(dev))
    for rel, content in OLD.items():
        assert after[rel] == content
    assert 'mep/extra.mpy' not in after


def test_bundle_cli_builds_and_verifies(tmp_path, capsys):
    src = tmp_path / 'build'
    populate(str(src), dict(NEW, **{'boot.py': b'#', 'main.py': b'#', '.manifest.json': b'{}'}))
    keyfile = tmp_path / 'key'
    keyfile.write_text(KEY.hex() + '\n')
    out = str(tmp_path / 'x.ota')
    assert bundle.main([str(src), '--device', 'esp32', '--key-file', str(keyfile), '-o', out]) == 0
    assert bundle.main(['--verify', out, '--device', 'esp32', '--key-file', str(keyfile)]) == 0
    text = capsys.readouterr().out
    assert 'valid bundle' in text and '4 files' in text and KEY.hex() not in text
    with open(out, 'rb') as f:
        data = f.read()
    assert b'boot.py' not in data  # only a cable replaces boot.py / main.py
    assert b'release.py' in data
    keyfile.write_text(OTHER_KEY.hex())
    assert bundle.main(['--verify', out, '--device', 'esp32', '--key-file', str(keyfile)]) == 1
    assert 'bad signature' in capsys.readouterr().err


def test_a_bundle_removes_what_it_says_and_a_rollback_brings_it_back(tmp_path, dev):
    """The manifest lists the files of earlier releases to delete (tools/bundle.py: retired
    modules and the other form of each module it brings): a stale app.py would be imported
    before the new app.mpy. They go to ota_old/ and come back with a rollback."""
    populate(str(dev), {'app.py': b'old source app', 'mep/link.mpy': MPY + b'old layout',
                        'notes.txt': b'mine'})
    data = make_bundle(tmp_path, remove=None)           # what tools/bundle.py works out
    m = json.loads(data[data.index(b'\n') + 1:data.index(b'\n') + 1 + int(
        data[:data.index(b'\n')].split(b' ')[1])])
    assert 'app.py' in m['remove'] and 'mep/link.mpy' in m['remove']
    assert 'release.mpy' in m['remove'] and 'notes.txt' not in m['remove']
    assert not [p for p in m['remove'] if ota.check_path(p)]
    receive(dev, data)
    boot(dev)
    after = tree(str(dev))
    assert 'app.py' not in after and 'mep/link.mpy' not in after
    assert after['ota_old/app.py'] == b'old source app' and after['notes.txt'] == b'mine'
    fs = ota.Fs(str(dev))
    for _ in range(3):
        safemode.count_start(fs)
        boot(dev)
    after = tree(str(dev))
    assert after['app.py'] == b'old source app' and after['mep/link.mpy'] == MPY + b'old layout'
    assert after['app.mpy'] == OLD['app.mpy'] and after['release.py'] == OLD['release.py']


@pytest.mark.parametrize('path,match', [('boot.py', 'cannot be replaced'),
                                        ('system/ota.mpy', 'rolls back updates'),
                                        ('../x.py', 'bad file path')])
def test_a_bundle_cannot_remove_what_recovers(dev, path, match):
    m = {'format': 1, 'device': 'esp32', 'version': '1', 'remove': [path],
         'files': [{'path': 'a.txt', 'size': 1, 'sha256': '0' * 64}]}
    refused(dev, signed(m) + b'x', 'cannot remove: .*' + match)


def test_a_rollback_cut_by_a_power_cut_is_finished_at_the_next_boot(tmp_path, dev, monkeypatch):
    receive(dev, make_bundle(tmp_path))
    fs = ota.Fs(str(dev))
    boot(dev)
    real = os.rename
    calls = []

    def cut(a, b):
        calls.append(a)
        if len(calls) == 3:
            raise OSError('power cut')
        return real(a, b)
    monkeypatch.setattr(ota.os, 'rename', cut)
    with pytest.raises(OSError):
        ota_apply.rollback(fs, 'it hung: the watchdog reset the board')
    monkeypatch.setattr(ota.os, 'rename', real)
    assert fs.exists(ota.ROLLBACK)
    msgs = []
    assert boot(dev, msgs) is False and 'ota: update rolled back' in msgs
    after = tree(str(dev))
    for rel, content in OLD.items():
        assert after[rel] == content
    assert not fs.exists(ota.ROLLBACK) and not fs.exists(ota.TRIAL)
    assert update_status.status(fs)['reason'] == 'it hung: the watchdog reset the board'


def test_an_update_that_does_not_prove_itself_is_rolled_back_when_asked(tmp_path, dev):
    fs = ota.Fs(str(dev))
    assert safemode.reject(fs, 'nothing on trial') is False and not fs.exists(ota.ROLLBACK)
    receive(dev, make_bundle(tmp_path))
    boot(dev)
    assert safemode.reject(fs, 'it did not prove itself within 10 min (no reading)') is True
    msgs = []
    boot(dev, msgs)
    assert 'ota: update rolled back' in msgs and tree(str(dev))['app.mpy'] == OLD['app.mpy']
    st = update_status.status(fs)
    assert st['rolled_back'] and st['reason'] == 'it did not prove itself within 10 min ' \
                                                 '(no reading)'


def test_the_reason_of_the_last_failed_start_is_the_rollback_reason(tmp_path, dev):
    receive(dev, make_bundle(tmp_path))
    fs = ota.Fs(str(dev))
    boot(dev)
    for i in range(3):
        safemode.count_start(fs)
        if i == 2:
            safemode.failed("ImportError('no module named mep.frames')", fs)
        boot(dev)
    assert update_status.status(fs)['reason'] == ("it failed to start 3 times in a row (last: "
                                        "ImportError('no module named mep.frames'))")
    receive(dev, make_bundle(tmp_path, name='again.ota'))
    boot(dev)
    for _ in range(3):
        safemode.count_start(fs)
        safemode.boot(fs, out=lambda *a: None, watchdog=True)
    assert update_status.status(fs)['reason'] == ('it failed to start 3 times in a row (last: it hung: '
                                        'the watchdog reset the board)')


def test_truncated_message_counts_a_header_that_came_in_pieces(tmp_path, dev):
    data = make_bundle(tmp_path)
    rx = ota.OtaReceiver(str(dev), KEY, 'esp32')
    for b in range(0, len(data) - 7, 3):    # 3 bytes a chunk: the header line in many pieces
        rx.feed(data[b:min(b + 3, len(data) - 7)])
    with pytest.raises(ota.OtaError, match='got %d of %d bytes' % (len(data) - 7, len(data))):
        rx.finish()


def test_power_cuts_keep_an_update_on_trial_but_a_crashing_one_is_rolled_back(tmp_path, dev):
    """A power cut during the new release's start does not count against it (each power-on
    start takes back the count of the start it ended); starts that crash (machine.reset(), a
    hard reset) or hang (the watchdog) still count, power cuts between them or not: after 3
    the old release is back."""
    receive(dev, make_bundle(tmp_path))
    fs = ota.Fs(str(dev))
    boot(dev)
    assert fs.exists(ota.TRIAL)
    quiet = dict(out=lambda *a: None)
    for _ in range(5):                       # five short power blips during its start
        safemode.count_start(fs)
        assert safemode.boot(fs, power=True, **quiet) is False
        assert fs.exists(ota.TRIAL) and safemode.crashes(fs) == 0
    for cut in (False, True, False, True, False):   # it crashes; a blip now and then
        safemode.count_start(fs)
        if cut:      # the power ends a start, the next one starts at power-on
            safemode.boot(fs, power=True, **quiet)
            safemode.count_start(fs)
        msgs = []
        safemode.boot(fs, out=msgs.append, watchdog=not cut)
        if 'ota: update rolled back' in msgs:
            break
    assert 'ota: update rolled back' in msgs and not fs.exists(ota.TRIAL)
    assert tree(str(dev))['app.mpy'] == OLD['app.mpy']


def test_a_release_that_browns_the_board_out_at_every_start_is_rolled_back(tmp_path, dev):
    """A brown-out is a power-on reset too: after MAX_POWER_CUTS power-on starts in a row that
    ended before the app ran a while, they count again, so such a release does not stay."""
    receive(dev, make_bundle(tmp_path))
    fs = ota.Fs(str(dev))
    boot(dev)
    msgs = []
    for n in range(safemode.MAX_POWER_CUTS + safemode.MAX_CRASHES):
        safemode.count_start(fs)
        safemode.boot(fs, out=msgs.append, power=True)
        if 'ota: update rolled back' in msgs:
            break
    assert n == safemode.MAX_POWER_CUTS + safemode.MAX_CRASHES - 1, n
    assert 'ota: update rolled back' in msgs and not fs.exists(ota.TRIAL)
    assert '%d power-on starts in a row ended early' % safemode.MAX_POWER_CUTS in '\n'.join(msgs)
