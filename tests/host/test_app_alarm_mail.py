# A usage alarm end to end: the simulator's power crosses the threshold, the app's alarm
# evaluation (beside the link) sends one e-mail through a real SMTP server on loopback; no
# mail while the power is below. The link keeps polling meanwhile.
import asyncio
import time

from aiosmtpd.controller import Controller

from apphost import write_config, MailHandler, RunningApp
from mqtt_broker import free_port


def test_power_alarm_mails_once_when_simulator_crosses_threshold(tmp_path):
    from tools.mepsim import Meter

    handler = MailHandler()
    port = free_port()
    ctl = Controller(handler, hostname='127.0.0.1', port=port)
    ctl.start()
    write_config(str(tmp_path), smtp_host='127.0.0.1', smtp_port=port, smtp_starttls=False,
                 smtp_from='meter@example.org', smtp_to='owner@example.org',
                 alarms=[{'kind': 'power_above', 'threshold': 3000, 'seconds': 2,
                          'hysteresis': 100, 'repeat_min': 10, 'enabled': True}])
    meter = Meter(key=b'ABCDEFGHIJKLMNOP')
    meter.model.set(p1=300, p2=200, p3=100, solar_w=0)
    out = {}

    async def readings(a, n, timeout=60):
        """Until n more readings were made (the alarms are evaluated on each)."""
        want = a.poller.readings + n
        t0 = time.monotonic()
        while a.poller.readings < want and time.monotonic() - t0 < timeout:
            await asyncio.sleep(0.05)
        assert a.poller.readings >= want, a.link.status()

    async def scenario():
        async with RunningApp(tmp_path, meter) as a:
            await readings(a, 10)                        # below the threshold: no mail
            out['below'] = len(handler.mails)
            out['below_stats'] = a.notifier.stats()
            out['below_p'] = a.poller.latest['p_in']
            meter.model.set(p1=2000, p2=1500, p3=1000)   # 4.5 kW, above 3 kW
            t0 = time.monotonic()
            while not handler.mails and time.monotonic() - t0 < 60:
                await asyncio.sleep(0.1)
            out['mail_s'] = time.monotonic() - t0
            out['at_mail'] = a.poller.readings
            await readings(a, 3)                         # still above, repeat is 10 min
            out['above'] = len(handler.mails)
            out['above_stats'] = a.notifier.stats()
            out['readings'] = a.poller.readings
            out['link'] = a.link.status()['link']

    try:
        asyncio.run(scenario())
    finally:
        ctl.stop()
    assert out['below_p'] < 3000
    assert out['below'] == 0
    assert out['below_stats']['queued'] == 0 and out['below_stats']['sent'] == 0, out
    # one mail; the readings above after it queued no repeat (checked when each is fed)
    assert out['above'] == 1, out
    assert out['above_stats']['queued'] == 0 and out['above_stats']['sent'] == 1, out
    print('mail %.1f s after the power went up (alarm after 2 s above)' % out['mail_s'])
    body = handler.mails[0].decode('utf-8', 'replace')
    assert 'owner@example.org' in body and '3000' in body
    assert out['link'] == 'ok' and out['readings'] >= out['at_mail'] + 3
