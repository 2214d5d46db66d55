# Board profiles, safe mode, the supervisor and the hardware layers, all on the PC: fake pins,
# a fake `machine`/`network`, a temp dir as flash, loopback sockets and a pseudo-terminal.
import asyncio
import importlib
import os
import socket
import struct
import sys
import threading
import types

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if os.path.join(ROOT, 'firmware') not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, 'firmware'))

from drivers import boards  # noqa: E402
import hw_host  # noqa: E402
from system import ota  # noqa: E402
from system import safemode  # noqa: E402
from system import supervisor  # noqa: E402


# ---------------------------------------------------------------- profiles

EXPECTED = {  # from the hardware docs (shared/docs/mep-protocol.md, section 1)
    'dabbler': dict(chip='esp32', uart=2, rx=16, tx=17, enable=5, enable_active=0,
                    driver_supply=32, boot_button=0, safe_active=0),
    'ustepper': dict(chip='esp32c3', rx=6, tx=7, enable=5, enable_active=0,
                     driver_supply=None, boot_button=9, safe_active=0),
    'mepdrawer': dict(chip='esp32s3', rx=12, tx=14, enable=13, enable_active=0,
                      driver_supply=9, led=16, boot_button=0, safe_active=0),
    'host': dict(chip='host', uart=None, rx=None, tx=None, enable=None, driver_supply=None),
}
FIELDS = ('name', 'chip', 'uart', 'rx', 'tx', 'enable', 'enable_active', 'driver_supply', 'led',
          'led_active', 'boot_button', 'safe_active')


@pytest.mark.parametrize('key', sorted(EXPECTED))
def test_profile_pins(key):
    prof = boards.get(key)
    assert set(prof) == set(FIELDS)
    for field, value in EXPECTED[key].items():
        assert prof[field] == value, '%s.%s' % (key, field)


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match='unknown board profile'):
        boards.get('arduino')


# ---------------------------------------------------------------- safe mode

class Pin:
    def __init__(self, *values):
        self.values = list(values)
        self.reads = 0

    def value(self):
        self.reads += 1
        return self.values[min(self.reads - 1, len(self.values) - 1)]


@pytest.fixture
def fs(tmp_path):
    return ota.Fs(str(tmp_path))


def run_boot(fs, pin=None, cfg=None, starts=None):
    if cfg is not None:
        fs.write(safemode.CONFIG, cfg.encode())
    out, aps = [], []

    def start_ap(pw):
        aps.append(pw)
        return 'MEP-TEST'
    active = safemode.boot(fs, pin, 0, start_ap, sleep_ms=lambda ms: None, out=out.append,
                           rand=lambda n: bytes(range(n)))
    return active, out, aps


def test_button_held_enters_safe_mode_with_config_ap_password(fs):
    active, out, aps = run_boot(fs, Pin(0), '{"ap_password": "kitchen-meter-77"}')
    assert active and safemode.active and 'BOOT button' in safemode.reason
    assert aps == ['kitchen-meter-77']
    assert not any('kitchen-meter-77' in line for line in out)  # a configured secret: not shown


def test_button_released_or_bouncing_starts_the_app(fs):
    assert run_boot(fs, Pin(1))[0] is False
    assert run_boot(fs, Pin(0, 1, 0))[0] is False  # one bounce is not a request
    assert safemode.active is False


def test_three_crashed_starts_enter_safe_mode_with_fallback_password(fs):
    for _ in range(3):
        assert run_boot(fs, Pin(1))[0] is False
        safemode.count_start(fs)  # main.py, then the app dies before 60 s
    active, out, aps = run_boot(fs, Pin(1))
    assert active and '3 times' in safemode.reason
    fallback = safemode.fallback_password(lambda n: bytes(range(n)))
    assert aps == [fallback] and len(fallback) >= 8
    assert any(fallback in line for line in out)  # printed on the REPL only
    assert safemode.crashes(fs) == 0  # the next start gets fresh tries
    assert run_boot(fs, Pin(1))[0] is False


