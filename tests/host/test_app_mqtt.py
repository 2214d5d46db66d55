# The whole app on the PC (link + poller + MQTT) against the simulator and a real mosquitto:
# state and retained messages, the broker going away and coming back while the meter raises
# an alert (answered in time), and the last will when the firmware process is killed.
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mqtt_broker import Broker, mosquitto_path
from apphost import write_config, Subscriber, RunningApp, ROOT

pytestmark = pytest.mark.skipif(not mosquitto_path(), reason='mosquitto is not installed '
                                '(./dev test installs it)')
BASE = 'mep/esp32-mep'


async def wait_for(cond, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


def test_app_publishes_and_survives_broker_restart_with_alert(tmp_path):
    from tools.mepsim import Meter

    broker = Broker()
    broker.start()
    sub = Subscriber(broker.port)
    write_config(str(tmp_path), mqtt_enabled=True, mqtt_host='127.0.0.1',
                 mqtt_port=broker.port)
    meter = Meter(key=b'ABCDEFGHIJKLMNOP')
    result = {}

    async def scenario():
        async with RunningApp(tmp_path, meter) as a:
            assert await wait_for(lambda: sub.find(BASE + '/state'), 20), 'no state message'
            assert await wait_for(lambda: sub.find(BASE + '/energy/e_in'), 10)
            # broker goes away; the meter raises an alert meanwhile
            broker.stop()
            readings = a.poller.readings
            await asyncio.sleep(0.5)
            at_alert = a.poller.readings
            meter.alert()
            assert await wait_for(lambda: meter.alerts_answered >= 1, 10), a.link.status()
            # answered before the polling went on: readings finished between the alert and
            # its answer (the one under way when it came, and one whose request crossed the alert on the line, at most); the latency in time is
            # the benchmarks' business (tools/bench_link.py), not a test's
            result['readings_before_answer'] = a.poller.readings - at_alert
            result['latency_ms'] = max(meter.alert_latency_ms)
            assert await wait_for(lambda: a.poller.readings > readings + 5, 10)
            result['drops_or_queue'] = a.mqtt.stats()
            # broker back: reconnect, fresh state
            n_state = len(sub.find(BASE + '/state'))
            broker.start()
            sub2 = Subscriber(broker.port)
            result['sub2'] = sub2
            assert await wait_for(lambda: a.mqtt.stats()['connected'], 90), a.mqtt.stats()
            assert await wait_for(lambda: sub2.find(BASE + '/state'), 20)
            result['status'] = await asyncio.to_thread(sub2.wait, BASE + '/status', None, 10)
            result['link'] = a.link.status()

    try:
        asyncio.run(scenario())
    finally:
        sub.close()
        if 'sub2' in result:
            result['sub2'].close()
        broker.close()
    assert result['readings_before_answer'] <= 2, result
    assert result['status'] and result['status'][-1][2] == b'online'
    assert result['link']['counters']['alerts_handled'] >= 1
    assert result['link']['counters']['alerts_failed'] == 0, result['link']
    assert result['link']['link'] == 'ok'


def test_last_will_when_firmware_is_killed(tmp_path):
    broker = Broker()
    broker.start()
    sub = Subscriber(broker.port)
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, 'tools', 'host_run.py'), '--http-port', '0',
         '--data-dir', str(tmp_path), '--quiet', '--mqtt', '127.0.0.1:%d' % broker.port],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        online = sub.wait(BASE + '/status', lambda m: m[2] == b'online', 30)
        assert online, 'the firmware never announced itself online'
        assert sub.wait(BASE + '/state', None, 20)
        os.killpg(proc.pid, signal.SIGKILL)        # firmware and its simulator, no goodbye
        proc.wait(10)
        offline = sub.wait(BASE + '/status', lambda m: m[2] == b'offline', 30)
        assert offline, 'no last will after the firmware was killed'
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        sub.close()
        broker.close()


def test_raw_frames_follow_the_setting(tmp_path):
    # B/raw carries every MEP frame while mqtt_raw is on; the link's per-frame hook is only
    # set then (a settings save switches it on and off without a restart)
    from tools.mepsim import Meter

    broker = Broker()
    broker.start()
    sub = Subscriber(broker.port)
    write_config(str(tmp_path), mqtt_enabled=True, mqtt_host='127.0.0.1',
                 mqtt_port=broker.port)
    meter = Meter(key=b'ABCDEFGHIJKLMNOP')
    seen = {}

    async def scenario():
        async with RunningApp(tmp_path, meter) as a:
            assert await wait_for(lambda: sub.find(BASE + '/state'), 20), 'no state message'
            seen['off'] = (a.link.engine.on_frame, len(sub.find(BASE + '/raw')))
            assert a.apply_config({'mqtt_raw': True}) == {}
            assert await wait_for(lambda: len(sub.find(BASE + '/raw')) >= 4, 20)
            seen['on'] = a.link.engine.on_frame is not None
            assert a.apply_config({'mqtt_raw': False}) == {}
            seen['off_again'] = a.link.engine.on_frame
            await asyncio.sleep(1.0)              # what was queued before has gone out
            n = len(sub.find(BASE + '/raw'))
            r0 = a.poller.readings
            assert await wait_for(lambda: a.poller.readings >= r0 + 2, 20)
            seen['after_off'] = len(sub.find(BASE + '/raw')) - n

    try:
        asyncio.run(scenario())
    finally:
        sub.close()
        broker.close()
    assert seen['off'] == (None, 0)
    assert seen['on'] is True
    assert seen['off_again'] is None and seen['after_off'] == 0
    msgs = sub.find(BASE + '/raw')
    dirs = {json.loads(m[2])['dir'] for m in msgs}
    assert dirs == {'tx', 'rx'}, dirs
