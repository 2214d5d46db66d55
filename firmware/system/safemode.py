# Safe mode, the crash counter and the start of the app, for boot.py and main.py (which an
# update never replaces, nor this module: system/ota.py RECOVERY).
#
# Safe mode skips the app and leaves the REPL plus a WiFi access point, so a broken app or
# config can be repaired. It is entered when the board's BOOT button is held at boot, or after
# MAX_CRASHES starts in a row that failed: main.py counts every start (before_app) and arms
# the watchdog before it imports the app; an exception from the app is recorded (failed) and
# the board reset; a hang is reset by the watchdog. The app's supervisor clears the count once
# the app has run a while (stable) and calls mark_good() once it has proven itself (served its
# web UI, read the meter or has no MBK). Before safe mode, an OTA update on trial that keeps
# failing is rolled back (ota_apply.apply_pending), which also resets the counter, so the previous
# app gets its own 3 tries; one that does not prove itself in time is rolled back too (reject).
# A power-on start (power cut, brown-out, the RESET button) takes back the count of the start
# the power ended (power_on), up to MAX_POWER_CUTS in a row: a release that browns the board
# out at every start still counts then. Safe mode entered because the app failed ends by
# itself: the board resets after SAFE_MODE_MS and gives the app fresh tries, unless stay() is
# called on the REPL; safe mode asked for with the BOOT button lasts until the next reset.
# Hardware (pin, AP starter, sleep, timer) is passed in, so all of this runs on the PC in tests.
import os
import json
from system import ota, ota_apply

CRASHES = 'crashes'
FAILED = 'crash_reason'   # how the last start failed (an exception; none after a hang)
POWER_CUTS = 'power_cuts' # power-on starts in a row whose ended start was not counted
CONFIG = 'config.json'
BUTTON = 'boot_button.json'
MAX_CRASHES = 3
BY_BUTTON = 'BOOT button held at power-up'     # safe mode asked for by a person there
MAX_POWER_CUTS = 10       # beyond this many in a row, a power-on start counts again
SAFE_MODE_MS = 900000     # failure safe mode resets the board after 15 minutes
WDT_MS = 30000            # the watchdog main.py arms before it imports the app
AP_PASSWORD_KEYS = ('ap_password',)
active = None  # None until boot() ran; then True (safe mode) or False
reason = None
_timer = None  # the armed self-reset of failure safe mode (stay() cancels it)


def crashes(fs):
    try:
        return int(fs.read(CRASHES) or 0)
    except ValueError:
        return MAX_CRASHES  # a garbled counter is itself a sign of trouble


def count_start(fs):
    fs.write(CRASHES, str(crashes(fs) + 1).encode())
    fs.remove(FAILED)


def clear(fs):
    fs.remove(CRASHES)
    fs.remove(FAILED)
    fs.remove(POWER_CUTS)


def power_on(fs, out=print):
    """boot(), at a power-on start: the counted start the power ended did not fail (unless
    it had recorded a failure before the cut), so its count is taken back; after
    MAX_POWER_CUTS such starts in a row without the app running a while, no more."""
    n = crashes(fs)
    if n <= 0 or fs.exists(FAILED):
        return
    try:
        cuts = int(fs.read(POWER_CUTS) or 0)
    except ValueError:
        cuts = MAX_POWER_CUTS
    if cuts >= MAX_POWER_CUTS:
        out('boot: %d power-on starts in a row ended early: they count as failed' % cuts)
        return
    fs.write(POWER_CUTS, str(cuts + 1).encode())    # first: a cut here keeps the count
    fs.write(CRASHES, str(n - 1).encode())


def mark_good(fs):
    """THE proven-good hook, called once by the supervisor when the running release has
    proven itself (system/supervisor.py: run GOOD_AFTER_MS, served its web UI, read the meter
    or has no MBK): forget the failed starts, keep an update on trial and, on a board with
    OTA partitions, the running image (the bootloader's rollback is off)."""
    clear(fs)
    ota_apply.commit(fs)
    try:
        from system import imgota
        imgota.confirm(fs)
    except Exception as e:  # never let it stop the app; the next start tries again
        print('image: confirming the running image failed: %r' % (e,))
    from compat import unload
    unload('system.imgota')


