# The ESP32's update machinery, emulated for the virtual board (host only, never flashed).
# One file runs under CPython (tools, tests, the vboard's bootloader) and under the
# MicroPython unix port (the board's `esp32` module, esp32.py beside this file).
#
# - Flash: a file of the flash's size. NOR semantics: erase sets 4 KB sectors to 0xFF, a
#   write can only clear bits (data written over unerased data is ANDed, as on the chip).
#   `Flash.budget` (CPython tests) cuts the power after that many more bytes were erased or
#   written: the write in progress stops part way and PowerCut is raised.
# - The partition table at 0x8000 in ESP-IDF's binary format (32-byte entries, magic 0x50AA,
#   an MD5 entry 0xEBEB), written from a CSV by table_bin().
# - otadata: two 4 KB sectors, each holding one esp_ota_select_entry_t (ota_seq, seq_label,
#   ota_state, crc = CRC-32 of ota_seq as esp_rom_crc32_le(UINT32_MAX, ...) computes it).
#   The active entry is the valid one (crc right, seq not 0xFFFFFFFF, state not INVALID or
#   ABORTED) with the higher seq; it boots slot (seq - 1) % number of OTA slots.
# - Partition: esp32.Partition's calls (find, info, readblocks, writeblocks, ioctl, set_boot,
#   get_next_update, mark_app_valid_cancel_rollback, BOOT, RUNNING) with ESP-IDF's
#   semantics: set_boot verifies the image first (OSError if it is not a valid app image)
#   and writes the other otadata sector with seq + n and state NEW (rollback enabled, as in
#   MicroPython's sdkconfig.base); mark_app_valid_cancel_rollback sets the active entry
#   VALID, and fails (OSError) when no entry is active or it names another slot.
# - bootloader(): what the second-stage bootloader does at every reset: entries left
#   PENDING_VERIFY (an image that booted and never confirmed itself) become ABORTED, so
#   the other entry wins: the rollback; a NEW entry becomes PENDING_VERIFY and boots; an
#   image that does not verify is skipped for the next slot; blank otadata boots ota_0 and
#   records seq 1 VALID.
# - App images in ESP-IDF's format: a 24-byte header (magic 0xE9, segment count, chip id at
#   offset 12, hash_appended at 23), segments (load address, length, data), padding to 16
#   with the XOR checksum (seed 0xEF) as the last byte, then the SHA-256 of all that.
#   make_image() builds one for the virtual board: the app descriptor (0xABCD5432, version)
#   as the first segment and a tar of the frozen app's modules as the second.
import struct
import hashlib
from binascii import crc32
try:
    from io import open as _open    # not the virtual board's open(), which counts the room
except ImportError:
    _open = open

SECTOR = 4096
PT_OFFSET = 0x8000
PT_SIZE = 0xC00
TYPE_APP, TYPE_DATA = 0, 1
SUB_FACTORY, SUB_OTA0, SUB_OTA_DATA = 0x00, 0x10, 0x00
SUBTYPE_ANY = 255
NEW, PENDING_VERIFY, VALID, INVALID, ABORTED, UNDEFINED = 0, 1, 2, 3, 4, 0xFFFFFFFF
STATE_NAMES = {NEW: 'new', PENDING_VERIFY: 'pending verify', VALID: 'valid',
               INVALID: 'invalid', ABORTED: 'aborted', UNDEFINED: 'undefined'}
IMAGE_MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
CHIP_VIRTUAL = 0xFFFF   # ESP_CHIP_ID_INVALID: no real chip takes the virtual board's images
ESP_FAIL = 1            # OSError(-ESP_FAIL), as MicroPython's check_esp_err raises it
ESP_ERR_OTA_VALIDATE_FAILED = -0x1503
_ENTRY = '<I20sII'      # esp_ota_select_entry_t
_PT_ENTRY = '<2sBBII16sI'
_SUBTYPES = {'factory': 0x00, 'test': 0x20, 'ota': 0x00, 'phy': 0x01, 'nvs': 0x02,
             'coredump': 0x03, 'nvs_keys': 0x04, 'efuse': 0x05, 'fat': 0x81, 'spiffs': 0x82,
             'littlefs': 0x83}


