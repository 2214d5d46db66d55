# MEP request messages (MSG: the part between LEN and SEQ), C12.18 service encoding.
# Protocol fields are big-endian; data written into tables (the BT07 procedure id and
# parameters) is table data and therefore little-endian.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from mep.frames import MAX_TABLE

FULL_READ = const(0x30)
PARTIAL_READ = const(0x3F)
FULL_WRITE = const(0x40)
PARTIAL_WRITE = const(0x4F)

# Table ids. ETnn = manufacturer table nn = 0x0800 + nn.
BT01 = const(0x0001)   # general manufacturer identification
BT07 = const(0x0007)   # procedure initiate
BT08 = const(0x0008)   # procedure response
BT21 = const(0x0015)   # actual registers
BT23 = const(0x0017)   # current register data
BT28 = const(0x001C)   # present register data
BT52 = const(0x0034)   # clock
ET03 = const(0x0803)   # utility information
ET11 = const(0x080B)   # MFG dimension table
ET13 = const(0x080D)   # MEP/M-Bus device configuration
ET50 = const(0x0832)   # MEP inbound data space
ET58 = const(0x083A)   # MEP procedure response (alternative to BT08)
ET59 = const(0x083B)

EP39 = const(0x0827)   # procedure "Post MEP Data"

PSEQ_MIN = const(5)    # MEP procedure sequence numbers run 5..9
PSEQ_MAX = const(9)

TABLE_NAMES = {
    BT01: 'BT01 manufacturer identification',
    BT07: 'BT07 procedure initiate',
    BT08: 'BT08 procedure response',
    BT21: 'BT21 actual registers',
    BT23: 'BT23 current register data',
    BT28: 'BT28 present register data',
    BT52: 'BT52 clock',
    ET03: 'ET03 utility information',
    ET11: 'ET11 dimension table',
    ET13: 'ET13 MEP/M-Bus device configuration',
    ET50: 'ET50 MEP inbound data space',
    ET58: 'ET58 MEP procedure response',
    ET59: 'ET59 MEP procedure response',
}

SERVICE_NAMES = {FULL_READ: 'full read', PARTIAL_READ: 'partial read',
                 FULL_WRITE: 'full write', PARTIAL_WRITE: 'partial write'}


def table_name(table):
    name = TABLE_NAMES.get(table)
    if name:
        return name
    if table >= 0x0800:
        return 'ET%02d' % (table - 0x0800)
    return 'BT%02d' % table


def _u16(v):
    if not 0 <= v <= 0xFFFF:
        raise ValueError('value out of 16-bit range: %r' % v)
    return bytes((v >> 8, v & 0xFF))


def _u24(v):
    if not 0 <= v <= 0xFFFFFF:
        raise ValueError('offset out of 24-bit range: %r' % v)
    return bytes((v >> 16, (v >> 8) & 0xFF, v & 0xFF))


def full_read(table, max_len=MAX_TABLE):
    return bytes((FULL_READ,)) + _u16(table) + _u16(max_len)


def partial_read(table, offset, count):
    return bytes((PARTIAL_READ,)) + _u16(table) + _u24(offset) + _u16(count)


def full_write(table, data):
    return bytes((FULL_WRITE,)) + _u16(table) + _u16(len(data)) + bytes(data)


def partial_write(table, offset, data):
    return bytes((PARTIAL_WRITE,)) + _u16(table) + _u24(offset) + _u16(len(data)) + bytes(data)


def procedure(proc, pseq, params=b''):
    """Procedure call: a full write of BT07 = PROC(2, LE) | PSEQ | PARAMS."""
    if not PSEQ_MIN <= pseq <= PSEQ_MAX:
        raise ValueError('procedure sequence number must be 5..9, got %r' % pseq)
    if not 0 <= proc <= 0xFFFF:
        raise ValueError('procedure number out of range: %r' % proc)
    return full_write(BT07, bytes((proc & 0xFF, proc >> 8, pseq)) + bytes(params))


def next_pseq(pseq):
    return PSEQ_MIN if pseq >= PSEQ_MAX else pseq + 1


def ep39_params(data=b'\x01\x02\x03\x04\x05\x06', kind=0x04, status=0x01):
    """Parameters of EP39 "Post MEP Data": type, status, length (LE), data.
    kind 0x04 = scheduled read data + alarms, status 0x01 = success."""
    n = len(data)
    return bytes((kind, status, n & 0xFF, n >> 8)) + bytes(data)


class Message:
    """A MSG taken apart: service, table, offset, count, data."""

    def __init__(self, service, table, offset=None, count=None, data=None, max_len=None):
        self.service = service
        self.table = table
        self.offset = offset
        self.count = count
        self.data = data
        self.max_len = max_len

    def is_read(self):
        return self.service in (FULL_READ, PARTIAL_READ)

    def is_procedure(self):
        return self.service == FULL_WRITE and self.table == BT07

    def pseq(self):
        return self.data[2] if self.is_procedure() and len(self.data) >= 3 else None

    def describe(self):
        s = '%s %s' % (SERVICE_NAMES.get(self.service, '?'), table_name(self.table))
        if self.offset is not None:
            s += ' offset %d' % self.offset
        if self.count is not None:
            s += ' count %d' % self.count
        if self.is_procedure() and len(self.data) >= 3:
            s += ' procedure 0x%04x PSEQ %d' % (self.data[0] | (self.data[1] << 8), self.data[2])
        return s


def parse_message(msg):
    """Take a MSG apart; raises ValueError naming what is wrong."""
    msg = bytes(msg)
    if not msg:
        raise ValueError('empty message')
    svc = msg[0]
    n = len(msg)
    if svc == FULL_READ:
        if n == 3:   # the short C12.18 form some firmwares send
            return Message(svc, (msg[1] << 8) | msg[2])
        if n != 5:
            raise ValueError('full read must be 5 bytes (30 tttt llll), got %d' % n)
        return Message(svc, (msg[1] << 8) | msg[2], max_len=(msg[3] << 8) | msg[4])
    if svc == PARTIAL_READ:
        if n != 8:
            raise ValueError('partial read must be 8 bytes (3F tttt oooooo cccc), got %d' % n)
        return Message(svc, (msg[1] << 8) | msg[2], (msg[3] << 16) | (msg[4] << 8) | msg[5],
                       (msg[6] << 8) | msg[7])
    if svc == FULL_WRITE:
        if n < 5 or ((msg[3] << 8) | msg[4]) != n - 5:
            raise ValueError('full write: count does not match the data (40 tttt cccc data)')
        return Message(svc, (msg[1] << 8) | msg[2], count=n - 5, data=msg[5:])
    if svc == PARTIAL_WRITE:
        if n < 8 or ((msg[6] << 8) | msg[7]) != n - 8:
            raise ValueError('partial write: count does not match the data')
        return Message(svc, (msg[1] << 8) | msg[2], (msg[3] << 16) | (msg[4] << 8) | msg[5],
                       n - 8, msg[8:])
    raise ValueError('unknown service code 0x%02x (known: 30, 3F, 40, 4F)' % svc)
