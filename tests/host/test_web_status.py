# The status page (a static page over /api/status) in real headless Chromium against the real
# App (test_web_security.Running): facts in words, link health, the diagnostics download, at
# desktop and phone widths. Screenshots go to artifacts/screenshots/.
import json
import os
import shutil
import urllib.request

import pytest

from test_web_browser import CHROMIUM, DRIVER, new_chrome, shot, wait
from test_web_security import Running
from web_helpers import PASSWORD

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason='chromium / chromedriver not installed')


@pytest.fixture(scope='module')
def running(tmp_path_factory):
    from tools import build_web
    build_web.build(skip_npm=True)
    r = Running(str(tmp_path_factory.mktemp('status')))
    r.wait_readings(3)
    yield r
    r.stop()


def test_status_page_in_words(running):
    from selenium.webdriver.common.by import By
    drv, prof = new_chrome()
    try:
        base = 'http://127.0.0.1:%d' % running.port
        drv.get(base + '/status')
        wait(lambda: '/login' in drv.current_url, what='redirect to login')
        drv.find_element(By.NAME, 'password').send_keys(PASSWORD)
        drv.find_element(By.CSS_SELECTOR, 'form.box button').click()
        wait(lambda: drv.current_url.endswith('/status'), what='back on the status page')
        wait(lambda: 'Meter link' in drv.find_element(By.ID, 'status').text, 15, 'status')
        rows = {}
        for tr in drv.find_elements(By.CSS_SELECTOR, '#status tr'):
            rows[tr.find_element(By.TAG_NAME, 'th').text] = tr.find_element(By.TAG_NAME, 'td').text
        assert rows['Link'] == 'ok'
        assert 'typical' in rows['Answer time'] and 'ms' in rows['Answer time']
        assert 'OK (00)' in rows['Answers by status']
        assert rows['Resent requests'].isdigit() and rows['Late answers'].isdigit()
        assert rows['Duplicate answers drained'].isdigit()
        assert rows['Time source'] == 'computer clock'
        assert 'min' in rows['Running for']
        v = running.app.version
        assert rows['Version'] == (v() if callable(v) else v)
        assert rows['Free'].endswith('KB') or rows['Free'] == '-'
        assert rows.get('MQTT') == 'switched off' or rows['Broker']
        assert 'NES' in rows['Meter']
        names = ' '.join(rows)
        for internal in ('uptime_s', 'heap_free', 'p50', 'retransmits', 'status_codes'):
            assert internal not in names and internal not in ' '.join(rows.values())
        link = drv.find_element(By.ID, 'diag')
        assert link.get_attribute('href') == base + '/api/diagnostics'
        cookie = '; '.join('%s=%s' % (c['name'], c['value']) for c in drv.get_cookies())
        req = urllib.request.Request(base + '/api/diagnostics', headers={'Cookie': cookie})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert 'attachment' in r.headers['Content-Disposition']
            d = json.loads(r.read())
        assert d['link']['diag']['turnaround']['samples'] > 0 and d['exchanges']
        shot(drv, 'status')
        drv.find_element(By.ID, 'restart').click()
        drv.switch_to.alert.accept()
        wait(lambda: 'restarts' in drv.find_element(By.ID, 'rmsg').text, 10, 'restart answer')
        assert running.app.reboot_requested
        drv.set_window_size(390, 844)
        drv.get(base + '/status')
        wait(lambda: 'Memory' in drv.find_element(By.ID, 'status').text, 15, 'status on a phone')
        assert drv.execute_script('return document.documentElement.scrollWidth') <= 390
    finally:
        drv.quit()
        shutil.rmtree(prof, ignore_errors=True)