class PowerCut(Exception):
    pass


class Flash:
    budget = None           # bytes left before a simulated power cut (None: never)

    def __init__(self, path):
        self.path = path

    @staticmethod
    def create(path, size):
        with _open(path, 'wb') as f:
            block = b'\xff' * 65536
            for _ in range(size // 65536):
                f.write(block)
        return Flash(path)

    def size(self):
        with _open(self.path, 'rb') as f:
            f.seek(0, 2)
            return f.tell()

    def read(self, off, n):
        with _open(self.path, 'rb') as f:
            f.seek(off)
            return f.read(n)

    def _spend(self, n):
        b = Flash.budget
        if b is None:
            return n
        if n <= b:
            Flash.budget = b - n
            return n
        Flash.budget = 0
        return b

    def _put(self, off, data):
        with _open(self.path, 'r+b') as f:
            f.seek(off)
            f.write(data)

    def erase(self, off, n):
        if off % SECTOR or n % SECTOR:
            raise OSError(22)
        k = self._spend(n)
        self._put(off, b'\xff' * k)
        if k < n:
            raise PowerCut('power cut while erasing 0x%x' % (off + k))

    def write(self, off, data):
        data = bytes(data)
        old = self.read(off, len(data))
        k = self._spend(len(data))
        self._put(off, bytes(a & b for a, b in zip(old[:k], data[:k])))
        if k < len(data):
            raise PowerCut('power cut while writing 0x%x' % (off + k))


# ------------------------------------------------------------------ the partition table

def _num(s):
    s = s.strip()
    m = 1
    if s[-1:] in ('K', 'k'):
        s, m = s[:-1], 1024
    elif s[-1:] in ('M', 'm'):
        s, m = s[:-1], 1 << 20
    return int(s, 0) * m


def parse_csv(text):
    """ESP-IDF partition CSV -> [{name, type, subtype, offset, size}], offsets explicit."""
    out = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        f = [x.strip() for x in line.split(',')]
        name, typ, sub, off, size = f[:5]
        t = TYPE_APP if typ == 'app' else TYPE_DATA if typ == 'data' else _num(typ)
        if sub.startswith('ota_'):
            st = SUB_OTA0 + int(sub[4:])
        elif sub in _SUBTYPES:
            st = _SUBTYPES[sub]
        else:
            st = _num(sub)
        if not off:
            raise ValueError('partition %s: give its offset' % name)
        out.append({'name': name, 'type': t, 'subtype': st, 'offset': _num(off),
                    'size': _num(size)})
    return out


def table_bin(parts):
    raw = b''
    for p in parts:
        raw += struct.pack(_PT_ENTRY, b'\xaa\x50', p['type'], p['subtype'], p['offset'],
                           p['size'], p['name'].encode(), 0)
    raw += b'\xeb\xeb' + b'\xff' * 14 + hashlib.md5(raw).digest()
    return raw + b'\xff' * (PT_SIZE - len(raw))


def read_table(flash):
    raw = flash.read(PT_OFFSET, PT_SIZE)
    out = []
    for i in range(0, PT_SIZE, 32):
        magic, t, st, off, size, label, _flags = struct.unpack_from(_PT_ENTRY, raw, i)
        if magic != b'\xaa\x50':
            break
        out.append({'name': label.rstrip(b'\x00').decode(), 'type': t, 'subtype': st,
                    'offset': off, 'size': size})
    return out


def new_flash(path, parts, size=4 << 20):
    """A blank flash of `size` with this partition table written (as esptool would)."""
    fl = Flash.create(path, size)
    fl.erase(PT_OFFSET, SECTOR)
    fl.write(PT_OFFSET, table_bin(parts))
    return fl


def ota_slots(parts):
    return sorted((p for p in parts if p['type'] == TYPE_APP and
                   SUB_OTA0 <= p['subtype'] < SUB_OTA0 + 16), key=lambda p: p['subtype'])


def otadata_part(parts):
    for p in parts:
        if p['type'] == TYPE_DATA and p['subtype'] == SUB_OTA_DATA:
            return p
    return None


# ------------------------------------------------------------------ otadata

def seq_crc(seq):
    return crc32(struct.pack('<I', seq), 0xFFFFFFFF) & 0xFFFFFFFF


def read_otadata(flash, od):
    out = []
    for i in range(2):
        seq, _label, state, crc = struct.unpack(_ENTRY, flash.read(od['offset'] + i * SECTOR,
                                                                  32))
        out.append([seq, state, crc])
    return out


def _valid(e):
    return e[0] != 0xFFFFFFFF and e[1] not in (INVALID, ABORTED) and e[2] == seq_crc(e[0])


def active_entry(entries):
    best = -1
    for i in range(2):
        if _valid(entries[i]) and (best < 0 or entries[i][0] > entries[best][0]):
            best = i
    return best


def write_entry(flash, od, i, seq, state):
    flash.erase(od['offset'] + i * SECTOR, SECTOR)
    flash.write(od['offset'] + i * SECTOR,
                struct.pack(_ENTRY, seq, b'\xff' * 20, state, seq_crc(seq)))


def set_state(flash, od, i, state):
    """Rewrite one entry's state in place (the bootloader's and the app's state changes)."""
    seq = read_otadata(flash, od)[i][0]
    write_entry(flash, od, i, seq, state)


# ------------------------------------------------------------------ app images

def _pad4(b):
    return b + b'\x00' * (-len(b) % 4)


def app_desc(version, project='mep'):
    return struct.pack('<III4x32s32s16s16s32s32s80x', APP_DESC_MAGIC, 0, 0,
                       version.encode()[:31], project.encode()[:31], b'', b'', b'v5', b'')


def build_image(segments, chip_id):
    """An app image in ESP-IDF's format from [(load_addr, data)], with its SHA-256."""
    head = struct.pack('<BBBBIBBBBHBHH4sB', IMAGE_MAGIC, len(segments), 2, 0x20, 0x40080000,
                       0xEE, 0, 0, 0, chip_id, 0, 0, 0xFFFF, b'\x00' * 4, 1)
    body = head
    ck = 0xEF
    for addr, data in segments:
        data = _pad4(data)
        body += struct.pack('<II', addr, len(data)) + data
        for b in data:
            ck ^= b
    body += b'\x00' * (15 - len(body) % 16) + bytes([ck])
    return body + hashlib.sha256(body).digest()


def verify_image(read, limit):
    """Check an app image as esp_image_verify does: `read(off, n)` reads the slot. Returns
    (length, None) or (None, reason)."""
    h = read(0, 24)
    if len(h) < 24 or h[0] != IMAGE_MAGIC:
        return None, 'invalid magic byte'
    n = h[1]
    if not 0 < n <= 16:
        return None, 'bad segment count %d' % n
    off = 24
    ck = 0xEF
    sha = hashlib.sha256(h)
    for _ in range(n):
        sh = read(off, 8)
        _addr, ln = struct.unpack('<II', sh)
        if off + 8 + ln > limit:
            return None, 'image length does not fit in the partition'
        sha.update(sh)
        for k in range(0, ln, SECTOR):      # a sector at a time, as the bootloader maps it
            data = read(off + 8 + k, min(SECTOR, ln - k))
            sha.update(data)
            for b in data:
                ck ^= b
        off += 8 + ln
    pad = 15 - off % 16
    tail = read(off, pad + 1)
    sha.update(tail)
    if tail[-1] != ck:
        return None, 'checksum failed'
    off += pad + 1
    if h[23] == 1:
        if read(off, 32) != sha.digest():
            return None, 'image hash failed: the image is damaged'
        off += 32
    return off, None


def image_segments(image):
    """[(load_addr, data)] of an image (tools and the vboard's bootloader)."""
    n = image[1]
    off = 24
    out = []
    for _ in range(n):
        addr, ln = struct.unpack_from('<II', image, off)
        out.append((addr, image[off + 8:off + 8 + ln]))
        off += 8 + ln
    return out


def image_version(image):
    segs = image_segments(image)
    if segs and struct.unpack_from('<I', segs[0][1])[0] == APP_DESC_MAGIC:
        return segs[0][1][16:48].rstrip(b'\x00').decode()
    return None


# ------------------------------------------------------------------ the bootloader

def bootloader(flash, out=print):
    """Choose the slot to run at a reset, as ESP-IDF's bootloader does with rollback
    enabled; returns the partition dict (None: no bootable app)."""
    parts = read_table(flash)
    slots = ota_slots(parts)
    od = otadata_part(parts)
    factory = [p for p in parts if p['type'] == TYPE_APP and p['subtype'] == SUB_FACTORY]
    order = []
    initial = False
    if od is None or not slots:
        order = factory
    else:
        e = read_otadata(flash, od)
        for i in range(2):
            if e[i][1] == PENDING_VERIFY and e[i][0] != 0xFFFFFFFF:
                out('boot: otadata[%d] was never confirmed: marked ABORTED (rollback)' % i)
                set_state(flash, od, i, ABORTED)
                e[i][1] = ABORTED
        a = active_entry(e)
        if a < 0:
            start = 0
            initial = all(x[0] == 0xFFFFFFFF or x[2] != seq_crc(x[0]) for x in e)
            if factory:
                order = factory
        else:
            start = (e[a][0] - 1) % len(slots)
            if e[a][1] == NEW:
                set_state(flash, od, a, PENDING_VERIFY)
        if not order:
            # the chosen slot, then the others downwards, then upwards
            idx = [start] + list(range(start - 1, -1, -1)) + list(range(start + 1, len(slots)))
            order = [slots[i] for i in idx] + factory
    for p in order:
        n, why = verify_image(lambda o, k: flash.read(p['offset'] + o, k), p['size'])
        if n:
            if initial and p in slots:
                write_entry(flash, od, 0, slots.index(p) + 1, VALID)
            return p
        out('boot: %s is not bootable: %s' % (p['name'], why))
    out('boot: no bootable app partition')
    return None


# ------------------------------------------------------------------ esp32.Partition

class Partition:
    """esp32.Partition on the emulated flash. `Partition.flash` and `Partition.running`
    (the label the bootloader chose) are set by esp32.py at import."""
    BOOT = 0
    RUNNING = 1
    TYPE_APP = TYPE_APP
    TYPE_DATA = TYPE_DATA
    flash = None
    running = None

    def __init__(self, id):
        if isinstance(id, dict):        # a table entry (find, get_next_update)
            self._p = id
            return
        parts = read_table(Partition.flash)
        if id == Partition.RUNNING:
            p = self._label(parts, Partition.running)
        elif id == Partition.BOOT:
            p = _boot_partition(parts)
        elif isinstance(id, int):
            raise ValueError()
        else:
            p = self._label(parts, id)
        if p is None:
            raise OSError(2)
        self._p = p

    @staticmethod
    def _label(parts, label):
        for p in parts:
            if p['name'] == label:
                return p
        return None

    @staticmethod
    def _of(p):
        return Partition(p)

    @staticmethod
    def find(type=TYPE_APP, subtype=SUBTYPE_ANY, label=None):
        return [Partition._of(p) for p in read_table(Partition.flash)
                if p['type'] == type and (subtype == SUBTYPE_ANY or p['subtype'] == subtype)
                and (label is None or p['name'] == label)]

    def info(self):
        p = self._p
        return (p['type'], p['subtype'], p['offset'], p['size'], p['name'], False)

    def __repr__(self):
        return '<Partition type=%d, subtype=%d, address=%d, size=%d, label=%s, encrypted=0>' \
            % self.info()[:5]

    def readblocks(self, n, buf, off=0):
        a = n * SECTOR + off
        if a + len(buf) > self._p['size']:
            raise OSError(22)
        buf[:] = Partition.flash.read(self._p['offset'] + a, len(buf))

    def writeblocks(self, n, buf, off=None):
        a = n * SECTOR
        if off is None:
            if a + len(buf) > self._p['size']:
                raise OSError(22)
            Partition.flash.erase(self._p['offset'] + a, (len(buf) + SECTOR - 1) // SECTOR
                                  * SECTOR)
        else:
            a += off
        if a + len(buf) > self._p['size']:
            raise OSError(22)
        Partition.flash.write(self._p['offset'] + a, buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self._p['size'] // SECTOR
        if op == 5:
            return SECTOR
        if op == 6:
            Partition.flash.erase(self._p['offset'] + arg * SECTOR, SECTOR)
            return 0
        return 0 if op in (1, 2, 3) else None

    def set_boot(self):
        p = self._p
        fl = Partition.flash
        n, _why = verify_image(lambda o, k: fl.read(p['offset'] + o, k), p['size'])
        if not n:
            raise OSError(-ESP_ERR_OTA_VALIDATE_FAILED)
        parts = read_table(fl)
        slots = ota_slots(parts)
        od = otadata_part(parts)
        if p not in slots or od is None:
            raise OSError(ESP_FAIL)
        k = slots.index(p)
        e = read_otadata(fl, od)
        a = active_entry(e)
        if a < 0:
            write_entry(fl, od, 0, k + 1, NEW)
            return
        seq = e[a][0]
        nxt = k + 1
        while nxt <= seq:
            nxt += len(slots)
        write_entry(fl, od, 1 - a, nxt, NEW)

    def get_next_update(self):
        slots = ota_slots(read_table(Partition.flash))
        if not slots:
            raise OSError(2)
        if self._p in slots:
            return Partition._of(slots[(slots.index(self._p) + 1) % len(slots)])
        return Partition._of(slots[0])

    @staticmethod
    def mark_app_valid_cancel_rollback():
        fl = Partition.flash
        parts = read_table(fl)
        slots = ota_slots(parts)
        od = otadata_part(parts)
        if od is None or not slots:
            raise OSError(ESP_FAIL)
        e = read_otadata(fl, od)
        a = active_entry(e)
        if a < 0 or slots[(e[a][0] - 1) % len(slots)]['name'] != Partition.running:
            raise OSError(ESP_FAIL)     # "Running firmware is factory"
        if e[a][1] != VALID:
            set_state(fl, od, a, VALID)


def _boot_partition(parts):
    slots = ota_slots(parts)
    od = otadata_part(parts)
    if slots and od is not None:
        e = read_otadata(Partition.flash, od)
        a = active_entry(e)
        if a >= 0:
            return slots[(e[a][0] - 1) % len(slots)]
    for p in parts:
        if p['type'] == TYPE_APP and p['subtype'] == SUB_FACTORY:
            return p
    return slots[0] if slots else None


def state_of(flash, label):
    """The otadata state of slot `label` when the active entry names it (tests, status)."""
    parts = read_table(flash)
    slots = ota_slots(parts)
    od = otadata_part(parts)
    e = read_otadata(flash, od)
    a = active_entry(e)
    if a < 0 or slots[(e[a][0] - 1) % len(slots)]['name'] != label:
        return None
    return STATE_NAMES.get(e[a][1], e[a][1])
