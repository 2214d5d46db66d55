# Meter simulator transports (CPython only, asyncio): TCP, pseudo-terminal, real serial
# device, and an in-process paced port (SimPort) for tests of the firmware's MEP link.
#
# All transports share one Pump: received bytes go to meter.rx(data, now); meter.tx(now) is
# written when due; between bytes the pump sleeps until meter.next_tx_ms(). Time base:
# monotonic ms since the pump started. The pump never sends a byte early, only up to one
# timer tick late, so the average rate is the meter's (960 bytes/s at 9600 8N1).
import asyncio
import os
import time
import tty

_MIN_SLEEP_S = 0.002


class Pump:
    """Drives one Meter in real time. `sink(bytes)` receives what the meter sends."""

    def __init__(self, meter, sink=None):
        self.meter = meter
        self.sink = sink
        self.t0 = time.monotonic() - meter._now / 1000.0
        self.bytes_out = 0
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def now(self):
        return (time.monotonic() - self.t0) * 1000.0

    def feed(self, data):
        """Bytes from the client, arrived now."""
        if data:
            self.meter.rx(data, self.now())
            self._wake.set()

    def kick(self):
        """Call after changing the meter from outside (alert, fault)."""
        self._wake.set()

    async def _run(self):
        m = self.meter
        while True:
            out = m.tx(self.now())
            if out:
                self.bytes_out += len(out)
                if self.sink is not None:
                    try:
                        self.sink(out)
                    except OSError:
                        pass
            nxt = m.next_tx_ms()
            self._wake.clear()
            if nxt is None:
                await self._wake.wait()
                continue
            delay = (nxt - self.now()) / 1000.0
            if delay <= 0:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), max(delay, _MIN_SLEEP_S))
            except asyncio.TimeoutError:
                pass

    def close(self):
        self._task.cancel()


class SimPort:
    """In-process paced stream pair: the firmware's MEP link port interface.

    write(data) sends a request: it reaches the meter after len(data) byte times (as on a
    9600-baud line). read(timeout_ms) waits up to timeout_ms for the first bytes and returns
    what is available (b'' on timeout). Must be created inside a running event loop."""

    def __init__(self, meter):
        self.meter = meter
        self._buf = bytearray()
        self._ready = asyncio.Event()
        self.pump = Pump(meter, self._sink)
        self._line_free = 0.0
        self.written = bytearray()

    def _sink(self, data):
        self._buf += data
        self._ready.set()

    def write(self, data):
        data = bytes(data)
        self.written += data
        now = self.pump.now()
        start = max(now, self._line_free)
        done = start + len(data) * self.meter.byte_ms
        self._line_free = done
        loop = asyncio.get_running_loop()
        loop.call_later(max(0.0, (done - now) / 1000.0), self.pump.feed, data)
        return len(data)

    async def read(self, timeout_ms):
        if not self._buf:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_ms / 1000.0)
            except asyncio.TimeoutError:
                return b''
        out = bytes(self._buf)
        self._buf = bytearray()
        return out

    def close(self):
        self.pump.close()


class TcpServer:
    """One client at a time; a new client replaces the old one."""

    def __init__(self, meter):
        self.meter = meter
        self.pump = Pump(meter, self._sink)
        self.server = None
        self.port = None
        self.writer = None

    def _sink(self, data):
        w = self.writer
        if w is not None and not w.is_closing():
            w.write(data)

    async def _client(self, reader, writer):
        old = self.writer
        self.writer = writer
        if old is not None:
            old.close()
        try:
            while True:
                data = await reader.read(1024)
                if not data:
                    break
                if self.writer is writer:
                    self.pump.feed(data)
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            pass        # the server is shutting down: end this connection quietly
        finally:
            if self.writer is writer:
                self.writer = None
            writer.close()

    def close(self):
        self.pump.close()
        if self.writer is not None:
            self.writer.close()
        if self.server is not None:
            self.server.close()

    async def wait_closed(self):
        if self.server is not None:
            await self.server.wait_closed()


async def serve_tcp(meter, host='127.0.0.1', port=0):
    srv = TcpServer(meter)
    srv.server = await asyncio.start_server(srv._client, host, port)
    srv.port = srv.server.sockets[0].getsockname()[1]
    return srv


class PtyLink:
    """The meter on a pseudo-terminal: the client opens `path` (raw mode, 8 bits)."""

    def __init__(self, meter):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.pump = Pump(meter, self._sink)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.master, self._readable)

    def _sink(self, data):
        try:
            os.write(self.master, data)
        except (BlockingIOError, OSError):
            pass

    def _readable(self):
        try:
            data = os.read(self.master, 1024)
        except (BlockingIOError, OSError):
            return
        self.pump.feed(data)

    def close(self):
        self.pump.close()
        self.loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


_PTYS = {}


def open_pty(meter):
    """Put the meter on a new pseudo-terminal; returns the slave path. Needs a running loop.
    close_pty(path) closes it."""
    link = PtyLink(meter)
    _PTYS[link.path] = link
    return link.path


def close_pty(path):
    link = _PTYS.pop(path, None)
    if link is not None:
        link.close()


class SerialLink:
    """The meter on a real serial device (pyserial, 9600 8N1 by default)."""

    def __init__(self, meter, device, baudrate=9600):
        import serial  # pyserial
        self.ser = serial.Serial(device, baudrate=baudrate, bytesize=8, parity='N',
                                 stopbits=1, timeout=0, write_timeout=1)
        self.pump = Pump(meter, self.ser.write)
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.ser.fileno(), self._readable)

    def _readable(self):
        try:
            data = self.ser.read(self.ser.in_waiting or 1)
        except Exception:
            return
        self.pump.feed(data)

    def close(self):
        self.pump.close()
        self.loop.remove_reader(self.ser.fileno())
        self.ser.close()


def open_serial(meter, device, baudrate=9600):
    """Put the meter on serial device `device`; returns the SerialLink (close() it)."""
    return SerialLink(meter, device, baudrate)