def test_clean_start_clears_the_counter(fs):
    safemode.count_start(fs)
    safemode.count_start(fs)
    assert safemode.crashes(fs) == 2
    safemode.mark_good(fs)
    assert safemode.crashes(fs) == 0
    safemode.count_start(fs)
    assert run_boot(fs, Pin(1))[0] is False


def test_start_app_counts_the_start_and_drops_the_boot_modules(fs, monkeypatch):
    import sys
    import compat
    monkeypatch.setattr(compat, 'UNLOAD', True)     # as on MicroPython
    import system
    boot_modules = ('safemode', 'ota', 'ota_apply', 'signed', 'hmac_sha256', 'update_status')
    for name in boot_modules:
        full = 'system.' + name
        monkeypatch.setitem(sys.modules, full, sys.modules.get(full) or importlib.import_module(full))
        monkeypatch.setattr(system, name, sys.modules[full])
    armed = []
    safemode.start_app(fs, armed.append)
    assert safemode.crashes(fs) == 1 and armed == [30000]
    for name in boot_modules:
        assert 'system.' + name not in sys.modules, name
        assert not hasattr(system, name), name      # nothing keeps them in the heap


def _run_main_py(monkeypatch, go=True, app_main=None, before=None):
    """Execute firmware/main.py with stand-ins for safemode, app and machine; return the
    calls."""
    calls = []
    sm = types.ModuleType('safemode')

    def before_app():
        calls.append('before_app')
        if before is not None:
            before()
        return go
    sm.before_app = before_app
    sm.failed = lambda why: calls.append(('failed', why))
    ap = types.ModuleType('app')
    ap.device_main = app_main or (lambda: calls.append('device_main'))
    mach = types.ModuleType('machine')
    mach.reset = lambda: calls.append('reset')
    mach.WDT = lambda timeout: calls.append(('WDT', timeout))
    import system
    import time
    monkeypatch.setitem(sys.modules, 'system.safemode', sm)
    monkeypatch.setattr(system, 'safemode', sm)
    monkeypatch.setitem(sys.modules, 'app', ap)
    monkeypatch.setitem(sys.modules, 'machine', mach)
    monkeypatch.setattr(time, 'sleep', lambda s: calls.append(('sleep', s)))
    monkeypatch.setattr(sys, 'print_exception', lambda e: None, raising=False)
    from drivers import boards as _b
    path = os.path.join(os.path.dirname(os.path.dirname(_b.__file__)), 'main.py')
    exec(compile(open(path).read(), path, 'exec'), {'__name__': '__main__'})
    return calls


def test_main_py_starts_the_app_only_outside_safe_mode(monkeypatch):
    assert _run_main_py(monkeypatch) == ['before_app', 'device_main', ('failed', 'the app ended'),
                                         ('sleep', 3), 'reset']
    assert _run_main_py(monkeypatch, go=False) == ['before_app']


def test_main_py_survives_whatever_the_app_does(monkeypatch, capsys):
    """An exception at import or later (even a BaseException that is no Exception) counts as
    a failed start and resets the board; Ctrl-C leaves the REPL; the start-up code failing
    still starts the app, under a watchdog armed right there."""
    def boom():
        raise ValueError('bad release')
    assert _run_main_py(monkeypatch, app_main=boom) == [
        'before_app', ('failed', "ValueError('bad release')"), ('sleep', 3), 'reset']

    def gen_exit():
        raise GeneratorExit()
    assert _run_main_py(monkeypatch, app_main=gen_exit)[1] == ('failed', 'GeneratorExit()')

    def ctrl_c():
        raise KeyboardInterrupt()
    assert _run_main_py(monkeypatch, app_main=ctrl_c) == ['before_app']
    assert 'app stopped (Ctrl-C)' in capsys.readouterr().out

    def broken():
        raise OSError(28)               # e.g. the start could not be counted
    calls = _run_main_py(monkeypatch, before=broken)
    assert calls[:3] == ['before_app', ('WDT', 30000), 'device_main'] and calls[-1] == 'reset'


