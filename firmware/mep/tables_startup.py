# C12.19 / NES table decoders for the start-up tables (BT01, BT21, BT52, ET03, ET11, ET13,
# ET50) and procedure responses (BT08, ET58, ET59), for the tinkering page too. Loaded only
# while decoding (mep.tables.decode); the per-poll decoders stay in mep/tables.py.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from mep import requests as rq
from mep.tabfmt import (TableError, need as _need, i32, u16le, MEP_ENTRY,  # noqa: F401
                        ET50_FLAG_ET58)

# The 16-bit fields of ET03/ET11/ET13 are read little-endian like every other table integer.
# The original firmware read them big-endian; no capture settles it. Flip this one switch if
# a real meter proves otherwise.
ET_U16_BIG_ENDIAN = False

def _u16et(b, o):
    if ET_U16_BIG_ENDIAN:
        return (b[o] << 8) | b[o + 1]
    return b[o] | (b[o + 1] << 8)


def ascii_field(b, o, n):
    s = bytes(b[o:o + n])
    out = []
    for c in s:
        if c == 0:
            break
        out.append(chr(c) if 0x20 <= c < 0x7F else '?')
    return ''.join(out).rstrip()


# --- BT01 general manufacturer identification -------------------------------------------

def bt01(data):
    _need(rq.BT01, data, 16)
    r = {
        'manufacturer': ascii_field(data, 0, 4),
        'model': ascii_field(data, 4, 8),
        'hw_version': data[12],
        'hw_revision': data[13],
        'fw_version': data[14],
        'fw_revision': data[15],
    }
    r['hw'] = '%d.%d' % (data[12], data[13])
    r['fw'] = '%d.%d' % (data[14], data[15])
    if len(data) >= 32:
        r['mfg_serial'] = ascii_field(data, 16, 16)
    return r


# --- BT21 actual registers ------------------------------------------------------------------

def bt21(data):
    _need(rq.BT21, data, 10)
    f0 = data[0]
    return {
        'flags0': f0,
        'flags1': data[1],
        'self_reads': data[2],
        'summations': data[3],
        'demands': data[4],
        'coincident_values': data[5],
        'occurrences': data[6],
        'tiers': data[7],                 # the original firmware filled this from byte 8
        'present_demands': data[8],
        'present_values': data[9],
        'demand_reset_counter': bool(f0 & 0x04),
        'time_remaining': bool(f0 & 0x40),
    }


# --- BT52 clock -----------------------------------------------------------------------------

