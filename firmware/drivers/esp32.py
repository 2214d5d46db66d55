# The real hardware of an ESP32 / ESP32-C3 / ESP32-S3 board profile (imported on the device only).
#
# The MEP port polls the UART instead of wrapping it in asyncio.StreamReader, every 4 ms
# inside a frame, every 16 ms while an answer is due and every 100 ms otherwise (the link
# sets poll_ms). The link sleeps through an answer whose size and turnaround it knows and
# through the wire time of a frame's known rest: at 9600 Bd a byte takes ~1 ms and the 1 KB
# RX ring buffer holds ~1 s, so this loses nothing and wakes about once a frame. A read
# with a timeout stays a plain loop (no wait_for task to create and cancel on every call, so
# no heap churn and no data lost to a cancellation), and it behaves the same as the host
# port in hw_host.py.
import machine
from compat import ticks_ms, ticks_diff, sleep_ms

POLL_MS = 4


class UartPort:
    poll_ms = POLL_MS               # the link sets it (mep/engine.py Engine.poll_ms)

    def __init__(self, uart):
        self.uart = uart

    async def read(self, timeout_ms):
        """Wait up to timeout_ms for the first bytes, then return what has arrived."""
        u = self.uart
        t0 = ticks_ms()
        while not u.any():
            if ticks_diff(ticks_ms(), t0) >= timeout_ms:
                return b''
            await sleep_ms(self.poll_ms)
        return u.read() or b''

    def write(self, data):
        self.uart.write(data)

    def discard(self):
        """Drop whatever is in the RX buffer (after an ENABLE/driver reset)."""
        while self.uart.any():
            self.uart.read()


def open_port(profile):
    u = machine.UART(profile['uart'], 9600, bits=8, parity=None, stop=1,
                     tx=profile['tx'], rx=profile['rx'], rxbuf=1024)
    return UartPort(u)


def _out(gpio, level):
    return None if gpio is None else machine.Pin(gpio, machine.Pin.OUT, value=level)


class Lines:
    """MEP ENABLE, RS-232 driver supply and status LED. Everything starts switched off."""

    def __init__(self, profile):
        self._en_on = profile['enable_active']
        self._led_on = profile['led_active']
        self._en = _out(profile['enable'], 1 - self._en_on)
        self._supply = _out(profile['driver_supply'], 0)
        self._led = _out(profile['led'], 1 - self._led_on)

    def enable(self, on):
        if self._en is not None:
            self._en.value(self._en_on if on else 1 - self._en_on)

    def driver_power(self, on):
        if self._supply is not None:
            self._supply.value(1 if on else 0)

    def led(self, on):
        if self._led is not None:
            self._led.value(self._led_on if on else 1 - self._led_on)


class Watchdog:
    """machine.WDT: once started it cannot be stopped, only fed (see system/supervisor.py)."""

    def __init__(self, timeout_ms=30000):
        self._wdt = machine.WDT(timeout=timeout_ms)

    def feed(self):
        self._wdt.feed()


_CAUSES = (('PWRON_RESET', 'power on'), ('HARD_RESET', 'hard reset'),
           ('WDT_RESET', 'watchdog'), ('DEEPSLEEP_RESET', 'deep sleep'),
           ('SOFT_RESET', 'soft reset'), ('BROWNOUT_RESET', 'brown-out'))


def reset_cause(m=machine):
    c = m.reset_cause()
    for name, text in _CAUSES:
        if getattr(m, name, None) == c:
            return text
    return 'unknown (%r)' % (c,)
