# The file format of storage/history.py, shared with storage/history_load.py (which reads
# the state file and converts the old single-file history): the record of a bucket and the
# state file's layout. Everything little-endian.
import struct
from binascii import crc32

REC = '<I3h2I'
RS = 20  # record size: REC (18 bytes) + the 16-bit check
PAGE = 192  # records per file (3840 bytes: one 4 KB flash block)
MAGIC = b'MEPS'
VERSION = 2
SHDR = '<4sBBBBI'
SLVL = '<Iiqi2h2I'
SGLB = '<5q'
P_UNIT = 2  # W per count of the stored power values


def open_rw(path):
    """Open for in-place writes, creating the file when it does not exist."""
    try:
        return open(path, 'r+b')
    except OSError as e:
        if e.args and e.args[0] != 2:  # anything but ENOENT: never truncate
            raise
    return open(path, 'w+b')


def pack(buf, off, i, v):
    """Record of bucket i with values v = (p_min, p_avg, p_max, e_in, e_out) at buf[off:]."""
    struct.pack_into(REC, buf, off, i, v[0], v[1], v[2], v[3], v[4])
    struct.pack_into('<H', buf, off + 18, crc32(memoryview(buf)[off:off + 18]) & 0xFFFF)
