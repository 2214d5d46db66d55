# What every C12.19 / NES table decoder shares (mep/tables.py, mep/tables_startup.py): the
# errors, the little-endian integer readers, the length check, and the MEP device's entry.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from mep import requests as rq

MEP_ENTRY = const(4)     # entries 0..3 are M-Bus devices, entry 4 is the MEP device
ET50_FLAG_ET58 = const(0x02)   # procedure results go to ET58 instead of BT08


class TableError(ValueError):
    pass


class ShortTable(TableError):
    def __init__(self, table, need, got):
        super().__init__('%s too short: need %d bytes, got %d'
                         % (rq.table_name(table), need, got))
        self.table = table
        self.need = need
        self.got = got


def need(table, data, n):
    if len(data) < n:
        raise ShortTable(table, n, len(data))


def i32(b, o):
    """Signed 32-bit little-endian integer at offset o."""
    v = b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)
    if v & 0x80000000:
        v -= 0x100000000
    return v


def u16le(b, o):
    return b[o] | (b[o + 1] << 8)
