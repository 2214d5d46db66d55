# Image updates (firmware/system/imgota.py) on the emulated ESP32 flash of the virtual board
# (tools/host/esp32_board/esp32_flash.py): the project's OTA partition table, otadata, the
# bootloader with rollback. A signed image streams into the next slot and becomes the boot
# slot only when complete and right; every refusal leaves the running slot's bytes and the
# boot slot as they were; an image that never confirms itself is rolled back at the next
# reset. Power cuts at random moments (a byte budget across upload, set_boot, the
# bootloader's and the app's otadata writes) always leave a board that boots the old or the
# new image. The same emulation runs on MicroPython in the virtual board
# (tests/host/test_vboard_image.py).
import hashlib
import json
import os
import random
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EMU = os.path.join(ROOT, 'tools', 'host', 'esp32_board')
if EMU not in sys.path:
    sys.path.insert(0, EMU)

import esp32_flash as ef  # noqa: E402
from esp32_flash import Flash, Partition  # noqa: E402
from storage.fs import Fs  # noqa: E402
from system import imgota, update_status  # noqa: E402
from tools import imagefile  # noqa: E402

CSV = os.path.join(ROOT, 'tools', 'image', 'partitions-mep-4MiB-ota.csv')
KEY = bytes(range(32))


def table():
    with open(CSV) as f:
        return ef.parse_csv(f.read())


def image(version, size=40000, chip=ef.CHIP_VIRTUAL, seed=1):
    rnd = random.Random(seed)
    return ef.build_image([(0x3F400020, ef.app_desc(version)),
                           (0x3F410020, bytes(rnd.getrandbits(8) for _ in range(size)))],
                          chip)


def boot(fl, out=None):
    """A reset: the bootloader picks the slot; the board then runs it."""
    p = ef.bootloader(fl, out=out or (lambda m: None))
    Partition.flash = fl
    Partition.running = p['name'] if p else None
    return p


def parts():
    run = Partition(Partition.RUNNING)
    return Partition, run, run.get_next_update()


def running_version(fl):
    p = [x for x in ef.read_table(fl) if x['name'] == Partition.running][0]
    n, _ = ef.verify_image(lambda o, k: fl.read(p['offset'] + o, k), p['size'])
    return ef.image_version(fl.read(p['offset'], n))


