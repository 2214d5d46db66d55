# The settings page's network helpers and time zone field in real headless Chromium against the
# real App (meter simulator, web server behind web/conn.py) and a real mosquitto with a
# password file: "Test MQTT connection", the WiFi scan ("no WiFi on this board" on the PC; the
# list of networks with a stand-in radio) and the time zone names. Screenshots go to
# artifacts/screenshots/ at phone and desktop width.
import os

import pytest

import time

from test_web_browser import CHROMIUM, DRIVER, SHOTS, browser, wait   # noqa: F401
from test_web_nettest import MQTT_PW, StandInNetwork, StandInWLAN, WANT, broker  # noqa: F401
from test_web_security import Running, PASSWORD

pytestmark = pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                                reason='chromium / chromedriver not installed')


def shot(drv, name, el, sizes=((390, 844), (1280, 900))):
    """Screenshots with el in the middle of the window."""
    for w, h in sizes:
        drv.set_window_size(w, h)
        time.sleep(0.4)
        drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        time.sleep(0.2)
        drv.save_screenshot(os.path.join(SHOTS, '%s-%dx%d.png' % (name, w, h)))
    drv.set_window_size(1280, 900)


@pytest.fixture(scope='module')
def app(tmp_path_factory):
    from tools import build_web
    build_web.build(skip_npm=True)          # the page under test, as the sources are now
    r = Running(str(tmp_path_factory.mktemp('app')))
    yield r
    r.stop()


def open_settings(app, drv):
    from selenium.webdriver.common.by import By
    drv.get('http://127.0.0.1:%d/settings' % app.port)
    if '/login' in drv.current_url:
        drv.find_element(By.NAME, 'password').send_keys(PASSWORD)
        drv.find_element(By.CSS_SELECTOR, 'form.box button').click()
    wait(lambda: drv.find_elements(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]'), 15,
         'sections')


def test_mqtt_test_button(app, broker, browser):
    from selenium.webdriver.common.by import By
    open_settings(app, browser)
    f = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]')
    for name, v in (('mqtt_host', '127.0.0.1'), ('mqtt_port', str(broker.port)),
                    ('mqtt_user', 'mep'), ('mqtt_password', MQTT_PW)):
        e = f.find_element(By.NAME, name)
        e.clear()
        e.send_keys(v)
    f.find_element(By.CSS_SELECTOR, 'button.mqtest').click()
    msg = f.find_element(By.CSS_SELECTOR, '.mqmsg')
    wait(lambda: msg.text.startswith('Connected'), 15, 'connected')
    assert 'ok' in msg.get_attribute('class')
    assert app.app.config['mqtt_host'] != '127.0.0.1'          # a test saves nothing
    shot(browser, 'settings-mqtt-test', msg)
    pw = f.find_element(By.NAME, 'mqtt_password')
    pw.clear()
    pw.send_keys('wrong-password-1')
    f.find_element(By.CSS_SELECTOR, 'button.mqtest').click()
    wait(lambda: 'refused' in msg.text, 15, 'refused')
    assert 'wrong user name or password' in msg.text and 'err' in msg.get_attribute('class')
    assert pw.get_attribute('value') == 'wrong-password-1'     # what is typed stays
    assert MQTT_PW not in browser.page_source.replace(pw.get_attribute('value'), '')


def test_wifi_scan_on_the_pc_and_with_a_radio(app, browser):
    from selenium.webdriver.common.by import By
    open_settings(app, browser)
    f = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="wifi"]')
    assert 'pauses meter reading for about 2 s' in f.text
    f.find_element(By.CSS_SELECTOR, 'button.scan').click()
    msg = f.find_element(By.CSS_SELECTOR, '.scanmsg')
    wait(lambda: msg.text == 'no WiFi on this board', 15, 'no WiFi message')
    assert 'err' in msg.get_attribute('class')
    shot(browser, 'settings-wifi-scan-pc', msg)
    from drivers.wifi import Wifi
    app.app.wifi = Wifi(StandInNetwork(StandInWLAN()))
    try:
        f.find_element(By.CSS_SELECTOR, 'button.scan').click()
        wait(lambda: 'network(s)' in msg.text, 15, 'networks')
        nets = f.find_elements(By.CSS_SELECTOR, '.nets button.net')
        assert [n.text.split(' ')[0] for n in nets] == [w['ssid'].split(' ')[0] for w in WANT]
        assert '-52 dBm, WPA/WPA2' in nets[0].text
        shot(browser, 'settings-wifi-scan', msg, ((390, 844),))
        nets[1].click()
        assert f.find_element(By.NAME, 'wifi_ssid').get_attribute('value') == 'Café open'
        opts = browser.execute_script(
            "return Array.prototype.map.call(document.querySelectorAll('#ssidlist option'),"
            " function (o) { return o.value; });")
        assert opts == [w['ssid'] for w in WANT]
    finally:
        del app.app.wifi


