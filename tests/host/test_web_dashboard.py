# The dashboard (a static page over /api/now, /api/recent, /api/history) in real headless
# Chromium against the real App (test_web_security.Running: link + poller on the meter
# simulator), with weeks of history written beforehand through the real Store API: energy
# bars in kWh per hour, per local day (Europe/Copenhagen, a 25 hour day at the end of summer
# time) and per month, the unfinished period marked, at desktop and phone widths.
# Screenshots go to artifacts/screenshots/.
import datetime
import os
import shutil
import time
from zoneinfo import ZoneInfo

import pytest

from test_web_browser import CHROMIUM, DRIVER, new_chrome, shot, wait
from test_web_security import Running
from web_helpers import PASSWORD

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason='chromium / chromedriver not installed')
CPH = ZoneInfo('Europe/Copenhagen')
DAYS = 45


def profile(t):
    """(import W, export W) at unix time t: 600 W, 1200 W from 17 to 21 h, export 1800 W from
    10 to 14 h local time (whole Wh per minute)."""
    h = datetime.datetime.fromtimestamp(t, CPH).hour
    if 10 <= h < 14:
        return 0, 1800
    return (1200 if 17 <= h < 21 else 600), 0


def write_history(data_dir, end):
    """Readings every minute for DAYS days up to `end`, through Store; returns the truth:
    {('h', UTC hour start) | ('d', local date) | ('m', (year, month)): [import Wh, export Wh]}."""
    from storage.store import Store
    s = Store(data_dir, cfg={'timezone': 'Europe/Copenhagen'})
    t = first = end - end % 60 - DAYS * 86400
    e_in, e_out, truth = 10 ** 6, 10 ** 5, {}
    while t < end:
        pi, po = profile(t - 60)                  # the minute before t, shown at t
        e_in += pi // 60
        e_out += po // 60
        s.add({'time': t, 'p_in': pi, 'p_out': po, 'e_in': e_in, 'e_out': e_out})
        t += 60
        if t == first + 60:
            continue                              # the first counter value is the baseline
        t -= 60
        d = datetime.datetime.fromtimestamp(t, CPH).date()
        for k in (('h', t - t % 3600), ('d', d), ('m', (d.year, d.month))):
            v = truth.setdefault(k, [0, 0])
            v[0] += pi // 60
            v[1] += po // 60
        t += 60
    s.save()
    return truth


@pytest.fixture(scope='module')
def running(tmp_path_factory):
    from tools import build_web
    build_web.build(skip_npm=True)
    d = str(tmp_path_factory.mktemp('dash'))
    now = int(time.time())
    truth = write_history(d, now - 120)
    r = Running(d, timezone='Europe/Copenhagen')
    r.truth = truth
    r.wait_readings(2)
    yield r
    r.stop()


@pytest.fixture(scope='module')
def browser(running):
    from selenium.webdriver.common.by import By
    drv, prof = new_chrome()
    drv.execute_cdp_cmd('Emulation.setLocaleOverride', {'locale': 'de-DE'})   # dates in its format
    drv.get('http://127.0.0.1:%d/' % running.port)
    wait(lambda: '/login' in drv.current_url, what='redirect to login')
    drv.find_element(By.NAME, 'password').send_keys(PASSWORD)
    drv.find_element(By.CSS_SELECTOR, 'form.box button').click()
    wait(lambda: drv.find_element(By.ID, 'link').text == 'ok', 30, 'link ok')
    yield drv
    drv.quit()
    shutil.rmtree(prof, ignore_errors=True)


def energy(browser, view, older=0):
    from selenium.webdriver.common.by import By
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-r="%s"]' % view).click()
    for _ in range(older):
        browser.find_element(By.ID, 'older').click()
    return wait(lambda: browser.execute_script(
        'var e=window.mepEnergy; return e && e.view==arguments[0] && e.back==arguments[1] && e;',
        view, older), 15, 'energy ' + view)


