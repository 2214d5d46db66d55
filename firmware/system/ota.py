# Over-the-air update of the app: a signed bundle streams into ota_part/, is checked there,
# becomes ota_new/ once complete and is swapped in at the next boot by ota_apply.py (a refused
# or broken upload never touches an update already staged); a new app that keeps crashing,
# hangs or does not prove itself is rolled back from ota_old/. Every step is journalled, so a
# power cut at any moment leaves the old or the new release, and the next boot finishes it.
# What recovers is never what a bundle replaces: boot.py, main.py and the modules of
# RECOVERY (this one, safe mode, the filesystem operations) are refused in a bundle; only a
# cable (tools/flash.py) writes them.
#
# Bundle format 1 (tools/bundle.py writes it):
#   b'MEPOTA1 <manifest length> <signature>\n'   signature: 64 hex digits, HMAC-SHA256 under
#                                                the device's OTA key over the manifest bytes
#   manifest: JSON, exactly <manifest length> bytes:
#     {"format": 1, "device": "mep"|"esp32"|"esp32c3"|"esp32s3", "device_id": optional, "version": "..",
#      "created": unix seconds, "files": [{"path": "app.mpy", "size": 123, "sha256": hex}, ..],
#      "remove": optional, ["old/module.mpy", ..]: files of earlier releases this one drops}
#   the files' contents, concatenated in manifest order; nothing after the last one.
# The manifest lists every file's SHA-256, so signing the manifest signs the whole bundle.
import os  # noqa: F401 (tests cut ota.os.rename)
import hashlib
from binascii import hexlify
from system import signed
from storage.fs import Fs, read_json  # noqa: F401 (ota.Fs, ota.read_json for callers)

MAGIC = b'MEPOTA1'
FORMAT = 1
MAX_HEADER = signed.MAX_HEADER
MAX_MANIFEST = 16384
MAX_FILES = 200
STAGE = 'ota_new'
PART = 'ota_part'                 # the upload in progress (becomes STAGE when complete)
OLD = 'ota_old'
COMPLETE = STAGE + '/.complete'
JOURNAL = OLD + '/.journal'
TRIAL = 'ota_trial'
ROLLBACK = 'ota_rollback'         # a rollback asked for or under way: its reason
RELEASE = 'release.py'            # the release's version (system/version.py)
BOARD_MANIFEST = '.manifest.json'  # tools/flash.py's record of the board; stale after an OTA
PROTECTED = ('boot.py', 'main.py')  # they carry the rollback: only tools/flash.py writes them
# Modules that apply and roll back updates (as .py or .mpy, and no folder of that name to
# hide them): never in a bundle. 'system' and 'storage' themselves: a module file of that
# name in the root would hide the frozen package on an image with the app frozen in.
RECOVERY = ('boot', 'main', 'system', 'storage', 'system/__init__', 'system/safemode',
            'system/ota', 'system/ota_apply', 'system/signed', 'system/hmac_sha256',
            'system/update_status', 'storage/__init__', 'storage/fs')
SUFFIXES = ('.mpy', '.py', '.gz', '.html', '.css', '.js', '.svg', '.ico', '.png', '.txt')
MPY_ARCH = {'esp32': 10, 'esp32s3': 10, 'esp32c3': 11}  # .mpy header byte 2 >> 2 (0: plain bytecode)


class OtaError(signed.SignedError):
    pass


def header_line(manifest, key):
    """The bundle's first line for these manifest bytes (used by tools/bundle.py)."""
    return signed.header_line(MAGIC, manifest, key)


def check_path(p):
    if not isinstance(p, str) or not 0 < len(p) <= 96 or p[0] == '/' or '\\' in p:
        return 'bad file path %r' % (p,)
    for part in p.split('/'):
        if not part or part[0] == '.':
            return 'bad file path %r' % (p,)
    stem = p.rsplit('.', 1)[0] if '.' in p.rsplit('/', 1)[-1] else p
    for r in RECOVERY:
        if stem == r or p.startswith(r + '/') and r.count('/'):
            return ('%s is part of what applies and rolls back updates: it cannot be replaced '
                    'over the air (use tools/flash.py)' % p)
    if p.split('/')[0] in (STAGE, OLD, PART, TRIAL, ROLLBACK):
        return '%s cannot be replaced over the air' % p
    for s in SUFFIXES:
        if p.endswith(s):
            return None
    return 'file type of %s is not allowed in a bundle' % p


