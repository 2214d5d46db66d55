# C12.19 / NES table decoders: the ones every poll cycle and alert needs (BT23, BT28). The
# others (start-up tables, procedure answers, tinkering) are in mep/tables_startup.py, loaded
# by decode() when asked.
# Table integers are little-endian (C12.19 data order); every
# decoder takes the table data only (never the response trailer), checks the length it needs
# and raises ShortTable naming the table instead of reading past the end.
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from struct import unpack_from
from mep import requests as rq
from mep.tabfmt import (TableError, ShortTable, need as _need, i32, u16le,  # noqa: F401
                        MEP_ENTRY, ET50_FLAG_ET58)

# What decode() calls with 'mep.tables_startup' once it is done with that module. Nothing by
# default; the app sets compat.unload here, so on MicroPython the decoders leave the heap again.
release = None

BT28_VALUES = const(55)


def bt23_offset(b21):
    """Bytes before the first summation in BT23: the demand-reset counter when present."""
    return 1 if b21 and b21['demand_reset_counter'] else 0


def bt28_offset(b21):
    """Bytes of present-demand records before the present values in BT28."""
    if not b21:
        return 0
    a = 3 if b21['time_remaining'] else 0
    return (a + 4) * b21['present_demands']


# --- BT23 current register data (energies) ------------------------------------------------

def bt23(data, b21=None):
    o = bt23_offset(b21)
    _need(rq.BT23, data, o + 8)
    r = {'e_fwd': i32(data, o), 'e_rev': i32(data, o + 4)}    # Wh
    if len(data) >= o + 16:
        r['eq_fwd'] = i32(data, o + 8)                        # varh
        r['eq_rev'] = i32(data, o + 12)
    return r


# --- BT28 present register data (instantaneous values) ------------------------------------

# Index -> name for the BT28 values the public sources identify. Units as the meter sends
# them: W, var, VA, mA, mV, mHz, power factor in 1/1000.
BT28_NAMES = {
    0: 'p_fwd', 1: 'p_rev', 2: 'q_imp', 3: 'q_exp',
    4: 'i_l1', 5: 'i_l2', 6: 'i_l3', 7: 'u_l1', 8: 'u_l2', 9: 'u_l3',
    10: 'pf_l1', 11: 'freq', 12: 'va', 13: 'pf_l2', 14: 'pf_l3',
    26: 'p_fwd_l1', 27: 'p_fwd_l2', 28: 'p_fwd_l3',
    29: 'p_rev_l1', 30: 'p_rev_l2', 31: 'p_rev_l3',
    41: 'u_cont_l1', 42: 'u_cont_l2', 43: 'u_cont_l3',
    44: 'u_avg_l1', 45: 'u_avg_l2', 46: 'u_avg_l3',
    47: 'p_fwd_avg', 48: 'p_rev_avg',
    49: 'p_fwd_avg_l1', 50: 'p_fwd_avg_l2', 51: 'p_fwd_avg_l3',
    52: 'p_rev_avg_l1', 53: 'p_rev_avg_l2', 54: 'p_rev_avg_l3',
}


def bt28_values(data, b21=None):
    """The raw signed values of BT28 as a list: the 55 the public sources describe, or as
    many whole values as a shorter table holds (extra bytes of a longer one are ignored)."""
    o = bt28_offset(b21)
    _need(rq.BT28, data, o + 4)
    n = min(BT28_VALUES, (len(data) - o) // 4)
    return list(unpack_from('<%di' % n, data, o))      # one call, not 55


def bt28(data, b21=None):
    v = bt28_values(data, b21)
    r = {}
    n = len(v)
    for k in BT28_NAMES:
        if k < n:
            r[BT28_NAMES[k]] = v[k]
    r['values'] = v
    return r


# --- ET13 / ET50 facts the alert chain needs -------------------------------------------------

def et13_alert_offset(config_entry_size):
    """Offset of the MEP entry's alert-flags byte in ET13."""
    return MEP_ENTRY * config_entry_size + 8


# --- dispatch ----------------------------------------------------------------------------

def decode(table, data, ctx=None):
    """Decode a full table read. `ctx` holds earlier decoded tables ('bt21', 'et11') for the
    tables whose layout depends on them. Returns a dict, or None for unknown tables.
    Tables other than BT23/BT28 are decoded by mep/tables_startup.py, dropped again after
    (`release`)."""
    ctx = ctx or {}
    if table == rq.BT23:
        return bt23(data, ctx.get('bt21'))
    if table == rq.BT28:
        return bt28(data, ctx.get('bt21'))
    from mep import tables_startup
    try:
        return tables_startup.decode(table, data, ctx)
    finally:
        tables_startup = None
        if release is not None:
            release('mep.tables_startup')


def hexdump(data, width=16):
    lines = []
    for o in range(0, len(data), width):
        chunk = bytes(data[o:o + width])
        lines.append('%04x  %s' % (o, ' '.join('%02x' % c for c in chunk)))
    return '\n'.join(lines)
