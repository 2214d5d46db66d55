# host-only: the 'host' board's hardware, never flashed to an ESP32 (tools/flash.py puts it on a
# virtual board only; tools/bench_heap.py into the trees it runs on the unix port).
# Stand-ins for the 'host' board: the MEP port is a TCP connection to the meter simulator or
# a pseudo-terminal, the lines only record what they were asked to do (tests read the
# records); the watchdog and the reset cause are the virtual board's (tools/vboard.py), and
# only recorded on a PC without one.
#
# Both kinds of port are non-blocking file descriptors polled every few ms, the same design
# as the UART port in drivers/esp32.py, and the same code runs on CPython and on the MicroPython
# unix port (which has socket and select.poll but no termios).
import os
import select
import socket
from compat import ticks_ms, ticks_diff, sleep_ms

POLL_MS = 2
READ_MAX = 512


class _PolledPort:
    """Shared read/write over a non-blocking object; subclasses supply _recv and _send."""

    poll_ms = POLL_MS               # the link sets it (mep/engine.py Engine.poll_ms)

    def __init__(self, obj):
        self._poll = select.poll()
        self._poll.register(obj, select.POLLIN)

    async def read(self, timeout_ms):
        t0 = ticks_ms()
        while not self._poll.poll(0):
            if ticks_diff(ticks_ms(), t0) >= timeout_ms:
                return b''
            await sleep_ms(self.poll_ms)
        data = self._recv()
        if data is None:
            return b''
        if not data:
            raise OSError('the meter simulator closed the connection')
        return data

    def write(self, data):
        mv = memoryview(data)
        t0 = ticks_ms()
        while len(mv):
            try:
                n = self._send(mv)
            except OSError as e:
                if ticks_diff(ticks_ms(), t0) > 1000 or e.args[0] not in (11, 35):
                    raise
                n = 0
            mv = mv[n or 0:]

    def discard(self):
        while self._poll.poll(0):
            if not self._recv():
                return


class TcpPort(_PolledPort):
    def __init__(self, host, port, timeout_s=5):
        s = socket.socket()
        s.settimeout(timeout_s)
        s.connect(socket.getaddrinfo(host, port)[0][-1])
        s.setblocking(False)
        self.sock = s
        _PolledPort.__init__(self, s)

    def _recv(self):
        try:
            return self.sock.recv(READ_MAX)
        except OSError:
            return None  # EAGAIN: poll said readable but nothing yet

    def _send(self, mv):
        return self.sock.send(mv)

    def close(self):
        self.sock.close()


class TtyPort(_PolledPort):
    """A pseudo-terminal or serial device, raw 9600 8N1 where termios exists (CPython).
    On the MicroPython unix port the device is used as it is (best effort)."""

    def __init__(self, path):
        self.f = None
        if not hasattr(os, 'open'):  # MicroPython unix port: a plain file, one byte per poll
            self.f = open(path, 'r+b')
            self.fd = self.f
            _PolledPort.__init__(self, self.f)
            return
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        import termios
        import tty
        tty.setraw(self.fd)
        a = termios.tcgetattr(self.fd)
        a[4] = a[5] = termios.B9600
        termios.tcsetattr(self.fd, termios.TCSANOW, a)
        _PolledPort.__init__(self, self.fd)

    def _recv(self):
        if self.f is not None:
            return self.f.read(1)
        try:
            return os.read(self.fd, READ_MAX)
        except OSError:
            return None

    def _send(self, mv):
        if self.f is not None:
            return self.f.write(mv)
        return os.write(self.fd, bytes(mv))

    def close(self):
        if self.f is not None:
            self.f.close()
        else:
            os.close(self.fd)


def defaults():
    """Where the app on a PC finds the meter, which port its web UI uses and whether readings
    go to the console when main.py starts it without arguments (the virtual board,
    tools/vboard.py): MEP_TARGET, MEP_HTTP_PORT and MEP_CONSOLE from the environment; and
    how long a release runs before it counts as good (MEP_GOOD_AFTER_MS) and has to have
    proven itself (MEP_PROVE_WITHIN_MS), default the supervisor's (60 s, 10 min)."""
    env = getattr(os, 'getenv', None) or (lambda k: None)
    return {'mep_target': env('MEP_TARGET') or '127.0.0.1:7700',
            'http_port': int(env('MEP_HTTP_PORT') or 8080),
            'console': env('MEP_CONSOLE') == '1',
            'good_after_ms': int(env('MEP_GOOD_AFTER_MS') or 0) or None,
            'prove_within_ms': int(env('MEP_PROVE_WITHIN_MS') or 0) or None}


def open_port(profile, target):
    """`target`: 'HOST:PORT' of the meter simulator, or a pty/serial device path."""
    if target.startswith('/') or target.startswith('.'):
        return TtyPort(target)
    host, _, port = target.rpartition(':')
    if not host or not port.isdigit():
        raise ValueError('MEP target must be HOST:PORT or a device path, got %r' % target)
    return TcpPort(host, int(port))


class Lines:
    """ENABLE, driver power and LED that only remember their state and every call."""

    def __init__(self, profile=None):
        self.profile = profile
        self.calls = []
        self.enabled = False
        self.powered = False
        self.lit = False

    def enable(self, on):
        self.enabled = bool(on)
        self.calls.append(('enable', self.enabled))

    def driver_power(self, on):
        self.powered = bool(on)
        self.calls.append(('driver_power', self.powered))

    def led(self, on):
        self.lit = bool(on)
        self.calls.append(('led', self.lit))


def _machine():
    """The virtual board's machine module (tools/vboard.py: a watchdog and reset causes as
    on an ESP32), or None on a PC (CPython, the plain unix port)."""
    try:
        import machine
    except ImportError:
        return None
    return machine if hasattr(machine, 'WDT') and hasattr(machine, 'WDT_RESET') else None


class Watchdog:
    """The virtual board's machine.WDT; elsewhere it only counts the feeding."""

    def __init__(self, timeout_ms=30000):
        self.timeout_ms = timeout_ms
        self.fed = 0
        m = _machine()
        self._wdt = m.WDT(timeout=timeout_ms) if m is not None else None

    def feed(self):
        self.fed += 1
        if self._wdt is not None:
            self._wdt.feed()


def reset_cause():
    m = _machine()
    if m is None:
        return 'power on'
    c = m.reset_cause()
    for name, text in (('PWRON_RESET', 'power on'), ('HARD_RESET', 'hard reset'),
                       ('WDT_RESET', 'watchdog'), ('SOFT_RESET', 'soft reset')):
        if getattr(m, name, None) == c:
            return text
    return 'unknown (%r)' % (c,)
