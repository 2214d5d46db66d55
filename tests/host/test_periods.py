# Energy this hour / today / this month (periods.py): local time in the configured zone, the
# start value taken live or kept over a reboot, never a guess.
import calendar
import datetime
import json
import zoneinfo

import pytest

import periods
from net.ha import Periods
from periods import period_start, period_end, utc_offset

CPH = zoneinfo.ZoneInfo('Europe/Copenhagen')
CFG = {'timezone': 'Europe/Copenhagen'}


def utc(*a):
    return calendar.timegm(datetime.datetime(*a).timetuple())


def test_offset_follows_the_eu_rule_like_zoneinfo():
    t = utc(2024, 1, 1)
    while t < utc(2027, 1, 1):
        want = int(datetime.datetime.fromtimestamp(t, CPH).utcoffset().total_seconds())
        assert utc_offset(CFG, t) == want, datetime.datetime.utcfromtimestamp(t)
        t += 1800 + 7
    # exactly at the switches (01:00 UTC, last Sundays of March and October)
    assert utc_offset(CFG, utc(2025, 3, 30, 0, 59, 59)) == 3600
    assert utc_offset(CFG, utc(2025, 3, 30, 1)) == 7200
    assert utc_offset(CFG, utc(2025, 10, 26, 0, 59, 59)) == 7200
    assert utc_offset(CFG, utc(2025, 10, 26, 1)) == 3600
    # other zones by name or POSIX rule
    assert utc_offset({'timezone': '<+0530>-5:30'}, utc(2025, 7, 1)) == 19800
    assert utc_offset({'timezone': 'EST5EDT,M3.2.0,M11.1.0'}, utc(2025, 1, 7)) == -18000
    ldn = {'timezone': 'Europe/London'}
    assert utc_offset(ldn, utc(2025, 1, 10)) == 0 and utc_offset(ldn, utc(2025, 7, 1)) == 3600
    assert utc_offset({}, utc(2025, 7, 1)) == 7200          # the default: Europe/Copenhagen


@pytest.mark.parametrize('key', ['h', 'd', 'm'])
def test_period_starts_match_local_time(key):
    t = utc(2024, 1, 1, 0, 17)
    while t < utc(2026, 1, 1):
        lt = datetime.datetime.fromtimestamp(t, CPH)
        if key == 'h':
            ls = lt.replace(minute=0, second=0)
        elif key == 'd':
            ls = lt.replace(hour=0, minute=0, second=0)
        else:
            ls = lt.replace(day=1, hour=0, minute=0, second=0)
        want = int(datetime.datetime(ls.year, ls.month, ls.day, ls.hour, tzinfo=CPH).timestamp())
        assert period_start(CFG, key, t) == want, (key, lt)
        t += 3 * 3600 + 1234


def feed(p, t, e):
    p.feed({'time': t, 'e_in': e})
    return p.values({'time': t, 'e_in': e})


def test_not_published_until_a_start_is_seen_then_counts(tmp_path):
    path = str(tmp_path / 'periods.json')
    p = Periods(CFG, path)
    t = utc(2025, 5, 31, 21, 59, 58)          # 23:59:58 local (summer time)
    assert feed(p, t, 1000) is None           # booted mid-period: no start value
    assert feed(p, t + 1, 1001) is None
    v = feed(p, t + 2, 1002)                  # 00:00:00 local, 1 June: all three begin
    assert v == {'h': 1, 'h0': '2025-05-31T22:00:00+00:00',
                 'd': 1, 'd0': '2025-05-31T22:00:00+00:00',
                 'm': 1, 'm0': '2025-05-31T22:00:00+00:00'}
    feed(p, t + 3601, 1499)
    v = feed(p, t + 3602, 1500)               # 01:00 local: new hour, same day and month
    assert v['h'] == 1 and v['d'] == 499 and v['m'] == 499
    assert v['h0'] == '2025-05-31T23:00:00+00:00'
    # a reboot within the hour keeps the start values (file), and never invents new ones
    q = Periods(CFG, path)
    v = feed(q, t + 3700, 1510)
    assert v['h'] == 11 and v['d'] == 509 and v['m'] == 509
    # a reboot in the next hour: the hour is unknown until it ends, day and month go on
    r = Periods(CFG, path)
    v = feed(r, t + 2 + 7200 + 60, 1600)
    assert 'h' not in v and v['d'] == 599
    with open(path) as f:
        assert set(json.load(f)) == {'h', 'd', 'm'}


