# tools/bench_heap.py without a MicroPython unix port: it says SKIPPED and exits 0.
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_skips_without_micropython():
    r = subprocess.run([sys.executable, '-m', 'tools.bench_heap'], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert 'SKIPPED: no MicroPython unix port given (--micropython PATH)' in r.stdout
    assert 'PASS' not in r.stdout