def test_before_app_counts_arms_the_watchdog_then_the_app_may_start(fs, monkeypatch):
    armed = []
    monkeypatch.setitem(sys.modules, 'machine', types.SimpleNamespace(
        WDT=lambda timeout: armed.append(timeout)))
    monkeypatch.setattr(safemode, 'active', False)
    monkeypatch.setattr(safemode.ota, 'Fs', lambda root: fs)
    import system
    boot_modules = ('safemode', 'ota', 'ota_apply', 'signed', 'hmac_sha256', 'update_status')
    for name in boot_modules:
        full = 'system.' + name
        monkeypatch.setitem(sys.modules, full, sys.modules.get(full) or importlib.import_module(full))
        monkeypatch.setattr(system, name, sys.modules[full])
    assert safemode.before_app() is True
    assert armed == [safemode.WDT_MS] and safemode.crashes(fs) == 1
    monkeypatch.setattr(safemode, 'active', True)
    assert safemode.before_app() is False and armed == [safemode.WDT_MS]


def test_garbled_counter_counts_as_crashes(fs):
    fs.write(safemode.CRASHES, b'\xff\x00')
    assert run_boot(fs)[0] is True


def test_safe_mode_survives_a_failing_access_point(fs):
    fs.write(safemode.CRASHES, b'3')

    def broken(pw):
        raise OSError('no radio')
    out = []
    assert safemode.boot(fs, None, 0, broken, out=out.append) is True
    assert any('could not start the access point' in line for line in out)


def test_a_power_on_start_does_not_count_the_start_the_power_ended(fs):
    """Power blips each within the app's first minute: never safe mode. Starts ended by
    machine.reset() (after an exception) or by the watchdog still count."""
    for _ in range(6):
        safemode.count_start(fs)            # main.py; then the power fails
        assert safemode.boot(fs, Pin(1), power=True, out=lambda *a: None) is False
        assert safemode.crashes(fs) == 0
    assert fs.read(safemode.POWER_CUTS) == b'6'
    for how in ({'watchdog': True}, {}):        # a hang, then machine.reset() after a crash
        safemode.count_start(fs)
        assert safemode.boot(fs, Pin(1), out=lambda *a: None, **how) is False
    safemode.count_start(fs)
    assert safemode.crashes(fs) == 3
    assert safemode.boot(fs, Pin(1), power=True, out=lambda *a: None) is False   # one cut
    assert safemode.crashes(fs) == 2
    safemode.count_start(fs)
    assert safemode.boot(fs, Pin(1), out=lambda *a: None) is True   # 3 failed: safe mode
    assert not fs.exists(safemode.POWER_CUTS)


def test_a_start_that_failed_before_the_power_cut_still_counts(fs):
    for _ in range(3):
        safemode.count_start(fs)
        safemode.failed("RuntimeError('broken')", fs)     # main.py waits 3 s: power cut
        active = safemode.boot(fs, Pin(1), power=True, out=lambda *a: None)
    assert active is True


class Timer:
    def __init__(self):
        self.armed = []
        self.cancelled = 0

    def __call__(self, ms):
        self.armed.append(ms)
        return self

    def deinit(self):
        self.cancelled += 1