def test_time_zone_names_to_choose_and_a_posix_rule(app, browser):
    from selenium.webdriver.common.by import By
    from system import tz
    open_settings(app, browser)
    inp = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="time"] [name=timezone]')
    assert inp.get_attribute('list') == 'tzlist'
    opts = browser.execute_script(
        "return Array.prototype.map.call(document.querySelectorAll('#tzlist option'),"
        " function (o) { return o.value; });")
    assert opts == tz.names() and 'Europe/Copenhagen' in opts
    def save(value):
        """Type value, save, and return the section's form as reloaded after the save (or
        the one showing the errors)."""
        f = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="time"]')
        browser.execute_script("arguments[0].setAttribute('data-old', '1')", f)
        inp = f.find_element(By.NAME, 'timezone')
        inp.clear()
        inp.send_keys(value)
        f.find_element(By.CSS_SELECTOR, 'button.save').click()
        return wait(lambda: browser.execute_script(
            "var f = document.querySelector('form.sect[data-id=\"time\"]');"
            "var m = f.querySelector('.smsg').textContent;"
            "return (m.indexOf('Saved') === 0 && !f.getAttribute('data-old')) || "
            "m.indexOf('Nothing saved') === 0 ? m : '';"), 10, 'saved ' + value)
    assert save('Europe/Helsinki').startswith('Saved')
    assert app.app.config['timezone'] == 'Europe/Helsinki'
    assert save('EST5EDT,M3.2.0,M11.1.0').startswith('Saved')        # free text: a rule
    assert app.app.config['timezone'] == 'EST5EDT,M3.2.0,M11.1.0'
    assert save('Mars/Olympus').startswith('Nothing saved')
    err = browser.find_element(By.ID, 'e-timezone').text
    assert err and 'timezone' not in err, err
    assert app.app.config['timezone'] == 'EST5EDT,M3.2.0,M11.1.0'
    shot(browser, 'settings-timezone', browser.find_element(By.ID, 'e-timezone'),
         ((390, 844),))


def test_broker_ca_from_a_file_shows_its_subject_and_expiry_and_is_saved(app, browser,
                                                                          tmp_path):
    """The broker's CA certificate, given as a file: the page shows its subject and expiry
    before saving; a text that is no certificate says so; saved, it comes back as it was."""
    from selenium.webdriver.common.by import By
    from tlsca import TestCA
    ca = TestCA(tmp_path, 'Broker CA of the test')
    open_settings(app, browser)
    f = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]')
    info = f.find_element(By.ID, 'pem-mqtt_ca')
    assert 'the built-in CAs are trusted' in info.text
    assert 'RISK' in f.text                      # the insecure switch says what it risks
    f.find_element(By.CSS_SELECTOR, 'input[data-pemfile="mqtt_ca"]').send_keys(ca.path)
    until = ca.cert.not_valid_after_utc.strftime('%Y-%m-%d')
    wait(lambda: 'Broker CA of the test' in info.text, 10, 'the subject')
    assert 'CN=Broker CA of the test' in info.text and 'O=MEP tests' in info.text
    assert 'valid until ' + until in info.text, info.text
    shot(browser, 'settings-mqtt-ca', info)
    area = f.find_element(By.NAME, 'mqtt_ca')
    assert area.get_attribute('value').strip() == ca.pem.decode().strip()
    f.find_element(By.CSS_SELECTOR, 'button.save').click()
    wait(lambda: app.app.config['mqtt_ca'].strip() == ca.pem.decode().strip(), 15, 'saved')
    # the section is shown again from the module: the stored CA and what it is
    wait(lambda: 'Saved' in browser.find_element(By.CSS_SELECTOR,
                                                 'form.sect[data-id="mqtt"] .smsg').text
         or 'valid until' in browser.find_element(By.ID, 'pem-mqtt_ca').text, 15, 'shown again')
    f = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]')
    wait(lambda: 'valid until ' + until in f.find_element(By.ID, 'pem-mqtt_ca').text, 15,
         'the stored CA')
    def type_bad():
        """Type a bad PEM into the section as it is now (a reload after the save may have
        drawn it again: then the elements found before are gone, and this is retried)."""
        sect = browser.find_element(By.CSS_SELECTOR, 'form.sect[data-id="mqtt"]')
        area = sect.find_element(By.NAME, 'mqtt_ca')
        if area.get_attribute('value') != 'not a certificate':
            area.clear()
            area.send_keys('not a certificate')
        return 'Not a certificate' in sect.find_element(By.ID, 'pem-mqtt_ca').text and sect
    f = wait(type_bad, 15, 'not a certificate')
    f.find_element(By.CSS_SELECTOR, 'button.save').click()
    err = f.find_element(By.ID, 'e-mqtt_ca')
    wait(lambda: err.is_displayed() and 'PEM' in err.text, 15, 'the field error')
    assert app.app.config['mqtt_ca'].strip() == ca.pem.decode().strip()   # nothing lost
