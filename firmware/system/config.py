# Device settings: one JSON file described by the schema in config_schema.py (defaults, labels,
# validation); web password hashes in passwords.py. Loading never raises: a missing, corrupt or
# invalid file falls back to the .bak copy or to defaults (config.fallback, config.warning).
# Secret values never appear in warnings, error messages, public_view() or export().
# Only this module and the values stay in the heap: the methods that need the schema or
# the password code import it for the call, and on MicroPython drop it again afterwards.
import json
import sys
from storage import atomic
from compat import unload, asyncio

# PBKDF2 rounds for new web passwords. Measured: 5 us a round on the 32-bit MicroPython unix
# port on a PC, so ~0.5-1 ms on an ESP32 (100-200 times slower): 1000 rounds take 0.5-1 s.
# The async hashing yields every PW_CHUNK rounds (~15-30 ms on the ESP32), and one password
# is hashed at a time (Config._pw_lock), so logins never stall the MEP link for long.
PW_ITERATIONS = 1000
PW_CHUNK = 32


def _run(mod, fn, args):
    __import__(mod)
    return getattr(sys.modules[mod], fn)(*args)


def _drops():
    """What to drop after a call: the schema and password code, and tz.py (the time zone
    check loads it) unless it was loaded before. Ask before the call."""
    if 'system.tz' not in sys.modules:
        return ('system.config_schema', 'system.passwords', 'system.tz')
    return ('system.config_schema', 'system.passwords')


def _call(mod, fn, *args):
    """mod.fn(*args); afterwards config_schema/passwords are dropped again (compat.unload). The
    import runs in _run's frame, which is gone by then, so nothing on the stack holds them."""
    drop = _drops()
    try:
        return _run(mod, fn, args)
    finally:
        unload(*drop)


async def _call_async(mod, fn, *args):
    """await mod.fn(*args), dropping the modules only when it has finished (dropped while
    its coroutine still runs, a second call would load a second copy next to it)."""
    drop = _drops()
    try:
        return await _run(mod, fn, args)
    finally:
        unload(*drop)


class Config:
    def __init__(self, path, pw_iterations=PW_ITERATIONS):
        self.path = path
        self.pw_iterations = pw_iterations
        self.warning = None
        self.fallback = False
        self.values = _call('system.config_schema', 'defaults')

    def load(self, save_generated=True):
        """Read the file (never raises). Returns self."""
        return _call('system.config_schema', 'load', self, save_generated)

    def __getitem__(self, key):
        v = self.values[key]
        if key == 'mqtt_device_id' and not v:
            return self.values['hostname']
        return v

    def get(self, key, default=None):
        return self[key] if key in self.values else default

    def update(self, changes, keep_empty_secrets=True, clear=()):
        """Validate all `changes` (and the secret fields named in `clear`) first; apply all or
        nothing. Returns {field: message} (empty = applied). An empty secret in `changes` keeps
        the current value unless keep_empty_secrets is False. Cleared generated secrets
        (ap_password, session_secret, ota_key) are regenerated."""
        return _call('system.config_schema', 'update', self, changes, keep_empty_secrets, clear)

    def save(self):
        atomic.write(self.path, self._dump)

    def _dump(self, f):
        try:        # MicroPython: streamed into the file, no one-piece copy in the heap
            json.dump(self.values, f)
        except TypeError:   # CPython's json writes str, its binary file takes bytes only
            f.write(json.dumps(self.values).encode())

    def set_password(self, plain, iterations=None):
        """Set the web password. Returns {} or {'web_password_hash': message}."""
        return _call('system.passwords', 'set_password', self.values, plain,
                     iterations or self.pw_iterations)

    def _lock(self):
        lk = getattr(self, '_pw_lock', None)
        if lk is None:
            lk = self._pw_lock = asyncio.Lock()
        return lk

    async def set_password_async(self, plain, chunk=PW_CHUNK):
        """set_password() yielding to the event loop every `chunk` rounds."""
        async with self._lock():
            return await _call_async('system.passwords', 'set_password_async', self.values, plain,
                                     self.pw_iterations, chunk)

    def check_password(self, plain):
        """True when `plain` matches the stored hash (False when no password is set)."""
        return _call('system.passwords', 'check', self.values['web_password_hash'], plain)

    async def check_password_async(self, plain, chunk=PW_CHUNK):
        """check_password() yielding to the event loop every `chunk` rounds; one check or
        change at a time."""
        async with self._lock():
            return await _call_async('system.passwords', 'check_async', self.values['web_password_hash'],
                                     plain, chunk)

    def public_view(self):
        return _call('system.config_schema', 'public_view', self.values)

    def schema_view(self):
        return _call('system.config_schema', 'schema_view')

    def export(self, include_secrets=False):
        return _call('system.config_schema', 'export', self.values, include_secrets)

    def restore(self, data):
        """Apply an export() dict: validated like update(); absent settings (secrets included)
        keep their current value; an empty secret present in `data` clears it."""
        return _call('system.config_schema', 'restore', self, data)


def opt(cfg, key, default=None):
    """cfg[key] from a Config or a plain dict, or `default` when missing or None."""
    try:
        v = cfg[key]
    except KeyError:
        return default
    return default if v is None else v


def mail_configured(cfg):
    """True when alarm mails can go out: an SMTP host, a sender and a recipient are set."""
    return bool(opt(cfg, 'smtp_host') and opt(cfg, 'smtp_from') and opt(cfg, 'smtp_to'))
