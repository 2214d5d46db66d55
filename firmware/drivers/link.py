# The asyncio side of the MEP link: one task owns the port (the only UART writer) and the
# ENABLE/driver lines, feeding the sans-IO Engine. Other tasks talk to it through submit()
# and request(); nothing they do can block this loop.
#
# port:  async read(timeout_ms) -> bytes (b'' when nothing came), write(data); optional
#        attribute poll_ms: how often read() looks for bytes (set before each read)
# lines: enable(on), driver_power(on)   (optional)
try:
    import asyncio
except ImportError:
    import uasyncio as asyncio

import gc
from compat import ticks_ms, ticks_diff, sleep_ms
from mep.engine import Engine
from mep.jobs import Job, PRIO_USER


class Link:
    def __init__(self, port, lines=None, key=None, settings=None, wall=None, log=None):
        self.engine = Engine(key, settings, wall)
        self.hooks = []             # objects with step(now): the poller; run in this loop
        self.port = port
        self.lines = lines
        self.log = log
        self.loops = 0              # the supervisor watches this move
        self.port_errors = 0
        self.mem_errors = 0         # MemoryError in a loop pass (heap full or fragmented)
        self._t = 0
        self._last = ticks_ms()
        self._tune = hasattr(port, 'poll_ms')   # a port whose polling interval can be set

    def now(self):
        """Milliseconds since start, never wrapping (MicroPython ticks wrap)."""
        t = ticks_ms()
        self._t += ticks_diff(t, self._last)
        self._last = t
        return self._t

    def submit(self, job):
        return self.engine.submit(job)

    def status(self):
        s = self.engine.status()
        s['port_errors'] = self.port_errors
        s['mem_errors'] = self.mem_errors
        return s

    async def request(self, message, prio=PRIO_USER, timeout_ms=20000):
        """Queue one message and wait for its job to end. Returns the Job (check job.error).
        Raises ValueError for a malformed message."""
        done = asyncio.Event()
        job = Job(message, prio, lambda j: done.set())
        if not self.engine.submit(job):
            job.error = 'the request queue is full'
            job.finished = True
            return job
        try:
            await asyncio.wait_for(done.wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            pass
        if not job.finished:
            job.cancelled = True
            job.error = 'no result within %d s' % (timeout_ms // 1000)
        return job

    def _act(self, actions):
        for kind, val in actions:
            if kind == 'write':
                self.port.write(val)
            elif self.lines is not None:
                if kind == 'enable':
                    self.lines.enable(val)
                elif kind == 'driver':
                    self.lines.driver_power(val)

    async def run(self):
        eng = self.engine
        while True:
            try:
                now = self.now()
                if eng.key is not None:     # the hooks submit polls, which need the key
                    for h in self.hooks:
                        h.step(now)
                self._act(eng.step(now))
                now = self.now()
                pre = eng.expect_ms(now)
                if pre:                 # the answer collects in the port's buffer meanwhile
                    await sleep_ms(pre)
                    now = self.now()
                if self._tune:
                    self.port.poll_ms = eng.poll_ms()
                data = await self.port.read(eng.wait_ms(now))
                if data:
                    eng.on_bytes(data, self.now())
                    rest = eng.rest_ms()
                    if rest:            # the rest of the frame collects in the port's buffer
                        await sleep_ms(rest)
                self.loops += 1
            except asyncio.CancelledError:
                raise
            except MemoryError:     # not the port's fault: collect and go on, no reopen
                self.mem_errors += 1
                eng.last_error = 'out of memory (heap); retrying'
                gc.collect()
                await sleep_ms(20)
            except Exception as e:  # a port failure must not end the link
                self.port_errors += 1
                eng.last_error = 'serial port error: %r' % (e,)
                if self.log:
                    self.log('link: %s' % eng.last_error)
                reopen = getattr(self.port, 'reopen', None)
                await sleep_ms(500)
                if reopen:
                    try:
                        await reopen()
                    except Exception:
                        pass


class Subscription:
    """A one-slot mailbox for a slow consumer of readings: put() never blocks and keeps only
    the newest item; get() waits for the next one. Counts what a lagging consumer missed."""

    def __init__(self):
        self.event = asyncio.Event()
        self.item = None
        self.skipped = 0

    def __call__(self, item):
        if self.item is not None:
            self.skipped += 1
        self.item = item
        self.event.set()

    async def get(self):
        while self.item is None:
            self.event.clear()
            await self.event.wait()
        item = self.item
        self.item = None
        return item
