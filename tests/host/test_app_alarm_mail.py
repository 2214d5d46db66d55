# A usage alarm end to end: the simulator's power crosses the threshold, the app's alarm
# evaluation (beside the link) sends one e-mail through a real SMTP server on loopback; no
# mail while the power is below. The link keeps polling meanwhile.
import asyncio
import time

from aiosmtpd.controller import Controller

from apphost import write_config, RunningApp
from mqtt_broker import free_port


class Handler:
    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(envelope.content)
        return '250 OK'


def test_power_alarm_mails_once_when_simulator_crosses_threshold(tmp_path):
    from tools.mepsim import Meter

    handler = Handler()
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

    async def scenario():
        async with RunningApp(tmp_path, meter) as a:
            t0 = time.monotonic()
            while a.poller.readings < 10 and time.monotonic() - t0 < 30:
                await asyncio.sleep(0.1)
            await asyncio.sleep(4)                       # below the threshold: no mail
            out['below'] = len(handler.mails)
            out['below_p'] = a.poller.latest['p_in']
            meter.model.set(p1=2000, p2=1500, p3=1000)   # 4.5 kW, above 3 kW
            t0 = time.monotonic()
            while not handler.mails and time.monotonic() - t0 < 20:
                await asyncio.sleep(0.1)
            out['mail_s'] = time.monotonic() - t0
            await asyncio.sleep(5)                       # still above, repeat is 10 min
            out['above'] = len(handler.mails)
            out['readings'] = a.poller.readings
            out['link'] = a.link.status()['link']

    try:
        asyncio.run(scenario())
    finally:
        ctl.stop()
    assert out['below_p'] < 3000
    assert out['below'] == 0
    assert out['above'] == 1, out
    assert out['mail_s'] < 10
    body = handler.mails[0].decode('utf-8', 'replace')
    assert 'owner@example.org' in body and '3000' in body
    assert out['link'] == 'ok' and out['readings'] > 20