def test_a_gap_over_the_boundary_is_not_guessed():
    p = Periods(CFG)
    t = utc(2025, 6, 10, 10, 30)
    feed(p, t, 1000)
    v = feed(p, t + 1800 + 600, 1300)         # next reading 10 min after the hour began
    assert v is None or 'h' not in v
    feed(p, utc(2025, 6, 10, 11, 59, 30), 1390)
    assert feed(p, utc(2025, 6, 10, 12, 0, 1), 1400)['h'] == 10   # from the last reading


def test_unset_clock_and_missing_energy_are_ignored():
    p = Periods(CFG)
    assert feed(p, 1000, 5) is None
    p.feed({'time': utc(2025, 1, 1), 'e_in': None})
    assert p.values({'time': None, 'e_in': 5}) is None
    assert not p.st


@pytest.mark.parametrize('key', ['h', 'd', 'm'])
def test_period_end_is_the_next_start(key):
    t = utc(2024, 1, 1, 0, 17)
    while t < utc(2026, 1, 1):
        start = period_start(CFG, key, t)
        end = period_end(CFG, key, start)
        assert start <= t < end
        assert period_start(CFG, key, end) == end and period_start(CFG, key, end - 1) == start
        t += 5 * 3600 + 1234


def test_helpers_are_loaded_only_when_a_period_ends(monkeypatch):
    """Per reading nothing is imported; at a boundary periods.py and tz.py come and go."""
    import sys
    import compat
    import periods as _p
    import system
    from system import tz as _tz
    monkeypatch.setattr(compat, 'UNLOAD', True)
    monkeypatch.setitem(sys.modules, 'periods', _p)      # put back afterwards
    monkeypatch.setitem(sys.modules, 'system.tz', _tz)
    monkeypatch.setattr(system, 'tz', _tz)
    del sys.modules['periods'], sys.modules['system.tz']
    p = Periods(CFG)
    t = utc(2025, 6, 10, 10, 59, 50)
    imports = []
    real = __builtins__['__import__'] if isinstance(__builtins__, dict) else __builtins__.__import__

    def spy(name, *a, **kw):
        if name in ('periods', 'system.tz'):
            imports.append(name)
        return real(name, *a, **kw)
    monkeypatch.setattr('builtins.__import__', spy)
    feed(p, t, 100)                                   # first reading: bounds computed
    assert 'periods' in imports and 'periods' not in sys.modules and 'system.tz' not in sys.modules
    imports.clear()
    for i in range(1, 9):
        feed(p, t + i, 100 + i)                       # same hour: nothing imported
    assert imports == []
    v = feed(p, t + 10, 110)                          # 11:00 UTC: a new hour
    assert 'periods' in imports and v['h'] == 2      # from the reading at 10:59:58
    assert 'periods' not in sys.modules and 'system.tz' not in sys.modules


def test_time_zone_change_recomputes_the_bounds():
    cfg = dict(CFG)
    p = Periods(cfg)
    t = utc(2025, 6, 10, 21, 59, 59)                  # 23:59:59 in Copenhagen (summer)
    feed(p, t, 100)
    v = feed(p, t + 1, 101)
    assert v['d0'] == '2025-06-10T22:00:00+00:00'
    cfg['timezone'] = 'Europe/London'                 # midnight is an hour later now
    v = feed(p, t + 2, 102)
    assert v is None or 'd' not in v                  # its start value is not known
    assert p.st['d'][0] == utc(2025, 6, 9, 23)
