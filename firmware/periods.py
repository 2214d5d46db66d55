# Energy imported this hour, today and this month, in local time (tz_offset_min + dst), for
# MQTT / Home Assistant. Each period's start value (the meter's e_in at the period start) is
# taken live at the first reading of a new period, when the reading before it was recent,
# and kept in a small file so a reboot within the period keeps it. When it is not known
# (booted mid-period without a saved value, clock not set, readings missing around the
# boundary) that period is not reported until the next one begins: a guess is never
# published. The file is written at most once per hour.
import json

from config import opt as _opt

KEYS = ('h', 'd', 'm')
GAP_S = 120          # a start value is exact enough if the previous reading is this recent
MIN_TIME = 1600000000  # before this the clock is not set


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days):
    """(y, m, d) of a day number since 1970-01-01."""
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def _last_sunday(y, m):
    if m == 12:
        last = days_from_civil(y + 1, 1, 1) - 1
    else:
        last = days_from_civil(y, m + 1, 1) - 1
    return last - (last + 4) % 7          # 1970-01-01 was a Thursday


def utc_offset(cfg, t):
    """Seconds local time is ahead of UTC at unix time t (EU summer time when dst == 'eu':
    from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday of
    October)."""
    off = int(_opt(cfg, 'tz_offset_min', 0) or 0) * 60
    if _opt(cfg, 'dst', 'none') == 'eu':
        y = civil_from_days(t // 86400)[0]
        if _last_sunday(y, 3) * 86400 + 3600 <= t < _last_sunday(y, 10) * 86400 + 3600:
            off += 3600
    return off


def period_start(cfg, key, t):
    """UTC unix time at which the local hour ('h'), day ('d') or month ('m') holding t
    began."""
    off = utc_offset(cfg, t)
    local = t + off
    if key == 'h':
        return t - local % 3600
    day = local // 86400
    if key == 'm':
        y, m, d = civil_from_days(day)
        day -= d - 1
    start = day * 86400
    return start - utc_offset(cfg, start - off)


def iso(t):
    y, m, d = civil_from_days(t // 86400)
    s = t % 86400
    return '%04d-%02d-%02dT%02d:%02d:%02d+00:00' % (y, m, d, s // 3600, s // 60 % 60, s % 60)


class Periods:
    def __init__(self, cfg, path=None):
        self.cfg = cfg
        self.path = path
        self.st = {}            # key -> [start, e_in at start or None (not known)]
        self._prev = None       # (time, e_in) of the previous reading
        if path:
            try:
                with open(path) as f:
                    d = json.load(f)
                for k in KEYS:
                    v = d.get(k)
                    if isinstance(v, list) and len(v) == 2:
                        self.st[k] = v
            except (OSError, ValueError):
                pass

    def feed(self, r):
        t = r.get('time')
        e = r.get('e_in')
        if t is None or e is None or t < MIN_TIME:
            return
        t = int(t)
        prev = self._prev
        self._prev = (t, e)
        changed = False
        for k in KEYS:
            start = period_start(self.cfg, k, t)
            cur = self.st.get(k)
            if cur is not None and cur[0] == start:
                continue
            e0 = None
            if prev is not None and prev[0] < start and start - prev[0] <= GAP_S:
                e0 = prev[1]            # the last value of the previous period
            elif prev is not None and prev[0] == start:
                e0 = prev[1]
            self.st[k] = [start, e0]
            changed = changed or e0 is not None
        if changed:
            self._save()

    def _save(self):
        if not self.path:
            return
        try:
            import atomic
            atomic.write(self.path, json.dumps(self.st))
        except Exception:
            pass

    def values(self, r):
        """{'h': Wh, 'h0': iso start, ...} for reading r, the known periods only; None if
        none is known."""
        t = r.get('time')
        e = r.get('e_in')
        if t is None or e is None:
            return None
        out = None
        for k in KEYS:
            cur = self.st.get(k)
            if cur is None or cur[1] is None or cur[0] > t or \
                    period_start(self.cfg, k, int(t)) != cur[0]:
                continue
            if out is None:
                out = {}
            out[k] = int(round(e - cur[1]))
            out[k + '0'] = iso(cur[0])
        return out