def test_failure_safe_mode_resets_itself_unless_told_to_stay(fs, capsys):
    """Safe mode entered because the app failed arms a reset (the app gets fresh tries then);
    stay() on the REPL cancels it. Safe mode asked for with the BOOT button arms none."""
    t = Timer()
    fs.write(safemode.CRASHES, b'3')
    out = []
    assert safemode.boot(fs, Pin(1), arm_reset=t, out=out.append) is True
    assert t.armed == [safemode.SAFE_MODE_MS] == [15 * 60 * 1000]
    assert any('safemode.stay()' in line for line in out)
    assert safemode.crashes(fs) == 0
    assert safemode.stay() is True and t.cancelled == 1
    assert safemode.stay() is False and t.cancelled == 1
    assert 'staying until the next reset' in capsys.readouterr().out

    t = Timer()
    out = []
    assert safemode.boot(fs, Pin(0), arm_reset=t, out=out.append) is True
    assert safemode.reason == safemode.BY_BUTTON and t.armed == []
    assert not any('stay()' in line for line in out)
    assert safemode.stay() is False

    t = Timer()
    assert safemode.boot(fs, Pin(1), arm_reset=t, out=out.append) is False and t.armed == []


def test_device_boot_reads_the_reset_cause_and_arms_a_one_shot_timer(fs, monkeypatch):
    """On the board: PWRON_RESET is a power-on start, WDT_RESET a watchdog's; safe mode's
    reset is machine.Timer(0), one shot, whose callback calls machine.reset()."""
    calls = []

    class MTimer:
        ONE_SHOT = 0

        def __init__(self, id):
            calls.append(('Timer', id))

        def init(self, mode, period, callback):
            calls.append(('init', mode, period))
            self.callback = callback

        def deinit(self):
            calls.append('deinit')

    m = types.SimpleNamespace(PWRON_RESET=1, HARD_RESET=2, WDT_RESET=3, SOFT_RESET=5, cause=1,
                              Timer=MTimer, reset=lambda: calls.append('reset'))
    m.reset_cause = lambda: m.cause
    monkeypatch.setitem(sys.modules, 'machine', m)
    import time
    monkeypatch.setattr(time, 'sleep_ms', lambda ms: None, raising=False)
    monkeypatch.setattr(safemode.ota, 'Fs', lambda root: fs)
    monkeypatch.setattr(safemode, 'button', lambda fs, cfg: (None, 0))
    seen = []
    real = safemode.boot
    monkeypatch.setattr(safemode, 'boot', lambda *a, **k: seen.append(k) or real(*a, **k))
    for cause, power, watchdog in ((1, True, False), (3, False, True), (2, False, False)):
        m.cause = cause
        safemode.device_boot()
        assert (seen[-1]['power'], seen[-1]['watchdog']) == (power, watchdog)
    fs.write(safemode.CRASHES, b'3')
    assert safemode.device_boot() is True
    assert calls == [('Timer', 0), ('init', 0, safemode.SAFE_MODE_MS)]
    safemode._timer.callback(safemode._timer)
    assert calls[-1] == 'reset'
    safemode.stay()
    assert calls[-1] == 'deinit'


# ---------------------------------------------------------------- supervisor

class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def test_supervisor_feeds_only_while_all_tasks_report(fs):
    wdt, clock = hw_host.Watchdog(), Clock()
    sup = supervisor.Supervisor(wdt, fs, {'link': 10000, 'web': 5000}, clock=clock)
    for _ in range(20):
        clock.t += 1000
        sup.alive('link')
        sup.alive('web')
        assert sup.check() is None
    assert wdt.fed == 20
    for _ in range(6):  # web goes silent
        clock.t += 1000
        sup.alive('link')
        sup.check()
    assert sup.hung == 'web' and wdt.fed == 25  # fed while silent <= its 5 s allowance
    sup.alive('web')  # too late: the watchdog will reboot
    clock.t += 1000
    assert sup.check() == 'web' and wdt.fed == 25
    after = supervisor.Supervisor(hw_host.Watchdog(), fs, reset_cause='watchdog')
    assert after.last_reboot == 'rebooted by watchdog: task web hung (silent 6 s)'
    assert not fs.exists(supervisor.REASON)
    assert supervisor.Supervisor(hw_host.Watchdog(), fs, reset_cause='watchdog').last_reboot == \
        'rebooted by watchdog: the event loop stalled'
    assert supervisor.Supervisor(hw_host.Watchdog(), fs).last_reboot is None


