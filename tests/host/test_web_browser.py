# The web UI in real headless Chromium (selenium) against the real App (firmware/app.py): its
# web server on loopback, its link on the in-process meter simulator. Screenshots go to
# artifacts/screenshots/.
import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time

import pytest

from web_helpers import AppOnSim, PASSWORD, make_bundle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.path.join(ROOT, 'artifacts', 'screenshots')
CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
DRIVER = shutil.which('chromedriver') or '/usr/bin/chromedriver'

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason='chromium / chromedriver not installed')


def _free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    """The real App (firmware/app.py) in a background thread running its own event loop: its
    link on the in-process meter simulator, its web server (behind web/conn.py's limits) on
    127.0.0.1:<port>. `app` is the App."""

    def __init__(self, data_dir, password=PASSWORD):
        self.port = _free_port()
        self.data_dir = data_dir
        self.password = password
        self.ready = threading.Event()
        self.run = self.app = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError('server did not start')
        if self.error:
            raise self.error
        end = time.monotonic() + 10
        while True:                              # until App._web listens
            try:
                socket.create_connection(('127.0.0.1', self.port), 1).close()
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.error = e
            self.ready.set()

    async def _main(self):
        self.run = AppOnSim(self.data_dir, http_port=self.port, password=self.password).start()
        self.app = self.run.app
        self.ready.set()
        try:
            await self.run.task
        except asyncio.CancelledError:
            pass

    def stop(self):
        self.loop.call_soon_threadsafe(self.run.stop)
        self.thread.join(5)


