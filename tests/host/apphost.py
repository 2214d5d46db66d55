# Helpers to run the whole firmware app on the PC: a config in a temp dir, the simulator on
# a loopback TCP port, an MQTT subscriber (paho) that records what it receives, an SMTP
# server's handler (aiosmtpd) that keeps the mails it gets.
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_MBK = 'ABCDEFGHIJKLMNOPQRST'


class MailHandler:
    """aiosmtpd's handler: every mail's content in .mails."""

    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(envelope.content)
        return '250 OK'


def write_config(data_dir, **changes):
    from system.config import Config
    cfg = Config(os.path.join(data_dir, 'config.json'))
    cfg.load()
    base = {'board': 'host', 'mbk': DEMO_MBK, 'fast_mode': True}
    base.update(changes)
    errors = cfg.update(base)
    if errors:
        raise ValueError(errors)
    cfg.save()
    return cfg


class RunningApp:
    """The real App (firmware/app.py) on the PC against `meter` (a tools.mepsim Meter) served
    on a loopback port, without the supervisor: `async with RunningApp(data_dir, meter) as
    a:`. Leaving cancels the app's task and closes the simulator."""

    def __init__(self, data_dir, meter):
        self.data_dir = str(data_dir)
        self.meter = meter

    async def __aenter__(self):
        import asyncio
        import app
        from tools.mepsim.serve import serve_tcp
        self.server = await serve_tcp(self.meter, '127.0.0.1', 0)
        self.app = app.App('host', data_dir=self.data_dir,
                           mep_target='127.0.0.1:%d' % self.server.port, http_port=0,
                           log=lambda *x: None, supervise=False)
        self.task = asyncio.create_task(self.app.main())
        return self.app

    async def __aexit__(self, *exc):
        import asyncio
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, Exception):
            pass
        self.server.close()


class Subscriber:
    """A real MQTT client (paho) collecting (monotonic time, topic, payload, retained)."""

    def __init__(self, port, topic='#'):
        import paho.mqtt.client as mqtt
        self.msgs = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._on
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic)
        self.c.connect('127.0.0.1', port, 30)
        self.c.loop_start()

    def _on(self, client, userdata, msg):
        with self.lock:
            self.msgs.append((time.monotonic(), msg.topic, msg.payload, msg.retain))

    def find(self, topic, pred=None):
        with self.lock:
            return [m for m in self.msgs if m[1] == topic and (pred is None or pred(m))]

    def wait(self, topic, pred=None, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self.find(topic, pred)
            if got:
                return got
            time.sleep(0.05)
        return []

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def state_seq(m):
    return json.loads(m[2]).get('seq')
