# Energy imported this hour, today and this month, in local time (the configured zone, see
# rule() and tz.py), for MQTT / Home Assistant. ha.Periods (resident) does the per-reading
# work with the period bounds it holds; this module (and tz.py) is imported only when a
# period ends or at the first reading, to compute the next bounds, and dropped again.
# Each period's start value (the meter's e_in at the period start) is taken live at the
# first reading of a new period, when the reading before it was recent, and kept in a small
# file so a reboot within the period keeps it. When it is not known (booted mid-period
# without a saved value, clock not set, readings missing around the boundary) that period is
# not reported until the next one begins: a guess is never published. The file is written
# at most once per hour.
import json

from system.config import opt as _opt

KEYS = ('h', 'd', 'm')
GAP_S = 120          # a start value is exact enough if the previous reading is this recent
MIN_TIME = 1600000000  # before this the clock is not set


def rule(cfg):
    """The configured time zone: a name or a POSIX rule (see tz.py)."""
    return _opt(cfg, 'timezone') or 'Europe/Copenhagen'


def zone(cfg):
    """tz.Zone of the configured time zone (kept while the settings stay the same)."""
    r = rule(cfg)
    z = _ZONE[0]
    if z is None or z.name != r:
        from system.tz import Zone
        z = _ZONE[0] = Zone(r)
    return z


_ZONE = [None]


def utc_offset(cfg, t):
    """Seconds local time is ahead of UTC at unix time t."""
    return zone(cfg).offset(t)


def period_start(cfg, key, t):
    """UTC unix time at which the local hour ('h'), day ('d') or month ('m') holding t
    began."""
    z = zone(cfg)
    if key == 'h':
        return z.hour_start(t)
    if key == 'd':
        return z.day_start(t)
    return z.month_start(t)


def iso(t):
    from system.tz import civil_from_days
    y, m, d = civil_from_days(t // 86400)
    s = t % 86400
    return '%04d-%02d-%02dT%02d:%02d:%02d+00:00' % (y, m, d, s // 3600, s // 60 % 60, s % 60)


def period_end(cfg, key, start):
    """UTC unix time at which the period that began at start ends (the next one begins)."""
    z = zone(cfg)
    if key == 'h':
        return z.hour_start(start + 3600 + 1800)
    if key == 'd':
        return z.day_start(start + 26 * 3600)
    return z.month_start(start + 32 * 86400)


def load(path):
    """The saved bounds: {key: [start, end, e0, iso start]} (empty when none)."""
    st = {}
    try:
        with open(path) as f:
            d = json.load(f)
        for k in KEYS:
            v = d.get(k)
            if isinstance(v, list) and len(v) == 4:
                st[k] = v
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    return st


def roll(cfg, st, path, prev, t, e):
    """New bounds for every period that does not hold t (st None: first call, read the
    file). prev: (time, e_in) of the reading before, or None. Returns the new st."""
    if st is None:
        st = load(path) if path else {}
    changed = False
    for k in KEYS:
        cur = st.get(k)
        if cur is not None and cur[0] <= t < cur[1]:
            continue
        start = period_start(cfg, k, t)
        e0 = None
        if prev is not None and start - GAP_S <= prev[0] <= start:
            e0 = prev[1]                # the last value of the previous period
        st[k] = [start, period_end(cfg, k, start), e0, iso(start)]
        changed = changed or e0 is not None
    if changed and path:
        try:
            from storage import atomic
            atomic.write(path, json.dumps(st))
        except Exception:
            pass
    return st
