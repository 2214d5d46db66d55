# Task supervisor: feeds the hardware watchdog only while every watched task reports alive,
# keeps the heap tidy and tells the status page why the board last rebooted.
#
# Each long-lived task calls supervisor.alive('link') (or 'web', 'mqtt') once per loop pass.
# A task silent for longer than its allowance stops the feeding: the reason is written to
# REASON first, and the hardware watchdog (hw_*.Watchdog, ~30 s) reboots the board. If the
# whole event loop stalls nobody feeds either; the next boot then finds reset cause
# 'watchdog' and no REASON file ("the event loop stalled").
import gc
import json
from compat import ticks_ms, ticks_diff, sleep_ms, mem_free, mem_alloc, asyncio, unload

REASON = 'reboot_reason.json'
ALLOWANCE_MS = {'link': 90000, 'web': 60000, 'mqtt': 180000}
LOW_HEAP = 24 * 1024  # collect when less than this is free
MEM_EVERY = 5  # the heap is looked at every this many passes
GOOD_AFTER_MS = 60000  # running this long without a failure: the start did not fail
PROVE_WITHIN_MS = 600000  # an update on trial that has not proven itself by then: rolled back


class Supervisor:
    def __init__(self, watchdog, fs=None, tasks=None, reset_cause='power on', clock=ticks_ms,
                 proven=None, good_after_ms=None, prove_within_ms=None):
        # proven: () -> None once the app has proven itself (the App: its web UI served, the
        # meter read or no MBK), else what it still lacks, in words
        self.wdt = watchdog
        self.proven = proven
        self.good_after_ms = good_after_ms or GOOD_AFTER_MS
        self.prove_within_ms = prove_within_ms or PROVE_WITHIN_MS
        self._stable = False
        self._rejected = False
        self.fs = fs
        self.clock = clock
        self.reset_cause = reset_cause
        self.allowance = dict(ALLOWANCE_MS if tasks is None else tasks)
        now = clock()
        self._seen = {}
        for name in self.allowance:
            self._seen[name] = now  # each task gets its allowance to report the first time
        self._last = now
        self.uptime_ms = 0
        self.hung = None
        self.good = False
        self.collections = 0
        self._passes = 0
        self.last_reboot = self._last_reboot()

    def _last_reboot(self):
        r = None
        if self.fs is not None:
            from storage.fs import read_json
            r = read_json(self.fs, REASON)
            self.fs.remove(REASON)
        if self.reset_cause != 'watchdog':
            return None
        if r and r.get('why'):
            return 'rebooted by watchdog: ' + r['why']
        if r and r.get('task'):
            return 'rebooted by watchdog: task %s hung (silent %d s)' % (r['task'], r['silent_s'])
        return 'rebooted by watchdog: the event loop stalled'

    def watch(self, name, allowance_ms):
        self.allowance[name] = allowance_ms
        self._seen[name] = self.clock()

    def unwatch(self, name):
        self.allowance.pop(name, None)
        self._seen.pop(name, None)

    def alive(self, name):
        self._seen[name] = self.clock()

    def check(self):
        """One supervision pass: feed the watchdog if all tasks are alive. Returns the name of
        a hung task (from then on the watchdog is never fed again) or None."""
        now = self.clock()
        self.uptime_ms += ticks_diff(now, self._last)
        self._last = now
        if self.hung is None:
            for name, allow in self.allowance.items():
                silent = ticks_diff(now, self._seen.get(name, now))
                if silent > allow:
                    self.hung = name
                    self._record(name, silent)
                    break
        if self.hung is not None:
            return self.hung
        self.wdt.feed()
        if not self.good and self.uptime_ms >= self.good_after_ms:
            self._judge()
        self._passes += 1
        if self._passes % MEM_EVERY:
            return None
        free = mem_free()           # it walks the whole heap: not on every pass
        if free is not None and free < LOW_HEAP:
            gc.collect()
            self.collections += 1
        return None

    def _judge(self):
        """Once the app has run good_after_ms: has it proven itself? Then the one call of the
        proven-good hook (safemode.mark_good). Until then its start counts as not failed
        (safemode.stable), and an update on trial that has not proven itself within
        prove_within_ms is rolled back: the watchdog is no longer fed, and boot.py rolls
        back what safemode.reject asked for."""
        missing = self.proven() if self.proven is not None else None
        if missing is None:
            self.good = True
        elif self._stable and (self._rejected or self.uptime_ms < self.prove_within_ms):
            return
        if self.fs is None:
            return
        from system import safemode
        if self.good:
            safemode.mark_good(self.fs)
        elif not self._stable:
            self._stable = True
            safemode.stable(self.fs)
        else:
            self._rejected = True
            t = self.prove_within_ms // 1000
            why = ('it did not prove itself within %s (%s)'
                   % ('%d min' % (t // 60) if t >= 120 else '%d s' % t, missing))
            if safemode.reject(self.fs, why):
                self.hung = 'update'
                self._record('update', self.uptime_ms, why)
        safemode = None
        unload('system.safemode', 'system.ota', 'system.ota_apply', 'system.signed',
               'system.hmac_sha256', 'system.update_status')

    def _record(self, name, silent, why=None):
        if why:
            print('supervisor: %s; watchdog will reboot' % why)
        else:
            print('supervisor: task %s silent for %d s; watchdog will reboot'
                  % (name, silent // 1000))
        if self.fs is not None:
            try:
                self.fs.write(REASON, json.dumps({'task': name, 'silent_s': silent // 1000,
                                                  'why': why}).encode())
            except OSError:
                pass

    async def run(self, period_ms=1000):
        while True:
            try:
                self.check()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never let housekeeping kill the feeding task silently
                print('supervisor:', repr(e))
            await sleep_ms(period_ms)

    def mem_info(self):
        return {'free': mem_free(), 'alloc': mem_alloc(), 'largest_free': largest_free(),
                'uptime_s': self.uptime_ms // 1000, 'reset_cause': self.reset_cause,
                'last_reboot': self.last_reboot, 'hung': self.hung,
                'collections': self.collections}


def largest_free():
    """Largest free block of the ESP-IDF heap the MicroPython heap grows into, if known."""
    try:
        import esp32
        best = 0
        for region in esp32.idf_heap_info(esp32.HEAP_DATA):
            best = max(best, region[2])
        return best
    except (ImportError, AttributeError):
        return None
