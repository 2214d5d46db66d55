# Shared set-up of the web tests: an app context made of real objects (Config in a temp dir,
# Store, Link + Poller against the in-process meter simulator).
import asyncio
import contextlib
import os
import sys

from compat import unix_time, mem_free, mem_alloc
from config import Config
from store import Store
from mep.link import Link
from mep.poller import Poller
from mep.digest import key_from_mbk
from tools.mepsim.meter import Meter
from tools.mepsim.serve import SimPort

MBK = 'Q7#mK9pL2vX5nB8zR4tW'            # 20 printable ASCII characters
PASSWORD = 'correct horse battery'
SECRETS = {'wifi_password': 'wifi-SECRET-pass-123', 'mbk': MBK,
           'mqtt_password': 'mqtt-SECRET-pw-456', 'smtp_password': 'smtp-SECRET-pw-789',
           'ota_key': 'a5' * 32}


class Ctx:
    """The app object the web app expects (see firmware/app.py), built from real parts."""

    def __init__(self, data_dir, password=PASSWORD, public=False, secrets=True, fast=True):
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.config = Config(os.path.join(data_dir, 'config.json'), pw_iterations=20)
        self.config.load()
        ch = {'public_dashboard': public, 'hostname': 'mep-test',
              'web_hosts': '127.0.0.1, localhost'}
        if secrets:
            ch.update(SECRETS)
        errs = self.config.update(ch)
        if errs:
            raise RuntimeError(errs)
        if password:
            self.config.set_password(password)
        self.config.save()
        self.board = {'name': 'host'}
        self.version = '0.0.1-test'
        self.chip = 'esp32'
        self.mqtt = None
        self.logs = []
        self.reboots = 0
        self.store = Store(data_dir, ring_capacity=900, history_sizes=(60, 48, 40))
        self.meter = Meter(key=MBK)
        self.fast = fast
        self.link = None
        self.poller = None
        self._tasks = []

    def start_link(self):
        """Create the link and poller (needs a running event loop) and run the link."""
        self.port = SimPort(self.meter)
        self.link = Link(self.port, key=key_from_mbk(self.config['mbk']), wall=unix_time,
                         log=self.log)
        self.poller = Poller(self.link.submit, unix_time, bt23_ms=1000, bt28_ms=1000,
                             fast=self.fast, log=self.log)
        self.link.hooks.append(self.poller)
        self.poller.on_reading(self.store.add)
        self._tasks.append(asyncio.get_running_loop().create_task(self.link.run()))
        return self

    async def wait_reading(self, timeout=20):
        t = 0
        while self.poller.latest is None and t < timeout:
            await asyncio.sleep(0.1)
            t += 0.1
        return self.poller.latest

    def stop(self):
        for t in self._tasks:
            t.cancel()
        if self.link is not None:
            self.port.close()

    def sysinfo(self):
        return {'heap_free': mem_free(), 'heap_alloc': mem_alloc(), 'largest_free': None,
                'uptime_s': 12, 'reset_cause': 'power on'}

    def warnings(self):
        return [w for w in (self.config.warning, self.store.warning) if w]

    def apply_config(self, changes):
        errs = self.config.update(changes)
        if not errs:
            self.config.save()
            if self.poller is not None:
                self.poller.configure(self.config['poll_bt23_ms'], self.config['poll_bt28_ms'],
                                      self.config['fast_mode'])
        return errs

    def reboot(self):
        self.reboots += 1

    def log(self, msg):
        self.logs.append(msg)


def make_bundle(ctx, tmpdir, files=None, key=None, device='esp32', version='9.9.9'):
    """A signed bundle (bytes) for ctx's OTA key, made with tools/bundle.py."""
    import binascii
    from tools import bundle
    src = os.path.join(tmpdir, 'bsrc')
    os.makedirs(src, exist_ok=True)
    files = files or {'web/static/hello.txt': b'hello world\n' * 50, 'extra.py': b'x = 1\n'}
    pairs = []
    for rel, data in files.items():
        p = os.path.join(src, rel.replace('/', '_'))
        with open(p, 'wb') as f:
            f.write(data)
        pairs.append((rel, p))
    out = os.path.join(tmpdir, 'b.bin')
    k = binascii.unhexlify(key or ctx.config['ota_key'])
    bundle.write_bundle(out, pairs, k, device, version)
    with open(out, 'rb') as f:
        return f.read()


@contextlib.contextmanager
def unloading():
    """Page modules dropped after each request, as on MicroPython (compat.UNLOAD);
    the modules of web.server.DROP that were loaded before are put back afterwards."""
    import compat
    from web import server
    saved = {n: sys.modules[n] for n in server.DROP if n in sys.modules}
    old = compat.UNLOAD
    compat.UNLOAD = True
    try:
        yield server
    finally:
        compat.UNLOAD = old
        for name, mod in saved.items():
            sys.modules[name] = mod
            pkg, _, leaf = name.rpartition('.')
            if pkg in sys.modules:
                setattr(sys.modules[pkg], leaf, mod)