def kwh(wh):
    return pytest.approx(wh / 1000, abs=1e-6)


def test_live_values_and_power_chart(running, browser):
    from selenium.webdriver.common.by import By
    browser.get('http://127.0.0.1:%d/' % running.port)
    p = wait(lambda: browser.find_element(By.ID, 'p_in').text.strip('-'), 20, 'power value')
    assert abs(float(p) - running.app.poller.latest['p_in']) < 5000
    assert 200 < float(browser.find_element(By.ID, 'u_l1').text) < 260
    assert 'NES' in browser.find_element(By.ID, 'meter').text
    js = ("var c=document.querySelector('#chart canvas'); if(!c) return 0;"
          "var d=c.getContext('2d').getImageData(0,0,c.width,c.height).data,n=0;"
          "for(var i=3;i<d.length;i+=4){if(d[i])n++;} return n;")
    wait(lambda: browser.execute_script(js) > 500, 15, 'drawn power chart')
    assert 'W' in browser.find_element(By.ID, 'cnote').text
    browser.find_element(By.ID, 'phases').click()           # per phase, collected live

    def labels():
        return [e.text for e in browser.find_elements(By.CSS_SELECTOR, '.u-legend .u-label')]
    wait(lambda: labels()[1:] == ['L1', 'L2', 'L3', 'Total'], 15, 'per-phase legend')
    shot(browser, 'dashboard-power')
    browser.find_element(By.ID, 'phases').click()
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-r="p24h"]').click()
    wait(lambda: 'Net average' in browser.find_element(By.CSS_SELECTOR, '.u-legend').text, 10,
         '24 h chart')


