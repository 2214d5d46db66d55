# Time zones by name, with their daylight-saving rules, for local midnight and local hours
# on the device (energy today, this hour, this month; history days). A zone is one POSIX TZ
# rule (as in /etc/localtime's last line): "CET-1CEST,M3.5.0,M10.5.0/3" is UTC+1, and UTC+2
# from the last Sunday of March 02:00 local to the last Sunday of October 03:00 local.
# Pure integer arithmetic: no time module, the same on CPython and MicroPython.

# Zones of the countries the meters are installed in and their neighbours. Any POSIX rule
# may be configured instead of a name.
ZONES = (
    ('Europe/Copenhagen', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Vienna', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Zurich', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Berlin', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Oslo', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Stockholm', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Amsterdam', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Brussels', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Paris', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Madrid', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Rome', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Warsaw', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/Prague', 'CET-1CEST,M3.5.0,M10.5.0/3'),
    ('Europe/London', 'GMT0BST,M3.5.0/1,M10.5.0'),
    ('Europe/Dublin', 'IST-1GMT0,M10.5.0,M3.5.0/1'),
    ('Europe/Lisbon', 'WET0WEST,M3.5.0/1,M10.5.0'),
    ('Europe/Helsinki', 'EET-2EEST,M3.5.0/3,M10.5.0/4'),
    ('Europe/Tallinn', 'EET-2EEST,M3.5.0/3,M10.5.0/4'),
    ('Europe/Athens', 'EET-2EEST,M3.5.0/3,M10.5.0/4'),
    ('Atlantic/Faroe', 'WET0WEST,M3.5.0/1,M10.5.0'),
    ('UTC', 'UTC0'),
)
DEFAULT = 'Europe/Copenhagen'


class TzError(ValueError):
    pass


def rule_of(name):
    """The POSIX rule for a zone name, or `name` itself when it is a valid rule."""
    for n, r in ZONES:
        if n == name:
            return r
    parse(name)                       # raises TzError for anything else
    return name


def names():
    return [n for n, r in ZONES]


# --- POSIX TZ rules ----------------------------------------------------------------------

def _name(s, i):
    if i < len(s) and s[i] == '<':
        j = s.find('>', i)
        if j < 0:
            raise TzError('unterminated <name> in %r' % s)
        return j + 1
    j = i
    while j < len(s) and s[j].isalpha():
        j += 1
    if j - i < 3:
        raise TzError('zone abbreviation expected at %d in %r' % (i, s))
    return j


def _clock(s, i):
    """[+-]hh[:mm[:ss]] at i -> (seconds, next index)."""
    sign = 1
    if i < len(s) and s[i] in '+-':
        if s[i] == '-':
            sign = -1
        i += 1
    parts = []
    while len(parts) < 3:
        j = i
        while j < len(s) and s[j].isdigit():
            j += 1
        if j == i:
            raise TzError('number expected at %d in %r' % (i, s))
        parts.append(int(s[i:j]))
        i = j
        if i < len(s) and s[i] == ':' and len(parts) < 3:
            i += 1
        else:
            break
    while len(parts) < 3:
        parts.append(0)
    v = parts[0] * 3600 + parts[1] * 60 + parts[2]
    if parts[0] > 167 or parts[1] > 59 or parts[2] > 59:
        raise TzError('time out of range in %r' % s)
    return sign * v, i


def _date(s, i):
    """Mm.w.d[/time] or Jn[/time] or n[/time] -> ((kind, a, b, c), seconds, next index)."""
    if i < len(s) and s[i] == 'M':
        vals = []
        i += 1
        for k in range(3):
            j = i
            while j < len(s) and s[j].isdigit():
                j += 1
            if j == i:
                raise TzError('Mm.w.d expected in %r' % s)
            vals.append(int(s[i:j]))
            i = j
            if k < 2:
                if i >= len(s) or s[i] != '.':
                    raise TzError('Mm.w.d expected in %r' % s)
                i += 1
        m, w, d = vals
        if not (1 <= m <= 12 and 1 <= w <= 5 and 0 <= d <= 6):
            raise TzError('Mm.w.d out of range in %r' % s)
        spec = ('M', m, w, d)
    else:
        julian = i < len(s) and s[i] == 'J'
        if julian:
            i += 1
        j = i
        while j < len(s) and s[j].isdigit():
            j += 1
        if j == i:
            raise TzError('transition date expected in %r' % s)
        n = int(s[i:j])
        if n > 365 or (julian and n < 1):
            raise TzError('day out of range in %r' % s)
        spec = ('J' if julian else 'n', n, 0, 0)
        i = j
    t = 7200
    if i < len(s) and s[i] == '/':
        t, i = _clock(s, i + 1)
    return spec, t, i