def test_supervisor_calls_the_proven_good_hook_once_the_release_has_proven_itself(fs,
                                                                                  monkeypatch):
    """60 s of running clear the failed starts; the hook (safemode.mark_good) is called once,
    when the app says it has proven itself (its web UI answered, the meter read)."""
    calls = []
    real = safemode.mark_good
    monkeypatch.setattr(safemode, 'mark_good', lambda f: (calls.append('good'), real(f)))
    clock = Clock()
    missing = ['the web UI has not answered']
    safemode.count_start(fs)
    sup = supervisor.Supervisor(hw_host.Watchdog(), fs, {'link': 5000}, clock=clock,
                                proven=lambda: missing[0])
    for _ in range(120):
        clock.t += 1000
        sup.alive('link')
        sup.check()
    assert safemode.crashes(fs) == 0 and not sup.good and calls == []
    missing[0] = None
    for _ in range(5):
        clock.t += 1000
        sup.alive('link')
        sup.check()
    assert sup.good and calls == ['good']


def test_an_update_that_does_not_prove_itself_stops_the_feeding(tmp_path, fs):
    """On trial and not proven after prove_within_ms: a rollback is asked for and the
    watchdog is no longer fed, so the board resets into it. Its failed starts are not
    cleared while it is on trial."""
    from system import ota
    fs.write(ota.TRIAL, b'{"version": "0.2.0+9.gabc", "previous": "0.2.0+4.gdef"}')
    safemode.count_start(fs)
    wdt, clock = hw_host.Watchdog(), Clock()
    sup = supervisor.Supervisor(wdt, fs, {'link': 5000}, clock=clock, good_after_ms=10000,
                                prove_within_ms=30000, proven=lambda: 'no reading from the meter')
    while clock.t < 29000:
        clock.t += 1000
        sup.alive('link')
        assert sup.check() is None
    assert safemode.crashes(fs) == 1 and not fs.exists(ota.ROLLBACK)
    clock.t += 1000
    sup.alive('link')
    sup.check()
    fed = wdt.fed
    for _ in range(3):
        clock.t += 1000
        sup.alive('link')
        assert sup.check() == 'update'
    assert wdt.fed == fed
    assert fs.read(ota.ROLLBACK) == b'it did not prove itself within 30 s (no reading from ' \
                                     b'the meter)'
    assert supervisor.Supervisor(hw_host.Watchdog(), fs, reset_cause='watchdog').last_reboot == \
        'rebooted by watchdog: it did not prove itself within 30 s (no reading from the meter)'


def test_supervisor_marks_a_start_good_after_60_s(fs):
    clock = Clock()
    safemode.count_start(fs)
    sup = supervisor.Supervisor(hw_host.Watchdog(), fs, {'link': 5000}, clock=clock)
    while clock.t < 59000:
        clock.t += 1000
        sup.alive('link')
        sup.check()
        assert safemode.crashes(fs) == 1
    clock.t += 1000
    sup.alive('link')
    sup.check()
    assert safemode.crashes(fs) == 0 and sup.good
    info = sup.mem_info()
    assert info['uptime_s'] == 60 and info['reset_cause'] == 'power on'


# ---------------------------------------------------------------- drivers.esp32 with a fake machine

class FakePin:
    OUT, IN, PULL_UP = 1, 2, 3

    def __init__(self, gpio, mode=None, pull=None, value=None):
        self.gpio, self.mode, self.level = gpio, mode, value
        FakePin.made[gpio] = self

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v


class FakeUart:
    def __init__(self, uid, baud, **kw):
        self.uid, self.baud, self.kw = uid, baud, kw
        self.rx = bytearray()
        self.tx = bytearray()

    def any(self):
        return len(self.rx)

    def read(self):
        d, self.rx = bytes(self.rx), bytearray()
        return d or None

    def write(self, data):
        self.tx += data