def days_from_civil(y, m, d):
    """Days since 1970-01-01 for a proleptic Gregorian date (no time.mktime: ports differ)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def bt52(data):
    _need(rq.BT52, data, 7)
    y, mo, d, h, mi, s, f = data[0], data[1], data[2], data[3], data[4], data[5], data[6]
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
        raise TableError('BT52 clock holds an invalid time %02d-%02d-%02d %02d:%02d:%02d'
                         % (y, mo, d, h, mi, s))
    year = 2000 + y
    return {
        'year': year, 'month': mo, 'day': d, 'hour': h, 'minute': mi, 'second': s,
        'weekday': f & 0x07, 'dst': bool(f & 0x08), 'gmt': bool(f & 0x10),
        'tz_applied': bool(f & 0x20), 'dst_applied': bool(f & 0x40),
        # The meter clock is taken as UTC (as the original module did).
        'epoch': days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + s,
        'text': '%04d-%02d-%02d %02d:%02d:%02d' % (year, mo, d, h, mi, s),
    }


# --- ET03 utility information ---------------------------------------------------------------

def et03(data):
    _need(rq.ET03, data, 30)
    r = {'serial': ascii_field(data, 0, 30)}
    if len(data) >= 139:
        r['image_crc'] = _u16et(data, 137)
    return r


# --- ET11 dimension table -------------------------------------------------------------------

_ET11_U8 = (
    (0, 'devices'), (1, 'config_entry_size'), (2, 'status_entry_size'),
    (3, 'request_queue_size'), (4, 'request_entry_size'), (11, 'write_entry_size'),
    (12, 'phase_data_size'), (13, 'config_entry2_size'), (18, 'group_ids'),
    (19, 'harmonics'), (20, 'mbus_multicast_len'), (21, 'et22_alarm_size'),
    (22, 'mep_data_sources'), (23, 'et48_entries'), (24, 'critical_event_bitmaps'),
    (25, 'et57_entries'), (26, 'relay_switches'), (27, 'mep_alert_sources'),
)
_ET11_U16 = (
    (5, 'data_entry_size'), (7, 'transaction_request_len'), (9, 'transaction_response_len'),
    (28, 'ram_transaction_request_len'), (30, 'ram_transaction_response_len'),
)


def et11(data):
    _need(rq.ET11, data, 32)
    r = {}
    for o, name in _ET11_U8:
        r[name] = data[o]
    for o, name in _ET11_U16:
        r[name] = _u16et(data, o)
    return r


# --- ET13 MEP/M-Bus device configuration ----------------------------------------------------

BAUD_RATES = ('9600 (MEP default)', '300', '600', '1200', '2400 (M-Bus default)', '4800',
              '9600', '14400', '19200', '28800', '38400', '57600', '115200')
BILLING_FREQ = ('hourly', 'daily', 'weekly', 'monthly', 'never')
DAY_NAMES = ('Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday')


def scheduled_day_text(v):
    if v <= 30:
        return 'day %d of the month' % (v + 1)
    if 32 <= v <= 38:
        return DAY_NAMES[v - 32]
    if v == 39:
        return 'disabled'
    return 'reserved (%d)' % v


def _choice(seq, v):
    return seq[v] if v < len(seq) else 'reserved (%d)' % v


def et13(data, e11):
    size = e11['config_entry_size']
    count = e11['devices']
    if size < 9 or count < MEP_ENTRY + 1:
        raise TableError('ET11 says %d entries of %d bytes: no MEP entry to decode'
                         % (count, size))
    _need(rq.ET13, data, count * size)
    entries = []
    for k in range(count):
        o = k * size
        e = {
            'billing_day': data[o], 'billing_day_text': scheduled_day_text(data[o]),
            'hour': data[o + 1], 'minute': data[o + 2],
            'billing_freq': data[o + 3], 'billing_freq_text': _choice(BILLING_FREQ, data[o + 3]),
            'status_read_freq': _u16et(data, o + 4),
            'baud': data[o + 6], 'baud_text': _choice(BAUD_RATES, data[o + 6]),
            'alarm_mask': data[o + 7],
        }
        if k == MEP_ENTRY:
            e['alert_flags'] = data[o + 8]
        entries.append(e)
    return {'entries': entries, 'mep': entries[MEP_ENTRY], 'alert_flags': data[MEP_ENTRY * size + 8]}


# --- ET50 MEP inbound data space ------------------------------------------------------------

def et50(data):
    _need(rq.ET50, data, 68)
    return {
        'mep_id': ascii_field(data, 0, 30),
        'flags': data[30],
        'result_in_et58': bool(data[30] & ET50_FLAG_ET58),
        'icon_control': [u16le(data, 31 + 2 * k) for k in range(6)],
        'display_data': [i32(data, 43 + 4 * k) for k in range(6)],
        'mep_icon': data[67],
    }


# --- BT08 / ET58 / ET59 procedure response --------------------------------------------------

RESULT_TEXT = ('completed', 'accepted, not fully completed', 'invalid parameter',
               'conflicts with current device setup', 'timing constraint', 'no authorization',
               'unrecognized procedure')


def procedure_result(data, table=rq.BT08):
    _need(table, data, 4)
    code = data[3]
    return {
        'procedure': u16le(data, 0),
        'pseq': data[2],
        'result': code,
        'result_text': _choice(RESULT_TEXT, code),
        'data': bytes(data[4:]),
    }


# --- dispatch for the tinkering page ------------------------------------------------------

def decode(table, data, ctx=None):
    """Decode a full table read. `ctx` holds earlier decoded tables ('bt21', 'et11') for the
    tables whose layout depends on them. Returns a dict, or None for unknown tables."""
    ctx = ctx or {}
    if table == rq.BT01:
        return bt01(data)
    if table == rq.BT21:
        return bt21(data)
    if table == rq.BT52:
        return bt52(data)
    if table == rq.ET03:
        return et03(data)
    if table == rq.ET11:
        return et11(data)
    if table == rq.ET13:
        e11 = ctx.get('et11')
        if not e11:
            raise TableError('ET13 needs ET11 (entry size) first')
        return et13(data, e11)
    if table == rq.ET50:
        return et50(data)
    if table in (rq.BT08, rq.ET58, rq.ET59):
        return procedure_result(data, table)
    return None