def parse(rule):
    """POSIX TZ rule -> (std_offset, dst_offset or None, start, end), offsets in seconds east
    of UTC, start/end as (spec, local seconds). Raises TzError naming what is wrong."""
    if not isinstance(rule, str) or not rule or len(rule) > 64:
        raise TzError('not a time zone: %r' % (rule,))
    s = rule
    i = _name(s, 0)
    west, i = _clock(s, i)
    std = -west
    if i == len(s):
        return (std, None, None, None)
    j = _name(s, i)
    i = j
    dst = std + 3600
    if i < len(s) and s[i] != ',':
        west, i = _clock(s, i)
        dst = -west
    if i >= len(s) or s[i] != ',':
        raise TzError('daylight saving rule (",start,end") expected in %r' % s)
    start = _date(s, i + 1)
    i = start[2]
    if i >= len(s) or s[i] != ',':
        raise TzError('end of daylight saving expected in %r' % s)
    end = _date(s, i + 1)
    if end[2] != len(s):
        raise TzError('unexpected text at %d in %r' % (end[2], s))
    return (std, dst, start[:2], end[:2])


# --- calendar ----------------------------------------------------------------------------

def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


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


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _day(spec, y):
    """Day number (since 1970) of a transition date in year y."""
    kind, a, b, c = spec
    if kind == 'M':
        first = days_from_civil(y, a, 1)
        dow = (first + 4) % 7                        # 1970-01-01 was a Thursday (4)
        day = first + (c - dow) % 7 + (b - 1) * 7
        nxt = days_from_civil(y + (a == 12), 1 if a == 12 else a + 1, 1)
        while day >= nxt:                            # week 5: the last such weekday
            day -= 7
        return day
    jan1 = days_from_civil(y, 1, 1)
    if kind == 'J':                                  # 1..365, February 29 never counted
        return jan1 + a - 1 + (1 if _leap(y) and a >= 60 else 0)
    return jan1 + a                                  # 0..365, February 29 counted


class Zone:
    """A parsed rule; offset(t) is the seconds local time is ahead of UTC at unix time t."""

    def __init__(self, name_or_rule=DEFAULT):
        self.rule = rule_of(name_or_rule)
        self.name = name_or_rule
        self.std, self.dst, self.start, self.end = parse(self.rule)
        self._year = None
        self._span = None

    def _dst_span(self, y):
        if self._year != y:
            a = _day(self.start[0], y) * 86400 + self.start[1] - self.std
            b = _day(self.end[0], y) * 86400 + self.end[1] - self.dst
            self._year = y
            self._span = (a, b)
        return self._span

    def offset(self, t):
        if self.dst is None:
            return self.std
        y = civil_from_days((int(t) + self.std) // 86400)[0]
        a, b = self._dst_span(y)
        if a < b:
            return self.dst if a <= t < b else self.std
        return self.std if b <= t < a else self.dst   # southern hemisphere, Dublin

    def local(self, t):
        return int(t) + self.offset(t)

    def day_start(self, t):
        """UTC unix time of the local midnight that began the day holding t."""
        local = self.local(t)
        return self.from_local(local - local % 86400)

    def hour_start(self, t):
        return int(t) - self.local(t) % 3600

    def month_start(self, t):
        local = self.local(t)
        y, m, d = civil_from_days(local // 86400)
        return self.from_local(days_from_civil(y, m, 1) * 86400)

    def from_local(self, local):
        """UTC unix time of a local wall-clock time (the earlier one in a repeated hour, the
        moment the clock jumped when the time does not exist)."""
        for off in (self.dst, self.std):
            if off is None:
                continue
            t = local - off
            if self.offset(t) == off:
                return t
        return local - self.std
