# Image updates for a board that runs the app frozen into its MicroPython image (no room for
# the app as files): a signed image file streams into the next OTA app slot, 4 KB at a time,
# is checked whole (length, SHA-256, signature), and only then becomes the boot slot. The
# bootloader (rollback enabled in MicroPython's sdkconfig) starts it as "pending verify";
# confirm() keeps it once the release has proven itself (safemode.mark_good). A reset before
# that makes the bootloader start the previous slot again. The running slot is never
# written; a refused or broken upload leaves the boot slot as it was.
#
# Image file format 1 (tools/imagefile.py writes it):
#   b'MEPIMG1 <manifest length> <signature>\n'   signature: 64 hex digits, HMAC-SHA256 under
#                                                the device's OTA key over the manifest bytes
#   manifest: JSON {"format": 1, "kind": "image", "device": "esp32"|"esp32c3"|"host",
#                   "version": "..", "size": <image bytes>, "sha256": <of the image>,
#                   "created": unix seconds}
#   the app image (ESP-IDF format: magic 0xE9, chip id at offset 12), exactly `size` bytes.
import json
import hashlib
from binascii import hexlify
from system import signed
from storage.fs import read_json

MAGIC = b'MEPIMG1'
FORMAT = 1
MAX_MANIFEST = 2048
BLOCK = 4096
# the chip id in an app image's header; 0xFFFF (no real chip) marks the virtual board's
CHIP_IDS = {'esp32': 0x0000, 'esp32c3': 0x0005, 'host': 0xFFFF}
PENDING = 'image_pending.json'   # written after set_boot: the image on its way or on trial


class ImageError(signed.SignedError):
    pass


def partitions():
    """(esp32.Partition, the running slot, the next slot), or ImageError when this board
    cannot take an image (no esp32 module, or no OTA partition table)."""
    try:
        from esp32 import Partition
    except ImportError:
        raise ImageError('this board cannot take an image update (no esp32.Partition): '
                         'update it with a bundle or tools/flash.py')
    try:
        run = Partition(Partition.RUNNING)
        nxt = run.get_next_update()
    except OSError:
        raise ImageError('this board has no OTA partitions (its image was written without '
                         'the OTA partition table): write an image built by '
                         'tools/image/build.sh once with tools/flash.py, then updates work '
                         'here')
    return Partition, run, nxt


def label(p):
    return p.info()[4]


def running_version():
    """The release frozen into the running image (release.py)."""
    from system import version
    return version.running()


def _record(fs, result, pend, reason=None):
    """The last update's record (system/update_status.py), which bundles write too."""
    from system import update_status
    update_status.record(fs, result, pend.get('version'), reason, pend.get('from_version'))