@pytest.fixture
def esp32_hw(monkeypatch):
    m = types.ModuleType('machine')
    FakePin.made = {}
    m.Pin, m.UART = FakePin, FakeUart
    m.PWRON_RESET, m.HARD_RESET, m.WDT_RESET, m.DEEPSLEEP_RESET, m.SOFT_RESET = 1, 2, 3, 4, 5
    m.cause = 3
    m.reset_cause = lambda: m.cause

    class WDT:
        def __init__(self, timeout):
            self.timeout, self.fed = timeout, 0

        def feed(self):
            self.fed += 1
    m.WDT = WDT
    monkeypatch.setitem(sys.modules, 'machine', m)
    sys.modules.pop('drivers.esp32', None)
    mod = importlib.import_module('drivers.esp32')
    yield mod, m
    sys.modules.pop('drivers.esp32', None)


def test_esp32_lines_follow_the_profile(esp32_hw):
    hw, _m = esp32_hw
    lines = hw.Lines(boards.get('dabbler'))
    en, supply = FakePin.made[5], FakePin.made[32]
    assert en.level == 1 and supply.level == 0  # starts disabled, driver off
    lines.enable(True)
    assert en.level == 0  # active low through the RS-232 driver
    lines.driver_power(True)
    assert supply.level == 1
    lines.led(True)  # no LED on this board: no-op
    FakePin.made.clear()
    lines = hw.Lines(boards.get('ustepper'))
    assert sorted(FakePin.made) == [5]  # no driver supply pin touched
    lines.driver_power(True)
    lines = hw.Lines(boards.get('mepdrawer'))
    lines.led(True)
    assert FakePin.made[16].level == 1


async def test_esp32_uart_port(esp32_hw):
    hw, _m = esp32_hw
    port = hw.open_port(boards.get('dabbler'))
    u = port.uart
    assert (u.uid, u.baud) == (2, 9600)
    assert u.kw == dict(bits=8, parity=None, stop=1, tx=17, rx=16, rxbuf=1024)
    assert await port.read(20) == b''
    asyncio.get_running_loop().call_later(0.01, lambda: u.rx.extend(b'\x06abc'))
    assert await port.read(1000) == b'\x06abc'
    port.write(b'\xee\x00')
    assert bytes(u.tx) == b'\xee\x00'


def test_esp32_watchdog_and_reset_cause(esp32_hw):
    hw, m = esp32_hw
    w = hw.Watchdog()
    w.feed()
    assert w._wdt.timeout == 30000 and w._wdt.fed == 1
    assert hw.reset_cause() == 'watchdog'
    m.cause = 5
    assert hw.reset_cause() == 'soft reset'
    m.cause = 99
    assert 'unknown' in hw.reset_cause()


# ---------------------------------------------------------------- hw_host

def test_host_lines_and_watchdog_record():
    lines = hw_host.Lines(boards.get('host'))
    lines.driver_power(True)
    lines.enable(True)
    lines.enable(False)
    assert lines.calls == [('driver_power', True), ('enable', True), ('enable', False)]
    w = hw_host.Watchdog()
    w.feed()
    w.feed()
    assert w.fed == 2 and hw_host.reset_cause() == 'power on'


async def test_host_tcp_port():
    got = []

    async def handle(r, w):
        got.append(await r.read(10))
        w.write(b'\x06reply')
        await w.drain()
        await asyncio.sleep(0.2)
        w.close()
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    port_no = server.sockets[0].getsockname()[1]
    port = hw_host.open_port(boards.get('host'), '127.0.0.1:%d' % port_no)
    assert await port.read(30) == b''
    port.write(b'\xee\x00')
    assert await port.read(2000) == b'\x06reply'
    assert got == [b'\xee\x00']
    with pytest.raises(OSError, match='closed'):
        await port.read(2000)
    port.close()
    server.close()


