# The asyncio link driver in real time against the simulator with 9600-baud pacing
# (CPython; the virtual-time tests in core/ cover the state machine on both interpreters).
import asyncio
import time

from drivers.link import Link, Subscription
from mep.engine import Settings
from mep.poller import Poller
from mep import requests as rq
from tools.mepsim import Meter
from tools.mepsim.serve import SimPort

KEY = b'ABCDEFGHIJKLMNOP'


class Lines:
    def __init__(self):
        self.calls = []

    def enable(self, on):
        self.calls.append(('enable', on))

    def driver_power(self, on):
        self.calls.append(('driver', on))


async def bench(meter_key=KEY, seconds=3.0, alert_at=None):
    meter = Meter(key=meter_key)
    port = SimPort(meter)
    lines = Lines()
    s = Settings()
    s.settle_ms = 50
    link = Link(port, lines, KEY, s, lambda: int(time.time()))
    poller = Poller(link.submit, lambda: int(time.time()), fast=True)
    link.hooks.append(poller)
    sub = Subscription()
    poller.on_reading(sub)
    task = asyncio.create_task(link.run())
    t0 = time.monotonic()
    alert_sent = None
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(0.05)
        if alert_at is not None and alert_sent is None and time.monotonic() - t0 > alert_at:
            meter.alert()
            alert_sent = time.monotonic()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return meter, link, poller, lines, sub


def test_realtime_readings_and_alert():
    meter, link, poller, lines, sub = asyncio.run(bench(seconds=4.0, alert_at=2.0))
    assert poller.readings >= 4, link.status()
    assert link.status()['link'] == 'ok'
    assert meter.alerts_answered == 1
    assert max(meter.alert_latency_ms) < 2000
    assert ('enable', True) in lines.calls and ('driver', True) in lines.calls
    # nobody consumed the subscription: it holds the newest reading and counts the others
    assert sub.item is not None and sub.item['p_in'] is not None
    assert sub.skipped == poller.readings - 1
    assert poller.cycle_ms is not None and poller.cycle_ms < 1000


def test_realtime_user_request_while_polling():
    async def go():
        meter = Meter(key=KEY)
        link = Link(SimPort(meter), None, KEY, Settings(), lambda: int(time.time()))
        link.engine.s.settle_ms = 10
        poller = Poller(link.submit, lambda: int(time.time()), fast=True)
        link.hooks.append(poller)
        task = asyncio.create_task(link.run())
        job = await link.request(rq.full_read(rq.BT01), timeout_ms=5000)
        task.cancel()
        return job
    job = asyncio.run(go())
    assert job.error is None
    assert job.response.data[:4] == b'NES '


def test_realtime_wrong_key_reports_mbk():
    meter, link, poller, lines, sub = asyncio.run(bench(meter_key=b'ZZZZZZZZZZZZZZZZ',
                                                        seconds=2.0))
    st = link.status()
    assert st['link'] == 'auth failed'
    assert 'check the MBK' in st['last_error']
    assert meter.stats['requests'] <= 2
    assert poller.readings == 0


def test_port_errors_do_not_end_the_link():
    class Broken:
        def __init__(self):
            self.n = 0

        async def read(self, timeout_ms):
            self.n += 1
            raise OSError(5, 'device unplugged')

        def write(self, data):
            pass

    async def go():
        port = Broken()
        link = Link(port, None, KEY)
        task = asyncio.create_task(link.run())
        await asyncio.sleep(1.2)
        alive = not task.done()
        task.cancel()
        return link, alive, port
    link, alive, port = asyncio.run(go())
    assert alive and port.n >= 2
    assert link.port_errors >= 2 and 'device unplugged' in link.status()['last_error']


def test_out_of_memory_in_the_link_loop_is_not_a_port_failure():
    from compat import unix_time

    async def go():
        meter = Meter(key=KEY)
        port = SimPort(meter)
        real = port.read
        state = {'n': 0}

        async def flaky(timeout_ms):
            state['n'] += 1
            if state['n'] in (3, 4):
                raise MemoryError('memory allocation failed, allocating 1024 bytes')
            return await real(timeout_ms)
        port.read = flaky
        link = Link(port, None, KEY)
        poller = Poller(link.submit, unix_time, bt23_ms=200, bt28_ms=200, fast=True)
        link.hooks.append(poller)
        task = asyncio.create_task(link.run())
        for _ in range(100):
            await asyncio.sleep(0.1)
            if poller.readings >= 2:
                break
        task.cancel()
        return link, poller
    link, poller = asyncio.run(go())
    assert link.mem_errors == 2 and link.port_errors == 0
    assert poller.readings >= 2
    assert link.status()['mem_errors'] == 2
