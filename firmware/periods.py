# Energy imported this hour, today and this month, in local time (the configured zone, see
# rule() and tz.py), for MQTT / Home Assistant. Each period's start value (the meter's e_in at the period start) is
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


def _clock(sec):
    return '%d:%02d' % (sec // 3600, sec // 60 % 60)


def rule(cfg):
    """The time zone: the 'timezone' setting (a name or POSIX rule, see tz.py) when there is
    one, else a rule made of tz_offset_min and dst ('eu': summer time from 01:00 UTC on the
    last Sunday of March to 01:00 UTC on the last Sunday of October)."""
    name = _opt(cfg, 'timezone')
    if name:
        return name
    off = int(_opt(cfg, 'tz_offset_min', 0) or 0) * 60
    std = '%s%s' % ('-' if off > 0 else '+', _clock(abs(off)))
    if _opt(cfg, 'dst', 'none') == 'eu' and off >= -3600:
        return 'STD%sDST,M3.5.0/%s,M10.5.0/%s' % (std, _clock(3600 + off), _clock(7200 + off))
    return 'STD' + std


def zone(cfg):
    """tz.Zone of the configured time zone (kept while the settings stay the same)."""
    r = rule(cfg)
    z = _ZONE[0]
    if z is None or z.name != r:
        from tz import Zone
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
    from tz import civil_from_days
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