def stable(fs):
    """The app ran GOOD_AFTER_MS without proving itself yet (e.g. the meter does not answer):
    the start did not fail, unless an update is on trial, which has to prove itself."""
    if not fs.exists(ota.TRIAL):
        clear(fs)


def reject(fs, why):
    """The update on trial did not prove itself in time: roll it back at the next boot (a
    bundle by boot.py, an image by the bootloader). Returns False when none is on trial."""
    if not fs.exists(ota.TRIAL):
        from system import imgota
        return imgota.reject(fs, why)
    ota_apply.request_rollback(fs, why)
    return True


def failed(why, fs=None):
    """main.py: the app raised `why` (or ended): recorded for the rollback's reason."""
    (fs or ota.Fs('/')).write(FAILED, str(why)[:160].encode())


def button_held(pin, level, sleep_ms=None):
    """True if `pin` reads `level` three times 10 ms apart (a bounce is not a request)."""
    for i in range(3):
        if pin.value() != level:
            return False
        if sleep_ms and i < 2:
            sleep_ms(10)
    return True


def decide(fs, pin=None, level=0, sleep_ms=None):
    """The reason to enter safe mode, or None to start the app."""
    if pin is not None and button_held(pin, level, sleep_ms):
        return BY_BUTTON
    n = crashes(fs)
    if n >= MAX_CRASHES:
        return 'the app failed to start %d times in a row' % n
    return None


def config(fs):
    c = ota.read_json(fs, CONFIG)
    return c if isinstance(c, dict) else {}


def ap_password(cfg):
    for k in AP_PASSWORD_KEYS:
        pw = cfg.get(k)
        if isinstance(pw, str) and len(pw) >= 8:
            return pw
    return None


def fallback_password(rand=None):
    """A random 10-character AP password, for a device without one in its config."""
    abc = 'abcdefghjkmnpqrstuvwxyz23456789'
    return ''.join(abc[b % len(abc)] for b in (rand or os.urandom)(10))


def last_failure(fs, watchdog=False):
    """How the last start ended, in words, if it failed."""
    why = fs.read(FAILED)
    if why:
        return why.decode()
    if watchdog:
        return 'it hung: the watchdog reset the board'
    return None