def write_slot(fl, label, img):
    for p in ef.read_table(fl):
        if p['name'] == label:
            fl.erase(p['offset'], (len(img) + 4095) // 4096 * 4096)
            fl.write(p['offset'], img)


@pytest.fixture
def board(tmp_path, monkeypatch):
    """A board as tools/flash.py leaves it: the OTA table, v1 in ota_0, otadata blank."""
    Flash.budget = None
    # the release frozen into the running image (on a board: its release.py)
    monkeypatch.setattr(imgota, 'running_version', lambda: running_version(Partition.flash))
    fl = ef.new_flash(str(tmp_path / 'flash.bin'), table())
    write_slot(fl, 'ota_0', image('1.0.0'))
    assert boot(fl)['name'] == 'ota_0'
    fs_dir = tmp_path / 'fs'
    fs_dir.mkdir()
    yield fl, Fs(str(fs_dir))
    Flash.budget = None


def upload(fs, data, chunk=1000, chip='host'):
    rx = imgota.ImageReceiver(KEY, chip, fs, parts())
    for i in range(0, len(data), chunk):
        rx.feed(data[i:i + chunk])
    return rx.finish()


def slot_bytes(fl, label):
    p = [x for x in ef.read_table(fl) if x['name'] == label][0]
    return hashlib.sha256(fl.read(p['offset'], p['size'])).hexdigest()


def test_partition_table_of_the_image_build():
    t = {p['name']: p for p in table()}
    assert [p['name'] for p in table()] == ['nvs', 'otadata', 'phy_init', 'ota_0', 'ota_1',
                                            'vfs']
    end = 0x9000
    for p in table():
        assert p['offset'] >= end, p              # no overlap, in order
        assert p['offset'] % (0x10000 if p['type'] == ef.TYPE_APP else 0x1000) == 0, p
        assert p['size'] % 0x1000 == 0, p
        end = p['offset'] + p['size']
    assert end == 4 << 20                         # fills 4 MB exactly
    assert t['ota_0']['size'] == t['ota_1']['size'] == 0x1E0000
    # the published images it must hold, with room to grow
    for name, size in (('ESP32_GENERIC_C3', 1636624), ('ESP32_GENERIC OTA', 0x180000)):
        assert t['ota_0']['size'] - size >= 300 * 1024, name
    assert t['otadata']['size'] == 0x2000 and t['otadata']['offset'] == 0xd000
    assert t['vfs']['size'] >= 192 * 1024
    raw = ef.table_bin(table())
    assert len(raw) == 0xC00 and raw[:2] == b'\xaa\x50'
    assert raw[32 * 6:32 * 6 + 2] == b'\xeb\xeb'   # the MD5 entry after the six partitions


def test_image_update_upload_reboot_confirm(board):
    fl, fs = board
    old = slot_bytes(fl, 'ota_0')
    data = imagefile.pack(image('1.1.0'), KEY, '1.1.0')
    r = upload(fs, data)
    assert r == {'version': '1.1.0', 'slot': 'ota_1', 'bytes': len(data)}
    assert slot_bytes(fl, 'ota_0') == old                       # the running slot untouched
    st = imgota.status(fs, '1.0.0', parts())
    assert st['slot'] == 'ota_0' and st['staged'] == {'slot': 'ota_1', 'version': '1.1.0'}
    # reset: the new image starts on trial
    assert boot(fl)['name'] == 'ota_1' and running_version(fl) == '1.1.0'
    assert ef.state_of(fl, 'ota_1') == 'pending verify'
    st = imgota.status(fs, '1.1.0', parts())
    assert st['trial'] == '1.1.0'
    u = update_status.status(fs)
    assert u['result'] == 'on trial' and u['version'] == '1.1.0' and u['previous'] == '1.0.0'
    # a second upload is refused while it is on trial
    with pytest.raises(imgota.ImageError) as e:
        upload(fs, imagefile.pack(image('1.2.0'), KEY, '1.2.0'))
    assert e.value.status == 409 and 'still on trial' in str(e.value)
    # otadata that does not name the running slot (a write that failed): not marked valid,
    # so not reported as kept
    class Failing(Partition):
        @staticmethod
        def mark_app_valid_cancel_rollback():
            raise OSError(1)
    with pytest.raises(imgota.ImageError) as e:
        imgota.confirm(fs, (Failing,) + parts()[1:])
    assert 'could not be marked valid' in str(e.value)
    assert update_status.status(fs)['result'] == 'on trial' and fs.exists(imgota.PENDING)
    assert imgota.confirm(fs, parts()) == 'confirmed'
    assert ef.state_of(fl, 'ota_1') == 'valid'
    st = imgota.status(fs, '1.1.0', parts())
    assert st['trial'] is None
    u = update_status.status(fs)
    assert u['result'] == 'updated' and u['version'] == '1.1.0' and not u['rolled_back']
    # kept: further resets start it again
    assert boot(fl)['name'] == 'ota_1' and boot(fl)['name'] == 'ota_1'
    # and the next update goes to the other slot, the old image's
    upload(fs, imagefile.pack(image('1.2.0', seed=2), KEY, '1.2.0'))
    assert boot(fl)['name'] == 'ota_0' and running_version(fl) == '1.2.0'


def test_unconfirmed_image_is_rolled_back_at_the_next_reset(board):
    fl, fs = board
    upload(fs, imagefile.pack(image('2.0.0'), KEY, '2.0.0'))
    msgs = []
    assert boot(fl)['name'] == 'ota_1'
    # it crashes or hangs before it proved itself: the watchdog or a crash resets the board
    assert boot(fl, msgs.append)['name'] == 'ota_0'
    assert any('never confirmed' in m for m in msgs), msgs
    assert running_version(fl) == '1.0.0'
    imgota.status(fs, '1.0.0', parts())
    u = update_status.status(fs)
    assert u['rolled_back'] and u['version'] == '2.0.0' and u['previous'] == '1.0.0'
    assert u['reason'] == ('it did not confirm itself before a reset: the bootloader started '
                           'ota_0 again')
    assert not fs.exists(imgota.PENDING)
    assert boot(fl)['name'] == 'ota_0'                      # and stays there
    imgota.confirm(fs, parts())
    assert update_status.status(fs)['rolled_back']


def test_image_that_does_not_prove_itself_in_time_is_rejected(board):
    fl, fs = board
    from system import safemode
    upload(fs, imagefile.pack(image('2.1.0'), KEY, '2.1.0'))
    assert boot(fl)['name'] == 'ota_1'
    # the supervisor's verdict after PROVE_WITHIN_MS (here through the emulated esp32 module)
    sys.modules['esp32'] = type(sys)('esp32')
    sys.modules['esp32'].Partition = Partition
    try:
        assert safemode.reject(fs, 'it did not prove itself within 10 min (no reading)')
    finally:
        del sys.modules['esp32']
    assert boot(fl)['name'] == 'ota_0'          # the watchdog's reset: the bootloader goes back
    imgota.status(fs, '1.0.0', parts())
    u = update_status.status(fs)
    assert u['rolled_back'] and u['reason'].startswith('it did not prove itself within 10 min')
    # nothing on trial now: reject says so
    assert imgota.reject(fs, 'x', parts()) is False


def bad_files():
    good = image('3.0.0')
    other_key = bytes(32)
    damaged = bytearray(imagefile.pack(good, KEY, '3.0.0'))
    damaged[-5000] ^= 1
    big = imagefile.pack(image('3.0.0', size=0x1E0000), KEY, '3.0.0')
    esp32_image = image('3.0.0', chip=0)
    return [
        ('bad signature', imagefile.pack(good, other_key, '3.0.0'), 400, 'bad signature'),
        ('wrong device', imagefile.pack(esp32_image, KEY, '3.0.0'), 400,
         "image is for 'esp32', this device is 'host'"),
        ('wrong chip in the image', imagefile.pack(esp32_image, KEY, '3.0.0', device='host'),
         400, 'chip id 0x0000, this host needs 0xffff'),
        ('too large', big, 413, 'too large for slot ota_1 (1920 KB)'),
        ('truncated', imagefile.pack(good, KEY, '3.0.0')[:-100], 400, 'upload truncated'),
        ('damaged', bytes(damaged), 400, 'SHA-256 does not match'),
        ('not an image file', b'MEPOTA1 12 ab\n{}', 400, 'bad header'),
        ('trailing data', imagefile.pack(good, KEY, '3.0.0') + b'x', 400, 'after the image'),
    ]


@pytest.mark.parametrize('what,data,status,msg', bad_files(), ids=[b[0] for b in bad_files()])
def test_refused_upload_leaves_everything_as_it_was(board, what, data, status, msg):
    fl, fs = board
    before = slot_bytes(fl, 'ota_0')
    with pytest.raises(imgota.ImageError) as e:
        upload(fs, data)
    assert msg in str(e.value), str(e.value)
    assert e.value.status == status
    assert slot_bytes(fl, 'ota_0') == before
    assert imgota.status(fs, '1.0.0', parts())['staged'] is None
    assert not fs.exists(imgota.PENDING)
    assert boot(fl)['name'] == 'ota_0'


def test_a_new_upload_withdraws_a_staged_image_first(board):
    fl, fs = board
    upload(fs, imagefile.pack(image('4.0.0'), KEY, '4.0.0'))
    assert label_of(Partition(Partition.BOOT)) == 'ota_1'
    # a second upload refused before any of it is written (another chip) keeps it staged
    with pytest.raises(imgota.ImageError):
        upload(fs, imagefile.pack(image('4.1.0', chip=0), KEY, '4.1.0', device='host'))
    assert label_of(Partition(Partition.BOOT)) == 'ota_1' and fs.exists(imgota.PENDING)
    # a second upload, cut short half way: the boot slot goes back to the running one
    rx = imgota.ImageReceiver(KEY, 'host', fs, parts())
    data = imagefile.pack(image('4.1.0', seed=3), KEY, '4.1.0')
    rx.feed(data[:len(data) // 2])
    assert label_of(Partition(Partition.BOOT)) == 'ota_0'
    assert not fs.exists(imgota.PENDING)
    with pytest.raises(imgota.ImageError):
        rx.finish()
    assert boot(fl)['name'] == 'ota_0' and running_version(fl) == '1.0.0'


def label_of(p):
    return p.info()[4]


def test_board_without_ota_partitions_refuses(tmp_path):
    fl = ef.new_flash(str(tmp_path / 'f.bin'), ef.parse_csv(
        'nvs, data, nvs, 0x9000, 0x6000\nphy_init, data, phy, 0xf000, 0x1000\n'
        'factory, app, factory, 0x10000, 0x1F0000\nvfs, data, fat, 0x200000, 0x200000\n'))
    write_slot(fl, 'factory', image('1.0.0'))
    assert boot(fl)['name'] == 'factory'
    run = Partition(Partition.RUNNING)
    with pytest.raises(OSError):
        run.get_next_update()
    with pytest.raises(OSError):
        Partition.mark_app_valid_cancel_rollback()
    # the firmware's own check, with esp32.Partition the emulated one
    sys.modules['esp32'] = type(sys)('esp32')
    sys.modules['esp32'].Partition = Partition
    try:
        with pytest.raises(imgota.ImageError) as e:
            imgota.partitions()
        assert 'no OTA partitions' in str(e.value)
        assert imgota.confirm(Fs(str(tmp_path))) is None
        assert imgota.status(Fs(str(tmp_path))) is None
    finally:
        del sys.modules['esp32']
    # and on a PC (no esp32 module at all; the emulation's folder on sys.path gives none)
    assert EMU in sys.path and 'esp32' not in sys.modules
    with pytest.raises(imgota.ImageError) as e:
        imgota.partitions()
    assert 'no esp32.Partition' in str(e.value)
    assert 'esp32' not in sys.modules


def test_set_boot_verifies_the_image(board):
    fl, fs = board
    write_slot(fl, 'ota_1', image('5.0.0')[:-1] + b'\x00')        # hash damaged
    with pytest.raises(OSError):
        Partition('ota_1').set_boot()
    assert label_of(Partition(Partition.BOOT)) == 'ota_0'


# ---------------------------------------------------------------- power cuts

def power_cut_trial(template, work, cut, fs_dir, marks=None):
    """One board: v1 running (confirmed), upload v2, reset, v2 runs and confirms, reset.
    The power fails after `cut` bytes of flash erase/write; then the board is powered on
    again and reset once more without the app confirming anything (the harshest case).
    Returns the version it then runs. `marks` gets the bytes spent after each step."""
    shutil.copyfile(template, work)
    if os.path.isdir(fs_dir):
        shutil.rmtree(fs_dir)
    os.makedirs(fs_dir)
    fl = Flash(work)
    fs = Fs(fs_dir)
    boot(fl)
    Flash.budget = cut
    try:
        upload(fs, NEW_FILE, chunk=4096)
        if marks is not None:
            marks.append(cut - Flash.budget)
        boot(fl)
        if marks is not None:
            marks.append(cut - Flash.budget)
        imgota.confirm(fs, parts())
        if marks is not None:
            marks.append(cut - Flash.budget)
        boot(fl)
    except ef.PowerCut:
        pass
    finally:
        Flash.budget = None
    p = boot(fl)
    assert p is not None, 'nothing bootable after a cut at %d' % cut
    v = running_version(fl)
    p = boot(fl)
    assert p is not None
    v2 = running_version(fl)
    assert v in ('1.0.0', '2.0.0') and v2 in ('1.0.0', '2.0.0'), (cut, v, v2)
    if v2 == '2.0.0':       # the new image stays only once it was confirmed
        assert ef.state_of(fl, p['name']) == 'valid', cut
    st = imgota.status(fs, v2, parts())
    assert st['slot'] == p['name']
    return v2


NEW_FILE = imagefile.pack(image('2.0.0', size=60000, seed=7), KEY, '2.0.0')
OTADATA_WRITE = 4096 + 32      # an otadata entry: its sector erased, then 32 bytes written


def test_power_cut_at_random_moments(tmp_path):
    n = int(os.environ.get('MEP_POWERCUT_TRIALS', '150'))
    Flash.budget = None
    template = str(tmp_path / 'template.bin')
    fl = ef.new_flash(template, table())
    write_slot(fl, 'ota_0', image('1.0.0'))
    boot(fl)
    Partition.mark_app_valid_cancel_rollback()     # v1 has run before and kept itself
    work, fs_dir = str(tmp_path / 'w.bin'), str(tmp_path / 'fs')
    marks = []          # bytes erased/written after the upload, the first boot, the confirmation
    assert power_cut_trial(template, work, 1 << 40, fs_dir, marks) == '2.0.0'
    up, first, conf = [m for m in marks]
    assert first - up == OTADATA_WRITE and conf - first == OTADATA_WRITE
    steps = ((up - OTADATA_WRITE, 'upload: image data'), (up, 'upload: set_boot'),
             (first, 'first boot (NEW -> PENDING)'), (conf, 'confirmation'),
             (1 << 40, 'after confirmation'))
    rnd = random.Random(int(os.environ.get('MEP_POWERCUT_SEED', '27')))
    tally = {}
    for i in range(n):
        # half the cuts anywhere, half in the three otadata writes at the end and just after
        if i % 2:
            cut = rnd.randrange(conf)
        else:
            cut = up - OTADATA_WRITE + rnd.randrange(3 * OTADATA_WRITE + 512)
        v = power_cut_trial(template, work, cut, fs_dir)
        where = [name for end, name in steps if cut < end][0]
        if where == 'after confirmation':
            assert v == '2.0.0'
        tally[(where, v)] = tally.get((where, v), 0) + 1
    print('\npower-cut trials: %d (the update erases and writes %d bytes in all)' % (n, conf))
    for (where, v), k in sorted(tally.items(), key=lambda kv: [s[1] for s in steps].index(
            kv[0][0])):
        print('  cut in %-30s -> the board runs %s: %d' % (where, v, k))
    assert sum(tally.values()) == n
    if n >= 40:
        assert {w for w, _v in tally} >= {'upload: image data', 'upload: set_boot',
                                           'first boot (NEW -> PENDING)', 'confirmation'}
