# The firmware's own work per reading, without I/O and without the event loop: a MicroPython
# (or CPython) script that tools/bench_cpu.py runs on the unix port it measures.
#
# The link engine and the poller in fast mode against the meter simulator (tools/mepsim),
# coupled in virtual time: each request goes to the simulator, the time jumps to the end of
# its answer, and the answer is handed to the engine in one piece, as the link finds it after
# sleeping through it. A reading goes to the consumers the app wires (the ring and history,
# the alarms, and the real MQTT publisher: its periods and messages, each built into a
# PUBLISH packet as the publisher's step does, but not sent).
# The simulator's own work is timed apart and left out.
#
# With PACE_MS the process sleeps that long after each reading, as the app does while an
# answer comes in (a BT28 answer takes about 250 ms on the wire); the sleeps are left out of
# the times, so the work is the same and only what a sleep does to it (caches, a virtual CPU
# that resumes) shows.
#
# EXTRA_US (for testing the benchmark itself) adds a known workload to the consumers: a busy
# wait of that many microseconds on every measured reading, which the consumers' figure must
# show and the engine's must not.
#
#     micropython core_loop.py DATA_DIR READINGS [PACE_MS [EXTRA_US]]
#
# prints one line: CORE <readings> <us engine+poller> <us consumers> <us simulator> <us total>
import sys
import time

from mep.engine import Engine, Settings
from mep.poller import Poller
from mepsim import Meter
from storage.store import Store
from system.config import Config
from net import ha
from net.mqtt import Mqtt
from net.mqtt_wire import publish_packet
from alarms import Alarms

try:
    ticks_us, ticks_diff, sleep_ms = time.ticks_us, time.ticks_diff, time.sleep_ms
except AttributeError:                      # CPython
    def ticks_us():
        return time.perf_counter_ns() // 1000

    def ticks_diff(a, b):
        return a - b

    def sleep_ms(ms):
        time.sleep(ms / 1000)

KEY = b'ABCDEFGHIJKLMNOP'
EPOCH = 1763700000
WARM = 20                                   # readings before the measurement starts


def main(data_dir, n, pace_ms=0, extra_us=0):
    clock = [0]
    measuring = [False]

    def wall():
        return EPOCH + clock[0] // 1000

    cfg = Config(data_dir + '/config.json')
    cfg.values['mqtt_enabled'] = True
    cfg.values['mqtt_host'] = '127.0.0.1'      # never connected: its messages are built only
    meter = Meter(key=KEY, turnaround_ms=20, start_epoch=EPOCH)
    eng = Engine(KEY, Settings(), wall)
    poller = Poller(eng.submit, wall, 1000, 1000, True)
    store = Store(data_dir, 300, cfg=cfg)
    alarms = Alarms(cfg, energy_since=store.energy_since)
    mqtt = Mqtt(cfg, lambda: poller.info, log=None, periods=ha.Periods(cfg))
    spent = [0]                             # us in the consumers

    def consume(r):
        t0 = ticks_us()
        store.add(r)
        alarms.feed(r)
        mqtt.publish_reading(r)             # feeds the periods, queues the reading
        for topic, payload, retain in mqtt._messages(mqtt.q.pop()):
            publish_packet(topic, payload, retain)
        if extra_us and measuring[0]:
            while ticks_diff(ticks_us(), t0) < extra_us:
                pass
        spent[0] += ticks_diff(ticks_us(), t0)
    poller.on_reading(consume)

    bm = eng.s.byte_ms
    sim = 0
    t0 = None
    start_readings = 0
    t = 0
    slept = 0                               # us asleep between readings (paced runs)
    last = 0
    while poller.readings < WARM + n:
        if pace_ms and t0 is not None and poller.readings != last:
            s0 = ticks_us()
            sleep_ms(pace_ms)
            slept += ticks_diff(ticks_us(), s0)
        last = poller.readings
        if t0 is None and poller.readings >= WARM:
            spent[0] = sim = 0
            start_readings = poller.readings
            measuring[0] = True
            t0 = ticks_us()
        clock[0] = t
        poller.step(t)
        acts = eng.step(t)
        s0 = ticks_us()
        sent = False
        for kind, val in acts:
            if kind == 'write':
                meter.rx(val, t + int(len(val) * bm) + 1)
                sent = True
        nxt = meter.next_tx_ms()
        data = b''
        if nxt is not None:
            t = max(t, int(meter._wire_end) + 1)    # the whole answer is in the buffer
            data = meter.tx(t)
        sim += ticks_diff(ticks_us(), s0)
        if data:
            clock[0] = t
            eng.on_bytes(data, t)
        elif not sent:
            t += max(1, eng.wait_ms(t))
    total = ticks_diff(ticks_us(), t0) - slept
    done = poller.readings - start_readings
    if eng.c['jobs_failed'] or poller.errors:
        raise SystemExit('core loop: %d jobs failed, poller: %s'
                         % (eng.c['jobs_failed'], poller.last_error))
    core = total - sim - spent[0]
    print('CORE %d %d %d %d %d' % (done, core, spent[0], sim, total - sim))


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0,
         int(sys.argv[4]) if len(sys.argv) > 4 else 0)