def boot(fs, pin=None, level=0, start_ap=None, sleep_ms=None, out=print, rand=None,
         watchdog=False, button=None, power=False, arm_reset=None):
    """Everything boot.py does, with the hardware handed in. Returns True in safe mode.
    watchdog: the board was reset by its watchdog; power: it started at power-on; button:
    () -> (pin, level), called after the update step (it may import what an update
    replaced); arm_reset(ms): reset the board in ms (failure safe mode), returns what
    deinit() cancels."""
    global active, reason, _timer
    if power:
        try:
            power_on(fs, out)
        except Exception as e:      # the count stays as it is
            out('boot: %r' % (e,))
    try:
        r = ota_apply.apply_pending(fs, crashes(fs), MAX_CRASHES, last_failure(fs, watchdog))
    except Exception as e:  # a damaged update must not stop the board from booting
        r = None
        out('ota: applying the pending update failed: %r' % (e,))
    if r:
        clear(fs)           # the release now in place gets its own tries
        out('ota: update %s' % r)
    if button is not None:
        try:
            pin, level = button()
        except Exception as e:      # no BOOT button check, but the rest goes on
            out('boot: the board profile failed: %r' % (e,))
    reason = decide(fs, pin, level, sleep_ms)
    active = reason is not None
    if active:
        out('SAFE MODE: %s. The app is not started; the REPL stays available.' % reason)
        pw = ap_password(config(fs))
        if pw is None:
            pw = fallback_password(rand)
            out('No AP password in the config; this boot uses: %s' % pw)  # REPL only
        if start_ap:
            try:
                out('WiFi access point %s started' % start_ap(pw))
            except Exception as e:
                out('could not start the access point: %r' % (e,))
        clear(fs)  # the next normal start gets 3 fresh tries
        if arm_reset and reason != BY_BUTTON:     # nobody may come: try the app again later
            try:
                _timer = arm_reset(SAFE_MODE_MS)
                out('The board resets itself in %d min to try the app again; to stay in safe '
                    'mode: from system import safemode; safemode.stay()'
                    % (SAFE_MODE_MS // 60000))
            except Exception as e:
                out('safe mode: could not arm the reset: %r' % (e,))
    return active


def stay():
    """On the REPL: keep the board in safe mode (cancel its reset to try the app again)."""
    global _timer
    if _timer is None:
        print('safe mode: no reset is armed')
        return False
    _timer.deinit()
    _timer = None
    print('safe mode: staying until the next reset')
    return True


def button(fs, cfg):
    """(BOOT button GPIO or None, level that means pressed) of the configured board profile.
    Kept in BUTTON once known, so boot.py imports drivers/boards.py (which an update may
    replace, and which then might hang or raise) only for a board name not seen before."""
    name = cfg.get('board')
    c = ota.read_json(fs, BUTTON)
    if isinstance(c, dict) and c.get('board') == name and 'gpio' in c:
        return c['gpio'], c.get('level', 0)
    from drivers import boards
    try:
        prof = boards.get(name or boards.DEFAULT)
    except ValueError:
        prof = boards.PROFILES[boards.DEFAULT]
    fs.write(BUTTON, json.dumps({'board': name, 'gpio': prof['boot_button'],
                                 'level': prof['safe_active']}).encode())
    return prof['boot_button'], prof['safe_active']


def device_boot():
    """boot.py on the board: build the real pin and AP starter and run boot()."""
    import time
    import machine
    fs = ota.Fs('/')

    def pin():
        gpio, level = button(fs, config(fs))
        if gpio is None:
            return None, level
        return machine.Pin(gpio, machine.Pin.IN, machine.Pin.PULL_UP), level

    def start_ap(pw):
        import network
        from drivers import wifi
        return wifi.Wifi(network).start_ap(None, pw)

    def arm_reset(ms):
        t = machine.Timer(0)
        t.init(mode=machine.Timer.ONE_SHOT, period=ms, callback=lambda t: machine.reset())
        return t

    cause = machine.reset_cause() if hasattr(machine, 'reset_cause') else None
    return boot(fs, None, 0, start_ap, time.sleep_ms, button=pin, arm_reset=arm_reset,
                watchdog=cause is not None and cause == getattr(machine, 'WDT_RESET', None),
                power=cause is not None and cause == getattr(machine, 'PWRON_RESET', None))


def start_app(fs, arm=None):
    """main.py, normal start: count this start, arm the watchdog (arm(WDT_MS)), then drop the
    boot-time modules (safe mode, OTA) from the heap; main.py then imports and runs the app."""
    count_start(fs)
    if arm is not None:
        arm(WDT_MS)
    import sys
    pkg = sys.modules.get('system')
    for m in ('safemode', 'ota', 'ota_apply', 'signed', 'hmac_sha256', 'update_status'):
        sys.modules.pop('system.' + m, None)
        if pkg is not None and hasattr(pkg, m):
            delattr(pkg, m)     # the package keeps an imported module alive as well
    import gc
    gc.collect()


def before_app():
    """main.py on the board: decide safe mode if boot.py did not, then (not in safe mode)
    count this start and arm the watchdog. Returns True when the app is to be started."""
    import machine
    if active is None:          # boot.py failed or was skipped
        device_boot()
    if active:
        print('safe mode (%s): app not started. Fix things on the REPL, then machine.reset()%s'
              % (reason, '' if _timer is None else '; safemode.stay() keeps it in safe mode'))
        return False
    start_app(ota.Fs('/'), lambda ms: machine.WDT(timeout=ms))
    return True
