# Safe mode and the crash counter, decided by boot.py before the app starts.
#
# Safe mode skips the app and leaves the REPL plus a WiFi access point, so a broken app or
# config can be repaired. It is entered when the board's BOOT button is held at boot, or after
# MAX_CRASHES starts in a row that never reached 60 s of running: main.py counts every start
# (start_app), the app's supervisor calls mark_good() once it has run 60 s. Before that an
# OTA update on trial that keeps crashing is rolled back (ota.apply_pending), which also
# resets the counter, so the previous app gets its own 3 tries before safe mode.
# Hardware (pin, AP starter, sleep) is passed in, so all of this runs on the PC in tests.
import os
from system import ota

CRASHES = 'crashes'
CONFIG = 'config.json'
MAX_CRASHES = 3
AP_PASSWORD_KEYS = ('ap_password',)
active = None  # None until boot() ran; then True (safe mode) or False
reason = None


def crashes(fs):
    try:
        return int(fs.read(CRASHES) or 0)
    except ValueError:
        return MAX_CRASHES  # a garbled counter is itself a sign of trouble


def count_start(fs):
    fs.write(CRASHES, str(crashes(fs) + 1).encode())


def clear(fs):
    fs.remove(CRASHES)


def mark_good(fs):
    """The app has run long enough: forget the crashes and keep an OTA update on trial; on a
    board with OTA partitions also the running image (the bootloader's rollback is off)."""
    clear(fs)
    ota.commit(fs)
    try:
        from system import imgota
        imgota.confirm(fs)
    except Exception as e:  # never let it stop the app; the next start tries again
        print('image: confirming the running image failed: %r' % (e,))
    from compat import unload
    unload('system.imgota')


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
        return 'BOOT button held at power-up'
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


def boot(fs, pin=None, level=0, start_ap=None, sleep_ms=None, out=print, rand=None):
    """Everything boot.py does, with the hardware handed in. Returns True in safe mode."""
    global active, reason
    try:
        r = ota.apply_pending(fs, crashes(fs), MAX_CRASHES)
    except Exception as e:  # a damaged update must not stop the board from booting
        r = None
        out('ota: applying the pending update failed: %r' % (e,))
    if r:
        clear(fs)
        out('ota: update %s' % r)
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
    return active


def device_boot():
    """boot.py on the board: build the real pin and AP starter and run boot()."""
    import time
    import machine
    from drivers import boards
    fs = ota.Fs('/')
    cfg = config(fs)
    try:
        prof = boards.get(cfg.get('board') or boards.DEFAULT)
    except ValueError:
        prof = boards.PROFILES[boards.DEFAULT]
    pin = None
    if prof['boot_button'] is not None:
        pin = machine.Pin(prof['boot_button'], machine.Pin.IN, machine.Pin.PULL_UP)

    def start_ap(pw):
        import network
        from drivers import wifi
        return wifi.Wifi(network).start_ap(None, pw)

    return boot(fs, pin, prof['safe_active'], start_ap, time.sleep_ms)


def start_app(fs):
    """main.py, normal start: count this start, then drop the boot-time modules (safe mode,
    OTA) from the heap; main.py then runs app.main()."""
    count_start(fs)
    from compat import unload
    unload('system.safemode', 'system.ota', 'system.hmac_sha256')
