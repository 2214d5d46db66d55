# GET /getDashDataWS: the JSON the original MEP module served and its Home Assistant
# integration reads. Units are the original's: Wh, W, mV, mA, mHz, all integers.
#
# Decisions:
# - No reading yet (or the newest is older than max_age s): legacy_json() returns None
#   and the route answers 503 with a text/plain body + Retry-After, so HA marks the
#   entities unavailable instead of showing zeros or nulls. Not JSON: the original
#   integration stores whatever JSON it gets and would keep failing on the error object
#   until reloaded; a non-JSON body is a failed poll that it simply repeats.
# - Rounding: half away from zero, sign kept (an exporting phase reported as a negative
#   import stays negative).
# - Totals: Fwd_W / Rev_W are the meter's totals unless (Fwd_W - Rev_W) differs from the
#   sum of the rounded per-phase nets by more than 3 W; then both totals are replaced by
#   the sums of the rounded per-phase values, so the two always agree within 3 W.
# - A missing value (single-phase meter, field absent) is 0, keeping every field an int.
# - CurrentDateTime is the reading's time (UTC, "YYYY-MM-DDThh:mm:ss.000Z"), so it changes
#   with every poll; CurrentDateTimeString is the same moment as "YYYY-MM-DD hh:mm:ss".

from system.tz import civil_from_days

FW_INFO = {'name': 'MEP open firmware', 'by': 'MEP open firmware contributors',
           'version': '0.1.0'}

_PHASES = ('1', '2', '3')


def _ri(x):
    """Round half away from zero to int; None -> 0."""
    if x is None:
        return 0
    if x >= 0:
        return int(x + 0.5)
    return -int(-x + 0.5)


def utc_parts(t):
    t = int(t)
    days = t // 86400
    s = t - days * 86400
    y, m, d = civil_from_days(days)
    return y, m, d, s // 3600, (s // 60) % 60, s % 60


def iso_utc(t):
    return '%04d-%02d-%02dT%02d:%02d:%02d.000Z' % utc_parts(t)


def plain_utc(t):
    return '%04d-%02d-%02d %02d:%02d:%02d' % utc_parts(t)


def totals(r):
    """(Fwd_W, Rev_W, per-phase fwd list, per-phase rev list), consistent within 3 W."""
    fwd = [_ri(r.get('p_in_l' + p)) for p in _PHASES]
    rev = [_ri(r.get('p_out_l' + p)) for p in _PHASES]
    tf = _ri(r.get('p_in'))
    tr = _ri(r.get('p_out'))
    net = 0
    for i in range(3):
        net += fwd[i] - rev[i]
    if abs((tf - tr) - net) > 3:
        tf = fwd[0] + fwd[1] + fwd[2]
        tr = rev[0] + rev[1] + rev[2]
    return tf, tr, fwd, rev


def _s(v):
    return '' if v is None else str(v).strip()


def legacy_json(reading, info, now_unix=None, fw_info=None, max_age=600):
    """The /getDashDataWS dict, or None while there is nothing current to show."""
    if not reading:
        return None
    t = reading.get('time')
    if t is None:
        t = now_unix
    if t is None:
        return None
    if now_unix is not None and now_unix > 1000000000 and t > 1000000000 \
            and now_unix - t > max_age:
        return None
    r = reading
    info = info or {}
    fw = fw_info or FW_INFO
    tf, tr, fwd, rev = totals(r)
    d = {'Fwd_Act_Wh': _ri(r.get('e_in')), 'Rev_Act_Wh': _ri(r.get('e_out')),
         'Fwd_W': tf, 'Rev_W': tr,
         'Freq_mHz': _ri(r['freq'] * 1000) if r.get('freq') is not None else 0,
         'Fwd_Avg_W': _ri(r.get('p_in_avg')), 'Rev_Avg_W': _ri(r.get('p_out_avg'))}
    for i in range(3):
        p = _PHASES[i]
        ln = 'L' + p
        d[ln + '_Fwd_W'] = fwd[i]
        d[ln + '_Rev_W'] = rev[i]
        u = r.get('u_l' + p)
        a = r.get('i_l' + p)
        d[ln + '_RMS_V'] = _ri(u * 1000) if u is not None else 0
        d[ln + '_RMS_A'] = _ri(a * 1000) if a is not None else 0
        d[ln + '_Fwd_Avg_W'] = _ri(r.get('p_in_avg_l' + p))
        d[ln + '_Rev_Avg_W'] = _ri(r.get('p_out_avg_l' + p))
    d['Utility_SN'] = _s(info.get('serial'))
    d['Meter_Manufacturer'] = _s(info.get('manufacturer'))
    d['Meter_Model'] = _s(info.get('model'))
    d['Meter_SW_Version'] = sw_version(info.get('fw'))
    d['ESP_SW'] = _s(fw.get('name'))
    d['ESP_SW_By'] = _s(fw.get('by'))
    d['ESP_SW_Version'] = _s(fw.get('version'))
    d['CurrentDateTime'] = iso_utc(t)
    d['CurrentDateTimeString'] = plain_utc(t)
    return d


def sw_version(fw):
    """'major.minor' from '4.4', (4, 4), 0x0404 style or '4.4.1' inputs."""
    if fw is None:
        return ''
    if isinstance(fw, (tuple, list)):
        return '%d.%d' % (fw[0], fw[1]) if len(fw) >= 2 else str(fw[0])
    if isinstance(fw, int):
        return '%d.%d' % (fw >> 8, fw & 0xFF)
    parts = str(fw).strip().split('.')
    return '.'.join(parts[:2])