def check_manifest(m, chip, device_id=None):
    """Raise OtaError unless manifest dict `m` suits this device; return its file list."""
    if not isinstance(m, dict) or m.get('format') != FORMAT:
        raise OtaError('unsupported bundle format %r (this firmware reads format %d)'
                       % (m.get('format') if isinstance(m, dict) else None, FORMAT))
    dev = m.get('device')
    if dev != 'mep' and dev != chip:
        raise OtaError('bundle is for %r, this device is %r: refused' % (dev, chip))
    if m.get('device_id') and m.get('device_id') != device_id:
        raise OtaError('bundle is for device %r, not this one (%r): refused'
                       % (m.get('device_id'), device_id))
    files = m.get('files')
    if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
        raise OtaError('bundle lists no files (or too many)')
    seen = {}
    for f in files:
        if not isinstance(f, dict):
            raise OtaError('bad file entry in manifest')
        err = check_path(f.get('path'))
        if err:
            raise OtaError(err)
        if f['path'] in seen:
            raise OtaError('file %s listed twice' % f['path'])
        seen[f['path']] = 1
        size, h = f.get('size'), f.get('sha256')
        if not isinstance(size, int) or size < 0 or not isinstance(h, str) or len(h) != 64:
            raise OtaError('bad size or sha256 for %s' % f['path'])
    rm = m.get('remove', [])
    if not isinstance(rm, list) or len(rm) > MAX_FILES:
        raise OtaError('bad list of files to remove')
    for p in rm:
        err = check_path(p)
        if err:
            raise OtaError('cannot remove: ' + err)
        if p in seen:
            raise OtaError('%s is both in the bundle and to be removed' % p)
    return files


class OtaReceiver(signed.Receiver):
    """Streams one bundle into PART. feed() as chunks arrive, then finish(), which makes it
    the staged update (STAGE); any OtaError removes PART and leaves the running app and an
    update staged before untouched. Holds in RAM at most the header line
    or the manifest (<= MAX_MANIFEST); file data goes straight to flash, hashed on the way."""
    MAGIC = MAGIC
    MAX_MANIFEST = MAX_MANIFEST
    Error = OtaError
    NAME = 'bundle'
    NOT_OURS = 'not an OTA bundle for this firmware (bad header)'
    MODIFIED = 'bad signature: the bundle was modified or signed with another key'
    TRAILING = 'unexpected data after the last file: refused'
    FLASH_FAILED = 'writing the update to flash failed (%s); is the filesystem full?'

    def __init__(self, root, key, chip, device_id=None):
        super().__init__(key)
        self.fs = root if isinstance(root, Fs) else Fs(root)
        self.chip = chip
        self.device_id = device_id
        self._fh = None
        self._own = False           # PART is this upload's

    def on_manifest(self, m, raw):
        self._files = check_manifest(m, self.chip, self.device_id)
        if self.fs.exists(TRIAL):
            raise OtaError('the previous update is still on trial; try again in a minute')
        total = 0
        for f in self._files:
            total += f['size']
        self._raw = raw
        self.fs.rmtree(PART)            # a broken earlier upload
        free = self.fs.free()
        if free is not None and total + 8192 > free and self.fs.exists(STAGE):
            self.fs.rmtree(STAGE)       # this signed update replaces the staged one anyway
            free = self.fs.free()
        if free is not None and total + 8192 > free:
            raise OtaError('not enough flash: the update needs %d KB, %d KB free'
                           % (total // 1024 + 8, free // 1024))
        self._own = True
        self.fs.makedirs(PART)
        self._idx = -1
        self._next()
        return total

    def _next(self):
        self._idx += 1
        if self._idx == len(self._files):
            return
        f = self._files[self._idx]
        p = f['path']
        if '/' in p:
            self.fs.makedirs(PART + '/' + p.rsplit('/', 1)[0])
        self._fh = self.fs.open(PART + '/' + p, 'wb')
        self._hash = hashlib.sha256()
        self._left = f['size']
        self._head = bytearray() if p.endswith('.mpy') else None
        if self._left == 0:
            self._close()

    def on_body(self, mv):
        take = min(len(mv), self._left)
        data = mv[:take]
        if self._head is not None:
            self._head.extend(data[:3 - len(self._head)])
            if len(self._head) == 3 or take == self._left:
                self._check_mpy()
        self._fh.write(data)
        self._hash.update(data)
        self._left -= take
        if self._left == 0:
            self._close()
        return take

    def _check_mpy(self):
        h = self._head
        self._head = None
        want = MPY_ARCH.get(self.chip)
        if len(h) < 3 or h[0] != 77 or h[1] != 6 or (want and h[2] >> 2 not in (0, want)):
            raise OtaError('%s is not a .mpy file for this chip and MicroPython version'
                           % self._files[self._idx]['path'])

    def _close(self):
        self._fh.close()
        self._fh = None
        f = self._files[self._idx]
        if hexlify(self._hash.digest()).decode() != f['sha256'].lower():
            raise OtaError('%s is damaged: its SHA-256 does not match the signed manifest'
                           % f['path'])
        self._next()

    def on_complete(self):
        """Mark STAGE ready for the next boot."""
        self.fs.write(PART + '/.complete', self._raw)
        self.fs.rmtree(STAGE)           # the newer signed update replaces a staged one
        self.fs.rename(PART, STAGE)
        return {'version': self.manifest.get('version'), 'files': len(self._files),
                'bytes': self.expected}

    def on_fail(self):
        if self._fh:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if self._own:
            try:
                self.fs.rmtree(PART)
            except OSError:
                pass