async def test_host_pty_port():
    master, slave = os.openpty()
    try:
        port = hw_host.open_port(boards.get('host'), os.ttyname(slave))
        assert await port.read(20) == b''
        os.write(master, b'\x06meter')
        assert await port.read(1000) == b'\x06meter'
        port.write(b'\xee\x00ab')
        await asyncio.sleep(0.05)
        assert os.read(master, 100) == b'\xee\x00ab'  # raw mode: bytes pass unchanged
        port.close()
    finally:
        os.close(master)
        os.close(slave)


def test_host_port_target_errors():
    with pytest.raises(ValueError, match='HOST:PORT'):
        hw_host.open_port(boards.get('host'), 'nonsense')


# ---------------------------------------------------------------- net

class FakeWlan:
    def __init__(self, connects_after=None):
        self.on, self.connects_after, self.polls, self.cfg = False, connects_after, 0, {}

    def active(self, on=None):
        if on is not None:
            self.on = on
        return self.on

    def connect(self, ssid, pw):
        self.ssid = ssid

    def isconnected(self):
        self.polls += 1
        return self.connects_after is not None and self.polls > self.connects_after

    def disconnect(self):
        pass

    def config(self, *a, **kw):
        if a == ('mac',):
            return b'\x24\x0a\xc4\x12\x34\x56'
        self.cfg.update(kw)

    def ifconfig(self):
        return ('192.168.4.1', '', '', '')


def fake_network(sta):
    n = types.SimpleNamespace(STA_IF=0, AP_IF=1, AUTH_WPA2_PSK=3, names=[])
    ap = FakeWlan()
    n.WLAN = lambda i: sta if i == 0 else ap
    n.hostname = n.names.append
    n.ap = ap
    return n


async def test_wifi_falls_back_to_ap_after_timeout(monkeypatch):
    from drivers import wifi
    n = fake_network(FakeWlan(connects_after=None))
    w = wifi.Wifi(n, 'mep-kitchen')
    assert n.names == ['mep-kitchen']
    assert await w.up('home', 'secret-pw', 'ap-password-123', timeout_ms=300) == 'ap'
    assert n.ap.cfg == {'essid': 'MEP-123456', 'password': 'ap-password-123', 'authmode': 3}
    assert w.ip() == '192.168.4.1'
    sta = FakeWlan(connects_after=2)
    sta.PM_POWERSAVE = 1
    n2 = fake_network(sta)
    assert await wifi.Wifi(n2).up('home', 'secret-pw', 'ap-password-123') == 'sta'
    assert sta.cfg == {'pm': 1}            # modem sleep: the MEP supply gives about 1 W
    with pytest.raises(ValueError):
        wifi.Wifi(n2).start_ap(None, 'short')


async def test_ntp_sets_rtc_and_gives_up_in_time():
    from drivers import wifi
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(('127.0.0.1', 0))
    t_unix = 1750000000

    def serve():
        data, addr = srv.recvfrom(48)
        r = bytearray(48)
        r[40:44] = struct.pack('!I', t_unix + wifi.NTP_DELTA)
        srv.sendto(bytes(r), addr)
    th = threading.Thread(target=serve)
    th.start()
    rtc = types.SimpleNamespace(set=None)
    rtc.datetime = lambda t: setattr(rtc, 'set', t)
    ntp = wifi.Ntp(rtc, '127.0.0.1', port=srv.getsockname()[1])
    assert await ntp.maybe_sync() is True
    th.join()
    assert rtc.set[:3] == (2025, 6, 15)
    assert ntp.due() is False
    ntp2 = wifi.Ntp(rtc, '127.0.0.1', port=srv.getsockname()[1])  # nobody answers now
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    assert await ntp2.sync(timeout_ms=200) is False
    assert loop.time() - t0 < 1.0
    srv.close()