@pytest.fixture(scope='module')
def server():
    from tools import build_web
    static = os.path.join(ROOT, 'firmware', 'web', 'static')
    if not all(os.path.exists(os.path.join(static, a + '.gz')) for a in
               ('uplot.js', 'uplot.css', 'app.js', 'app.css', 'settings.js', 'settings.html',
                'dashboard.js', 'dashboard.html', 'status.js', 'status.html', 'ota.js',
                'ota.html', 'tinker.html', 'login.js', 'login.html', 'setup.html')):
        build_web.build(skip_npm=True)
    d = tempfile.mkdtemp()
    s = Server(d)
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def new_chrome():
    """A headless Chromium driven by selenium, with a fresh profile, 1280x900: (driver,
    profile dir). The caller quits it and removes the dir."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    prof = tempfile.mkdtemp()
    for a in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
              '--disable-background-networking', '--disable-component-update', '--disable-sync',
              '--disable-dev-shm-usage', '--user-data-dir=' + prof):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_window_size(1280, 900)
    os.makedirs(SHOTS, exist_ok=True)
    return drv, prof


@pytest.fixture(scope='module')
def browser():
    drv, prof = new_chrome()
    yield drv
    drv.quit()
    shutil.rmtree(prof, ignore_errors=True)


def wait(fn, timeout=20, what='condition'):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            v = fn()
            if v:
                return v
        except Exception:  # noqa: BLE001 - element not there yet
            pass
        time.sleep(0.2)
    raise AssertionError('timed out waiting for ' + what)


def settled(drv, what):
    """Wait until the page has loaded and its requests (the API calls that fill it) have
    stopped: the same number of fetched resources on two looks in a row, 0.2 s apart."""
    wait(lambda: drv.execute_script('return document.readyState') == 'complete', 20,
         what + ' loaded')
    js = "return performance.getEntriesByType('resource').length"
    seen = [-1]

    def still():
        n = drv.execute_script(js)
        same = n == seen[0]
        seen[0] = n
        return same
    wait(still, 20, what + ' settled')


def shot(drv, name, sizes=((390, 844), (1280, 900))):
    for w, h in sizes:
        drv.set_window_size(w, h)
        wait(lambda: drv.execute_script('return window.innerWidth') == w, 10, 'width %d' % w)
        settled(drv, name)
        drv.save_screenshot(os.path.join(SHOTS, '%s-%dx%d.png' % (name, w, h)))
    drv.set_window_size(1280, 900)


def test_login_and_dashboard(server, browser):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    browser.get(base + '/')
    wait(lambda: '/login' in browser.current_url, what='redirect to login')
    shot(browser, 'login', ((390, 844),))
    browser.find_element(By.NAME, 'password').send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, 'form.box button').click()
    wait(lambda: browser.find_element(By.ID, 'link').text == 'ok', 30, 'link ok')
    p = wait(lambda: browser.find_element(By.ID, 'p_in').text.strip('-'), 20, 'power value')
    latest = server.app.poller.latest
    assert abs(float(p) - latest['p_in']) < 5000
    u = float(browser.find_element(By.ID, 'u_l1').text)
    assert 200 < u < 260
    assert '.' in browser.find_element(By.ID, 'e_in').text      # kWh with 3 decimals
    assert len(browser.find_element(By.ID, 'e_in').text.split('.')[1]) == 3
    assert 'NES' in browser.find_element(By.ID, 'meter').text
    r0 = server.app.poller.readings                  # a few ring points for the 1 h chart
    wait(lambda: server.app.poller.readings >= r0 + 3, 30, 'three more readings')
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-r="p1h"]').click()
    js = ("var c=document.querySelector('#chart canvas'); if(!c) return 0;"
          "var d=c.getContext('2d').getImageData(0,0,c.width,c.height).data,n=0;"
          "for(var i=3;i<d.length;i+=4){if(d[i])n++;} return n;")
    wait(lambda: browser.execute_script(js) > 500, 15, 'drawn chart')
    shot(browser, 'dashboard')
    browser.find_element(By.CSS_SELECTOR, '#tabs button[data-r="p24h"]').click()
    wait(lambda: browser.execute_script(js) > 0, 15, 'the 24 h chart')


def test_old_config_address_leads_to_the_settings(server, browser):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    browser.get(base + '/config')                   # a bookmark of the old settings page
    if '/login' in browser.current_url:             # run on its own: log in first
        browser.find_element(By.NAME, 'password').send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, 'form.box button').click()
    wait(lambda: browser.current_url.endswith('/settings'), 10, '/settings')
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, 'form.sect[data-id="wifi"]'), 15,
         'sections')
    assert not browser.find_elements(By.CSS_SELECTOR, 'form.cfg')


def test_tinker_bt01(server, browser):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    browser.get(base + '/tinker')
    browser.find_element(By.CSS_SELECTOR, 'button[data-hex="3000010200"]').click()
    wait(lambda: 'manufacturer' in browser.find_element(By.ID, 'result').text, 20, 'BT01')
    res = browser.find_element(By.ID, 'result').text
    assert 'NES' in res and 'DIGEST' in res and 'TRAILER' in res and '19 bytes' in res
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, '#log details'), 10, 'log rows')
    wait(lambda: 'SEQ' in browser.find_element(By.ID, 'linkst').text, 10, 'link state')
    shot(browser, 'tinker')
    h = browser.find_element(By.ID, 'hex')
    h.clear()
    h.send_keys('30 00')
    browser.find_element(By.CSS_SELECTOR, '#mep button').click()
    wait(lambda: 'full read must be' in browser.find_element(By.ID, 'result').text, 10, 'error')


def test_ota_upload(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    good = make_bundle(server.app, str(tmp_path), files={'extra.py': b'y = 2\n' * 4000})
    i = good.index(b'y = 2')
    bad = good[:i] + b'z' + good[i + 1:]
    paths = {}
    for name, data in (('good.bin', good), ('bad.bin', bad)):
        paths[name] = str(tmp_path / name)
        with open(paths[name], 'wb') as f:
            f.write(data)
    browser.get(base + '/ota')
    wait(lambda: browser.find_element(By.ID, 'version').text == server.app.version(), 10,
         'running version')
    browser.find_element(By.ID, 'ofile').send_keys(paths['bad.bin'])
    browser.find_element(By.CSS_SELECTOR, '#ota button').click()
    wait(lambda: 'damaged' in browser.find_element(By.ID, 'omsg').text, 20, 'refusal')
    browser.get(base + '/ota')
    wait(lambda: browser.find_element(By.ID, 'version').text != '-', 10, 'running version')
    browser.find_element(By.ID, 'ofile').send_keys(paths['good.bin'])
    browser.find_element(By.CSS_SELECTOR, '#ota button').click()
    wait(lambda: 'applied at reboot' in browser.find_element(By.ID, 'omsg').text, 20, 'accepted')
    assert browser.find_element(By.ID, 'reboot').is_displayed()
    shot(browser, 'ota')
    assert server.app.reboot_requested is False
    browser.find_element(By.CSS_SELECTOR, '#reboot button').click()
    wait(lambda: 'restarts now' in browser.find_element(By.ID, 'omsg').text, 10, 'restarting')
    assert server.app.reboot_requested is True
    browser.get(base + '/status')
    shot(browser, 'status', ((390, 844),))


def test_no_content_security_policy_violations(server, browser):
    base = 'http://127.0.0.1:%d' % server.port
    browser.get_log('browser')                      # start from an empty console
    for path in ('/', '/tinker', '/settings', '/ota', '/status', '/login'):
        browser.get(base + path)
        settled(browser, path)
    js = "var c=document.querySelector('#chart canvas'); return c ? c.width : 0;"
    browser.get(base + '/')
    wait(lambda: browser.execute_script(js) > 0, 15, 'chart canvas')
    bad = [e['message'] for e in browser.get_log('browser')
           if 'Content Security Policy' in e['message'] or 'Refused to' in e['message']]
    assert not bad, bad


def test_ended_session_returns_to_the_same_page_after_login(server, browser):
    from selenium.webdriver.common.by import By
    from web import auth
    base = 'http://127.0.0.1:%d' % server.port
    browser.get(base + '/tinker?x=1')
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, '#log details'), 15, 'tinker polling')
    server.loop.call_soon_threadsafe(auth.end_all_sessions, server.app)   # e.g. a reboot
    wait(lambda: '/login?next=' in browser.current_url, 15, 'sent to the login')
    assert '%2Ftinker%3Fx%3D1' in browser.current_url
    browser.find_element(By.NAME, 'password').send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, 'form.box button').click()
    wait(lambda: browser.current_url == base + '/tinker?x=1', 15, 'back on the page')
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, '#log details'), 15, 'polling again')


def test_settings_sections_save_alone_and_keep_what_is_typed(server, browser):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    browser.get(base + '/settings')
    if '/login' in browser.current_url:             # run on its own: log in first
        browser.find_element(By.NAME, 'password').send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, 'form.box button').click()
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]'), 15,
         'sections')
    shot(browser, 'settings')
    wifi = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="wifi"]')
    mqtt = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]')
    port = mqtt.find_element(By.NAME, 'mqtt_port')
    port.clear()
    port.send_keys('99999')
    host = wifi.find_element(By.NAME, 'hostname')
    host.clear()
    host.send_keys('bad host!')
    wifi.find_element(By.NAME, 'wifi_password').send_keys('typed-in-browser-1')
    browser.execute_script("arguments[0].noValidate = true; arguments[1].noValidate = true;",
                           wifi, mqtt)
    wifi.find_element(By.CSS_SELECTOR, 'button.save').click()
    err = wait(lambda: browser.find_element(By.ID, 'e-hostname').text, 10, 'hostname error')
    assert 'letters' in err and 'hostname' not in err
    assert wifi.find_element(By.NAME, 'wifi_password').get_attribute('value') == \
        'typed-in-browser-1'
    mqtt.find_element(By.CSS_SELECTOR, 'button.save').click()
    err = wait(lambda: browser.find_element(By.ID, 'e-mqtt_port').text, 10, 'port error')
    assert err == 'must be from 1 to 65535'
    shot(browser, 'settings-errors', ((390, 844),))
    assert server.app.config['mqtt_port'] != 99999
    host.clear()
    host.send_keys('browser-settings')
    wifi.find_element(By.CSS_SELECTOR, 'button.save').click()
    wait(lambda: 'Saved.' in browser.find_element(
        By.CSS_SELECTOR, 'form.sect[data-id="wifi"] .smsg').text, 10, 'wifi saved')
    assert server.app.config['hostname'] == 'browser-settings'
    assert server.app.config['wifi_password'] == 'typed-in-browser-1'
    assert browser.find_element(By.ID, 'restart').is_displayed()       # hostname: restart
    # the MQTT section still shows what was typed there
    mqtt = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]')
    assert mqtt.find_element(By.NAME, 'mqtt_port').get_attribute('value') == '99999'
    assert 'typed-in-browser-1' not in browser.page_source


def test_settings_alarm_editor(server, browser):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    browser.get(base + '/settings')
    if '/login' in browser.current_url:
        browser.find_element(By.NAME, 'password').send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, 'form.box button').click()
    form = wait(lambda: browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="alarms"]'),
                15, 'alarms section')
    assert not form.find_elements(By.TAG_NAME, 'textarea')       # an editor, not JSON
    form.find_element(By.CSS_SELECTOR, 'button.add-alarm').click()
    form.find_element(By.CSS_SELECTOR, 'button.add-alarm').click()
    rows = form.find_elements(By.CSS_SELECTOR, '.alarm')
    assert len(rows) == 2
    rows[1].find_element(By.CSS_SELECTOR, 'button.del-alarm').click()
    row = form.find_element(By.CSS_SELECTOR, '.alarm')
    from selenium.webdriver.support.ui import Select
    Select(row.find_element(By.CSS_SELECTOR, 'select[data-a="kind"]')).select_by_value(
        'export_above')
    th = row.find_element(By.CSS_SELECTOR, 'input[data-a="threshold"]')
    th.clear()
    th.send_keys('-5')
    browser.execute_script("arguments[0].noValidate = true;", form)
    form.find_element(By.CSS_SELECTOR, 'button.save').click()
    err = wait(lambda: browser.find_element(By.ID, 'e-alarms').text, 10, 'alarm error')
    assert 'alarm 1' in err and 'threshold' in err and 'alarms' not in err.replace('alarm 1', '')
    assert server.app.config['alarms'] == []
    th.clear()
    th.send_keys('2500')
    form.find_element(By.CSS_SELECTOR, 'button.save').click()
    wait(lambda: server.app.config['alarms'], 10, 'alarms saved')
    a = server.app.config['alarms']
    assert len(a) == 1 and a[0]['kind'] == 'export_above' and a[0]['threshold'] == 2500
    assert a[0]['enabled'] is True
    shot(browser, 'settings-alarms', ((390, 844),))


def test_settings_password_and_backup_forms(server, browser):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    browser.get(base + '/settings')
    if '/login' in browser.current_url:
        browser.find_element(By.NAME, 'password').send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, 'form.box button').click()
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, 'form.sect'), 15, 'sections')
    tok = browser.find_element(By.CSS_SELECTOR, 'input.csrf').get_attribute('value')
    assert len(tok) == 32                          # the backup form can be posted

    def change(old, new):
        f = browser.find_element(By.ID, 'pwform')
        for name, v in (('old', old), ('new', new), ('new2', new)):
            e = f.find_element(By.NAME, name)
            e.clear()
            e.send_keys(v)
        f.find_element(By.CSS_SELECTOR, 'button').click()
        return wait(lambda: browser.find_element(By.ID, 'pwmsg').text, 15, 'password answer')
    assert change('not the password', 'browser-new-pw-1') == 'The current password is wrong.'
    wait(lambda: browser.execute_script("document.getElementById('pwmsg').textContent='';"
                                        "return true;"), 5, 'reset')
    assert change(PASSWORD, 'browser-new-pw-1') == 'Password changed.'
    assert server.app.config.check_password('browser-new-pw-1')
    browser.get(base + '/settings')                # still logged in (a new session)
    wait(lambda: browser.find_elements(By.CSS_SELECTOR, 'form.sect'), 15, 'sections again')
    assert change('browser-new-pw-1', PASSWORD) == 'Password changed.'
    assert server.app.config.check_password(PASSWORD)


# --- login, first run, logout, ended sessions: at desktop and phone widths ----------------------
# (at the end of the module: these log the shared browser out)

SIZES = ((1280, 900), (390, 844))


def visible_nav(drv):
    from selenium.webdriver.common.by import By
    return [e.text for e in drv.find_elements(By.CSS_SELECTOR, 'header nav a, header nav button')
            if e.is_displayed()]


def log_in_on_the_page(drv, password):
    from selenium.webdriver.common.by import By
    pw = drv.find_element(By.NAME, 'password')
    pw.clear()
    pw.send_keys(password)
    drv.find_element(By.CSS_SELECTOR, 'form.box button').click()


@pytest.mark.parametrize('size', SIZES, ids=('desktop', 'phone'))
def test_first_run_setup_on_the_setup_page(size, browser, tmp_path):
    from selenium.webdriver.common.by import By
    srv = Server(str(tmp_path / 'fresh'), password=None)
    try:
        base = 'http://127.0.0.1:%d' % srv.port
        browser.set_window_size(*size)
        browser.get_log('browser')                      # start from an empty console
        browser.get(base + '/settings')
        wait(lambda: browser.current_url == base + '/setup', 10, 'sent to the setup page')
        assert visible_nav(browser) == ['Dashboard', 'Set the password']
        f = browser.find_element(By.ID, 'setup')
        assert f.find_element(By.NAME, 'password').size['width'] <= size[0]
        f.find_element(By.NAME, 'password').send_keys('first-pw-12345')
        f.find_element(By.NAME, 'password2').send_keys('first-pw-54321')
        f.find_element(By.TAG_NAME, 'button').click()
        msg = wait(lambda: browser.find_element(By.ID, 'msg').text, 10, 'the error')
        assert msg == 'The two passwords differ.' and browser.current_url == base + '/setup'
        assert browser.switch_to.active_element.get_attribute('name') == 'password2'
        assert not srv.app.config['web_password_hash']
        shot(browser, 'setup-error', (size,))
        p2 = f.find_element(By.NAME, 'password2')
        p2.clear()
        p2.send_keys('first-pw-12345')
        f.find_element(By.TAG_NAME, 'button').click()
        wait(lambda: browser.current_url == base + '/', 15, 'on the dashboard')
        wait(lambda: browser.find_element(By.ID, 'link').text == 'ok', 30, 'link ok')
        assert srv.app.config.check_password('first-pw-12345')
        assert 'Log out' in visible_nav(browser)
        browser.get(base + '/settings')                 # logged in by the setup
        wait(lambda: browser.find_elements(By.CSS_SELECTOR, 'form.sect'), 15, 'settings')
        browser.get(base + '/setup')                    # done once: the login page now
        wait(lambda: browser.current_url == base + '/login', 10, 'sent to the login')
        bad = [e['message'] for e in browser.get_log('browser')
               if 'Content Security Policy' in e['message'] or 'Refused to' in e['message']]
        assert not bad, bad
    finally:
        browser.set_window_size(1280, 900)
        srv.stop()


@pytest.mark.parametrize('size', SIZES, ids=('desktop', 'phone'))
def test_login_wrong_then_right_lands_on_next_and_logout(size, server, browser):
    from selenium.webdriver.common.by import By
    base = 'http://127.0.0.1:%d' % server.port
    browser.set_window_size(*size)
    browser.get(base + '/login')
    browser.delete_all_cookies()
    browser.get(base + '/status?x=2')
    wait(lambda: '/login?next=' in browser.current_url, 10, 'sent to the login')
    wait(lambda: browser.execute_script('return document.readyState') == 'complete', 5, 'page')
    assert visible_nav(browser) == ['Dashboard', 'Log in']
    assert not browser.find_element(By.ID, 'msg').is_displayed()
    log_in_on_the_page(browser, 'not the password')
    msg = wait(lambda: browser.find_element(By.ID, 'msg').text, 10, 'the error')
    assert msg == 'Wrong password.' and browser.find_element(By.ID, 'msg').is_displayed()
    assert '/login?next=' in browser.current_url
    assert 'mep_s' not in [c['name'] for c in browser.get_cookies()]
    shot(browser, 'login-error', (size,))
    log_in_on_the_page(browser, PASSWORD)
    wait(lambda: browser.current_url == base + '/status?x=2', 15, 'on the next page')
    wait(lambda: 'Meter link' in browser.find_element(By.ID, 'status').text, 15, 'status')
    assert visible_nav(browser) == ['Dashboard', 'Tinker', 'Settings', 'Update', 'Status',
                                    'Log out']
    # log out: the module ends the session (the old cookie is no longer good)
    n = len(server.app.web_sessions)
    browser.find_element(By.ID, 'logout').click()
    wait(lambda: browser.current_url == base + '/login', 10, 'the login page')
    assert len(server.app.web_sessions) == n - 1
    browser.get(base + '/settings')
    wait(lambda: browser.current_url == base + '/login?next=/settings', 10, 'logged out')
    # a next= that leads off the module: the module answers '/' instead
    browser.get(base + '/login?next=%2F%2Fevil.example%2Fx')
    wait(lambda: browser.execute_script('return document.readyState') == 'complete', 5, 'page')
    log_in_on_the_page(browser, PASSWORD)
    wait(lambda: browser.current_url == base + '/', 15, 'the dashboard')
    browser.set_window_size(1280, 900)


@pytest.mark.parametrize('size', SIZES, ids=('desktop', 'phone'))
def test_expired_session_on_the_dashboard_logs_in_and_comes_back(size, server, browser):
    from selenium.webdriver.common.by import By
    from web import auth
    base = 'http://127.0.0.1:%d' % server.port
    browser.set_window_size(*size)
    browser.get(base + '/?from=test')
    if '/login' in browser.current_url:
        log_in_on_the_page(browser, PASSWORD)
    wait(lambda: browser.current_url == base + '/?from=test', 15, 'the dashboard')
    wait(lambda: browser.find_element(By.ID, 'p_in').text.strip('-'), 20, 'power value')
    server.loop.call_soon_threadsafe(auth.end_all_sessions, server.app)   # expired, rebooted
    wait(lambda: '/login?next=' in browser.current_url, 15, 'sent to the login')
    assert browser.current_url.endswith('/login?next=%2F%3Ffrom%3Dtest'), browser.current_url
    log_in_on_the_page(browser, PASSWORD)
    wait(lambda: browser.current_url == base + '/?from=test', 15, 'back on the dashboard')
    wait(lambda: browser.find_element(By.ID, 'p_in').text.strip('-'), 20, 'power again')
    browser.set_window_size(1280, 900)
