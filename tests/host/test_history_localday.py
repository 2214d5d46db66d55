# firmware/storage/history.py: the day level cut at local midnight of the configured time zone
# (daylight saving included), on CPython. The truth is computed with zoneinfo, not tz.py.
import datetime
import os
import sys
from zoneinfo import ZoneInfo

import pytest

_FW = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   'firmware')
if _FW not in sys.path:
    sys.path.insert(0, _FW)

from storage.history import History  # noqa: E402
from storage.store import Store  # noqa: E402

CPH = ZoneInfo('Europe/Copenhagen')


def midnight(y, m, d, zone=CPH):
    return int(datetime.datetime(y, m, d, tzinfo=zone).timestamp())


def feed(h, t0, t1, step=60, watts=3600):
    """Readings every `step` s from t0 to t1 (exclusive) at a steady import of `watts`:
    the e_in counter (Wh) is the exact integral, so each bucket's energy is known."""
    t = t0
    while t < t1:
        h.add({'time': t, 'p_in': watts, 'p_out': 0, 'e_in': 10 ** 6 + (t - t0) * watts // 3600,
               'e_out': 0})
        t += step


@pytest.mark.parametrize('days', [((2026, 3, 28), (2026, 3, 29), (2026, 3, 30)),     # 23 h day
                                  ((2026, 10, 24), (2026, 10, 25), (2026, 10, 26))])  # 25 h day
def test_day_buckets_start_at_local_midnight_across_dst(tmp_path, days):
    h = History(str(tmp_path / 'history.bin'), cfg={'timezone': 'Europe/Copenhagen'})
    bounds = [midnight(*d) for d in days] + [midnight(*days[-1]) + 86400]
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    assert 23 * 3600 in lengths or 25 * 3600 in lengths
    feed(h, bounds[0], bounds[-1] + 3600)
    rows = list(h.rows('day'))
    assert [r[0] for r in rows] == bounds, 'bucket times are the UTC times of local midnight'
    # 3600 W steady: one Wh per second-hour; each full day's energy is its length in hours kWh
    for r, n in zip(rows, lengths):
        assert r[4] == pytest.approx(n, abs=61), (r, n)    # within one reading step (60 s)
    assert rows[-1][4] == pytest.approx(3600, abs=61)      # the unfinished day: one hour so far
    # a UTC cut would have put 1 h (winter) or 2 h (summer) of each day into the day before
    utc = History(str(tmp_path / 'utc.bin'))
    feed(utc, bounds[0], bounds[-1] + 3600)
    assert [r[0] for r in utc.rows('day')][0] % 86400 == 0
    assert [r[0] for r in utc.rows('day')] != bounds


def test_day_rows_since_and_csv_and_json_use_local_days(tmp_path):
    h = History(str(tmp_path / 'history.bin'), cfg={'timezone': 'Europe/Copenhagen'})
    a = midnight(2026, 3, 29)
    b = midnight(2026, 3, 30)
    feed(h, a - 7200, b + 7200, step=300)
    assert [r[0] for r in h.rows('day', a)] == [a, b]
    assert [r[0] for r in h.rows('day', a + 1)] == [b]
    assert [r[0] for r in h.rows('day', None, b)] == [a - 86400, a]
    csv = ''.join(h.to_csv('day'))
    assert '%d,2026-03-28T23:00:00Z' % a in csv          # local midnight in winter: 23:00 UTC
    assert '%d,2026-03-29T22:00:00Z' % b in csv          # in summer: 22:00 UTC
    js = ''.join(h.to_json('day'))
    assert '[%d,' % a in js and '[%d,' % b in js


def test_local_days_survive_save_and_reload_and_zone_change(tmp_path):
    cfg = {'timezone': 'Europe/Copenhagen'}
    path = str(tmp_path / 'history.bin')
    h = History(path, cfg=cfg)
    a = midnight(2026, 10, 25)
    feed(h, a - 3600, a + 5 * 3600)
    h.save()
    h2 = History(path, cfg=cfg)
    assert h2.load() is None
    assert list(h2.rows('day')) == list(h.rows('day'))
    feed(h2, a + 5 * 3600, a + 6 * 3600)     # continues the open day after a reboot
    (d1, d2) = [r for r in h2.rows('day')]
    assert d1[0] == a - 86400 and d2[0] == a and d2[4] == pytest.approx(6 * 3600, abs=61)
    # another zone: the next day is cut at its midnight; nothing is lost or counted twice
    cfg['timezone'] = 'EST5EDT,M3.2.0,M11.1.0'    # New York as a POSIX rule
    ny = midnight(2026, 10, 26, ZoneInfo('America/New_York'))
    feed(h2, ny - 3600, ny + 3600, watts=3600)
    rows = list(h2.rows('day'))
    assert rows[-1][0] == ny and rows[-1][4] == pytest.approx(3600, abs=61)


def test_store_passes_the_zone_and_minute_hour_levels_stay_utc(tmp_path):
    s = Store(str(tmp_path), cfg={'timezone': 'Europe/Copenhagen'})
    a = midnight(2026, 6, 1)                 # 22:00 UTC the day before
    feed(s.history, a - 1800, a + 1800)
    assert [r[0] for r in s.history.rows('day')] == [a - 86400, a]
    assert all(r[0] % 3600 == 0 for r in s.history.rows('hour'))
    assert all(r[0] % 60 == 0 for r in s.history.rows('minute'))


def test_the_zone_modules_are_not_kept_loaded(tmp_path, monkeypatch):
    import compat
    monkeypatch.setattr(compat, 'UNLOAD', True)     # as on MicroPython
    for n in ('periods', 'system.tz'):
        sys.modules.pop(n, None)
    h = History(str(tmp_path / 'history.bin'), cfg={'timezone': 'Europe/Copenhagen'})
    feed(h, midnight(2026, 1, 5), midnight(2026, 1, 5) + 600)
    rows = list(h.rows('day'))
    assert rows[0][0] == midnight(2026, 1, 5)
    assert 'periods' not in sys.modules and 'system.tz' not in sys.modules


def test_a_zone_not_understood_falls_back_to_utc_days(tmp_path):
    h = History(str(tmp_path / 'history.bin'), cfg={'timezone': 'Nowhere/Atlantis'})
    a = midnight(2026, 2, 2, datetime.timezone.utc)
    feed(h, a - 600, a + 600)
    assert [r[0] for r in h.rows('day')] == [a - 86400, a]
    assert 'time zone' in h.warning