class ImageReceiver(signed.Receiver):
    """Streams one image file into the next slot. feed() as chunks arrive, then finish(),
    which checks it whole and makes it the boot slot. Holds in RAM the header line or the
    manifest and one 4 KB block."""
    MAGIC = MAGIC
    MAX_MANIFEST = MAX_MANIFEST
    Error = ImageError
    NAME = 'image'
    NOT_OURS = 'not an image file for this firmware (bad header)'
    MODIFIED = 'bad signature: the image file was modified or signed with another key'
    TRAILING = 'unexpected data after the image: refused'
    FLASH_FAILED = 'writing the image to flash failed (%s)'

    def __init__(self, key, chip, fs, parts=None):
        self.P, self.run, self.slot = parts or partitions()
        super().__init__(key)
        self.chip = chip
        self.fs = fs
        self._blk = None
        self._fill = 0
        self._nblk = 0

    def on_manifest(self, m, raw):
        if not isinstance(m, dict) or m.get('format') != FORMAT or m.get('kind') != 'image':
            raise ImageError('unsupported image file format')
        if m.get('device') != self.chip:
            raise ImageError('image is for %r, this device is %r: refused'
                             % (m.get('device'), self.chip))
        size, h = m.get('size'), m.get('sha256')
        if not isinstance(size, int) or size < 64 or not isinstance(h, str) or len(h) != 64:
            raise ImageError('bad size or sha256 in the image manifest')
        room = self.slot.info()[3]
        if size > room:
            raise ImageError('image of %d KB is too large for slot %s (%d KB)'
                             % (size // 1024, label(self.slot), room // 1024), 413)
        settle(self.fs, (self.P, self.run, self.slot))
        pend = read_json(self.fs, PENDING)
        if pend and pend.get('slot') == label(self.run):
            raise ImageError('the running image is still on trial (it has not run long '
                             'enough to be kept); try again in a minute', 409)
        self._left = size
        self._hash = hashlib.sha256()
        self._blk = bytearray(BLOCK)
        return size

    def on_body(self, mv):
        take = min(len(mv), self._left, BLOCK - self._fill)
        self._blk[self._fill:self._fill + take] = mv[:take]
        if self._nblk == 0 and self._fill < 36 <= self._fill + take:
            self._check_head()
        self._fill += take
        self._left -= take
        self._hash.update(mv[:take])
        if self._fill == BLOCK:
            self._flush()
        if self._left == 0 and self._fill:
            self._flush()
        return take

    def _check_head(self):
        b = self._blk
        if b[0] != 0xE9:
            raise ImageError('not an ESP32 app image (no 0xE9 header)')
        if bytes(b[32:36]) != b'\x32\x54\xcd\xab':     # esp_app_desc_t's magic word
            raise ImageError('not an app image (no app descriptor): use micropython.bin, not '
                             'firmware.bin with the bootloader')
        want = CHIP_IDS.get(self.chip)
        got = b[12] | b[13] << 8
        if got != want:
            raise ImageError('the image is built for chip id 0x%04x, this %s needs 0x%04x: '
                             'refused' % (got, self.chip, want))

    def _flush(self):
        if self._nblk == 0 and label(self.P(self.P.BOOT)) != label(self.run):
            # an image staged before and not started yet: withdraw it before its slot is
            # written, so an upload cut short never leaves the boot slot on a half-written one
            self.run.set_boot()
            self.fs.remove(PENDING)
        for k in range(self._fill, BLOCK):
            self._blk[k] = 0xFF
        self.slot.writeblocks(self._nblk, self._blk)
        self._nblk += 1
        self._fill = 0

    def on_complete(self):
        """The image is whole: check it is right, then make it the boot slot."""
        m = self.manifest
        if hexlify(self._hash.digest()).decode() != m['sha256'].lower():
            raise ImageError('the image is damaged: its SHA-256 does not match the signed '
                             'manifest')
        try:
            self.slot.set_boot()
        except OSError as e:
            raise ImageError('the bootloader would not accept the image (%s)' % (e,))
        self.fs.write(PENDING, json.dumps({
            'version': m.get('version'), 'slot': label(self.slot), 'from': label(self.run),
            'from_version': running_version()}).encode())
        return {'version': m.get('version'), 'slot': label(self.slot),
                'bytes': self.expected}

    def on_fail(self):
        self._blk = None


def settle(fs, parts=None):
    """Record what became of an image made the boot slot: on trial once it runs; rolled back
    when another slot runs and the boot slot is no longer the new one (the bootloader went
    back)."""
    pend = read_json(fs, PENDING)
    if not pend:
        return
    P, run, _n = parts or partitions()
    if pend.get('slot') == label(run):
        if not pend.get('started'):     # on trial: the update's record says so once
            _record(fs, 'on trial', pend)
            pend['started'] = 1
            fs.write(PENDING, json.dumps(pend).encode())
        return
    if label(P(P.BOOT)) == pend.get('slot'):
        return                      # staged, not started yet
    why = pend.get('why') or 'it did not confirm itself before a reset'
    _record(fs, 'rolled back', pend, '%s: the bootloader started %s again'
            % (why, label(run)))
    fs.remove(PENDING)


def reject(fs, why, parts=None):
    """The image on trial did not prove itself in time (safemode.reject): remember why; the
    reset that follows makes the bootloader start the previous image. False when no image
    is on trial."""
    try:
        P, run, _n = parts or partitions()
    except ImageError:
        return False
    pend = read_json(fs, PENDING)
    if not pend or pend.get('slot') != label(run):
        return False
    pend['why'] = why
    fs.write(PENDING, json.dumps(pend).encode())
    return True


def confirm(fs, parts=None):
    """The running release has proven itself: keep the running image (cancel the rollback).
    Does nothing on a board without OTA partitions."""
    try:
        parts = parts or partitions()
    except ImageError:
        return None
    P, run, _n = parts
    err = None
    try:
        P.mark_app_valid_cancel_rollback()
    except OSError as e:
        # otadata blank (an image just written by esptool: nothing pending), or an image
        # without the bootloader's rollback (-261: it stays anyway)
        if e.args and e.args[0] not in (261, -261):
            err = e
    pend = read_json(fs, PENDING)
    if pend and pend.get('slot') == label(run):
        if err is not None:     # not kept: the next reset goes back; say so then
            raise ImageError('the new image could not be marked valid (%r)' % (err,))
        _record(fs, 'updated', pend)
        fs.remove(PENDING)
        return 'confirmed'
    settle(fs, parts)
    return None


def status(fs, version=None, parts=None):
    """For /api/status: the running slot and its version, an image staged or on trial (the
    last update's result, a rollback included, is /api/status's `update`); None without OTA
    partitions."""
    try:
        parts = parts or partitions()
    except ImageError:
        return None
    P, run, nxt = parts
    settle(fs, parts)
    pend = read_json(fs, PENDING)
    boot = label(P(P.BOOT))
    d = {'slot': label(run), 'version': version or running_version(),
         'slot_kb': run.info()[3] // 1024, 'next': label(nxt), 'staged': None, 'trial': None}
    if pend and pend.get('slot') == label(run):
        d['trial'] = pend.get('version')
    elif boot != label(run):
        d['staged'] = {'slot': boot, 'version': pend and pend.get('version')}
    return d