def test_hour_bars_in_kwh_with_local_midnight_and_unfinished_hour(running, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.action_chains import ActionChains
    e = energy(browser, 'h48')
    slots = e['slots']
    assert len(slots) == 48
    u = e['unfinished']
    assert u == 47 and e['imp'][u] is None and e['curImp'][u] is not None
    assert all(v is None for v in e['curImp'][:u])
    now = int(time.time())
    checked = 0
    for i, s in enumerate(slots[:u]):
        if s['t'] < now - 3 * 3600:                    # hours of the written history only
            imp, exp = running.truth[('h', s['t'])]
            assert e['imp'][i] == kwh(imp) and e['exp'][i] == kwh(-exp), s
            checked += 1
    assert checked >= 40
    mids = [s for s in slots if s['mid']]
    assert len(mids) == 2                           # 48 h cross two local midnights
    for s in mids:
        local = datetime.datetime.fromtimestamp(s['t'], CPH)
        assert (local.hour, local.minute) == (0, 0), s
        assert s['t'] % 86400 == 23 * 3600          # winter: local midnight is 23:00 UTC
        assert s['label'] == local.strftime('%-d. ') + s['label'].split(' ')[1]   # de-DE date
    # the legend shows kWh for the bar under the pointer
    ActionChains(browser).move_to_element(
        browser.find_element(By.CSS_SELECTOR, '#chart .u-over')).perform()
    wait(lambda: 'kWh' in browser.find_element(By.CSS_SELECTOR, '.u-legend').text, 5, 'kWh')
    assert 'this hour so far' in browser.find_element(By.ID, 'cnote').text
    shot(browser, 'dashboard-hours')


def test_day_bars_cut_at_local_midnight_with_a_25_hour_day(running, browser):
    e = energy(browser, 'd31')
    slots = e['slots']
    assert len(slots) == 31 and e['unfinished'] == 30
    today = datetime.datetime.now(CPH).date()
    for i, s in enumerate(slots[:30]):
        d = datetime.date(s['key'] // 10000, s['key'] // 100 % 100, s['key'] % 100)
        assert d == today - datetime.timedelta(days=30 - i)
        imp, exp = running.truth[('d', d)]
        assert e['imp'][i] == kwh(imp) and e['exp'][i] == kwh(-exp), d
        assert datetime.datetime.fromtimestamp(s['t'], CPH).time() == datetime.time(0, 0)
    shot(browser, 'dashboard-days')
    # a page earlier: the end of summer time, 25 October 2026, a 25 hour day
    e = energy(browser, 'd31', older=1)
    assert e['unfinished'] == -1
    by = {s['key']: i for i, s in enumerate(e['slots'])}
    dst = datetime.date(2026, 10, 25)
    if dst.toordinal() < today.toordinal() - DAYS + 2:
        pytest.fail('the written history does not reach back to %s' % dst)
    i = by[20261025]
    imp, exp = running.truth[('d', dst)]
    normal = running.truth[('d', datetime.date(2026, 10, 24))][0]
    assert imp == normal + 600                      # one more night hour at 600 W
    assert e['imp'][i] == kwh(imp) and e['exp'][i] == kwh(-exp)
    s = e['slots'][i]
    assert s['t'] == int(datetime.datetime(2026, 10, 25, tzinfo=CPH).timestamp())
    assert e['slots'][i + 1]['t'] - s['t'] == 25 * 3600


def test_month_bars_and_little_history(running, browser):
    e = energy(browser, 'm12')
    slots = e['slots']
    assert len(slots) == 8, 'only ~2 months of history: 8 slots, not a year of empty ones'
    u = e['unfinished']
    assert u == 7 and e['curImp'][u] > 0
    today = datetime.datetime.now(CPH).date()
    prev = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    imp, exp = running.truth[('m', prev)]
    assert e['imp'][u - 1] == kwh(imp) and e['exp'][u - 1] == kwh(-exp)
    assert e['imp'][0] is None                      # before the history began: no bar
    shot(browser, 'dashboard-months')


def test_phone_width(running, browser):
    from selenium.webdriver.common.by import By
    browser.set_window_size(390, 844)
    try:
        browser.get('http://127.0.0.1:%d/' % running.port)
        wait(lambda: browser.find_element(By.ID, 'p_in').text.strip('-'), 20, 'power value')
        e = energy(browser, 'd31')
        assert len(e['slots']) == 31
        w = browser.execute_script("return document.querySelector('#chart canvas').clientWidth")
        assert 250 < w <= 390
        assert browser.execute_script('return document.documentElement.scrollWidth') <= 390
    finally:
        browser.set_window_size(1280, 900)


def test_csv_export_links(running, browser):
    from selenium.webdriver.common.by import By
    browser.get('http://127.0.0.1:%d/' % running.port)
    hrefs = [a.get_attribute('href') for a in browser.find_elements(By.CSS_SELECTOR, 'main a')]
    assert any(h.endswith('/api/history.csv?level=day') for h in hrefs)
    text = browser.execute_script(
        "var x=new XMLHttpRequest(); x.open('GET','/api/history.csv?level=day',false);"
        "x.send(); return x.responseText;")
    first = text.splitlines()[1].split(',')
    local = datetime.datetime.fromtimestamp(int(first[0]), CPH)
    assert (local.hour, local.minute) == (0, 0)     # day rows begin at local midnight


def test_public_dashboard_shows_only_itself_and_a_login_link(tmp_path):
    from selenium.webdriver.common.by import By
    r = Running(str(tmp_path), public_dashboard=True)
    drv, prof = new_chrome()
    try:
        drv.get('http://127.0.0.1:%d/' % r.port)
        wait(lambda: drv.find_element(By.ID, 'p_in').text.strip('-'), 20, 'power value')
        wait(lambda: drv.find_elements(By.ID, 'loginlink'), 5, 'login link')
        shown = [a.get_attribute('href').split(str(r.port))[1]
                 for a in drv.find_elements(By.CSS_SELECTOR, 'header nav a') if a.is_displayed()]
        assert shown == ['/', '/login?next=/'], shown
        assert not drv.find_element(By.ID, 'logout').is_displayed()    # nobody to log out
    finally:
        drv.quit()
        shutil.rmtree(prof, ignore_errors=True)
        r.stop()
