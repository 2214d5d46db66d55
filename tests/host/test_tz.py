# firmware/system/tz.py against the IANA database (CPython's zoneinfo): every zone it names gives
# the same UTC offset at every moment from 2020 to 2031, and local midnights, hours and
# month starts fall where the database puts them, across daylight-saving changes.
import datetime
import zoneinfo

import pytest

from system import tz

START = int(datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc).timestamp())
END = int(datetime.datetime(2031, 12, 31, tzinfo=datetime.timezone.utc).timestamp())


def iana_offset(zi, t):
    return int(datetime.datetime.fromtimestamp(t, zi).utcoffset().total_seconds())


@pytest.mark.parametrize('name', tz.names())
def test_offsets_match_the_iana_database(name):
    z = tz.Zone(name)
    zi = zoneinfo.ZoneInfo(name)
    bad = []
    for t in range(START, END, 17393):              # every ~5 hours
        if z.offset(t) != iana_offset(zi, t):
            bad.append(t)
    # and right around every transition: one second before and at it
    for t in range(START, END, 86400):
        if iana_offset(zi, t) != iana_offset(zi, t + 86400):
            lo, hi = t, t + 86400
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if iana_offset(zi, mid) == iana_offset(zi, lo):
                    lo = mid
                else:
                    hi = mid
            for x in (lo, hi):
                if z.offset(x) != iana_offset(zi, x):
                    bad.append(x)
    assert bad == [], (name, bad[:5])


@pytest.mark.parametrize('name', ['Europe/Copenhagen', 'Europe/London', 'Europe/Helsinki',
                                  'Europe/Dublin'])
def test_local_midnight_hour_and_month(name):
    z = tz.Zone(name)
    zi = zoneinfo.ZoneInfo(name)
    for t in range(START, START + 3 * 366 * 86400, 7 * 3600 + 1234):
        local = datetime.datetime.fromtimestamp(t, zi)
        midnight = local.replace(hour=0, minute=0, second=0).timestamp()
        assert z.day_start(t) == int(midnight), (name, t)
        hour = local.replace(minute=0, second=0)
        assert z.hour_start(t) == int(hour.timestamp()), (name, t)
        month = local.replace(day=1, hour=0, minute=0, second=0).timestamp()
        assert z.month_start(t) == int(month), (name, t)


def test_days_around_daylight_saving_are_23_and_25_hours():
    z = tz.Zone('Europe/Copenhagen')
    spring = int(datetime.datetime(2026, 3, 29, 12, tzinfo=datetime.timezone.utc).timestamp())
    autumn = int(datetime.datetime(2026, 10, 25, 12, tzinfo=datetime.timezone.utc).timestamp())
    assert z.day_start(spring + 86400) - z.day_start(spring) == 23 * 3600
    assert z.day_start(autumn + 86400) - z.day_start(autumn) == 25 * 3600


def test_posix_rules_and_errors():
    assert tz.rule_of('Europe/Vienna') == 'CET-1CEST,M3.5.0,M10.5.0/3'
    assert tz.Zone('<+03>-3').offset(START) == 3 * 3600
    assert tz.Zone('EST5EDT,M3.2.0,M11.1.0').offset(START) == -5 * 3600
    for bad in ('', 'Europe/Nowhere', 'CET', 'CET-1CEST,M3.5.0', 'CET-1CEST,M13.5.0,M10.5.0',
                'X' * 80, None):
        with pytest.raises(tz.TzError):
            tz.Zone(bad)
