# Shared set-up of the web tests: the real App (firmware/app.py, 'host' board) with its config in
# a temp dir and its MEP link on the in-process meter simulator (tools/mepsim/serve.py SimPort).
import asyncio
import contextlib
import os
import sys

from system.config import Config
from tools.mepsim.meter import Meter
from tools.mepsim.serve import SimPort

MBK = 'Q7#mK9pL2vX5nB8zR4tW'            # 20 printable ASCII characters
PASSWORD = 'correct horse battery'
SECRETS = {'wifi_password': 'wifi-SECRET-pass-123', 'mbk': MBK,
           'mqtt_password': 'mqtt-SECRET-pw-456', 'smtp_password': 'smtp-SECRET-pw-789',
           'ota_key': 'a5' * 32}
PW_ITERATIONS = 20                       # PBKDF2 rounds of the tests' passwords (fast)


def write_test_config(data_dir, password=PASSWORD, public=False, secrets=True, fast=True):
    """config.json in data_dir as the web tests start from."""
    os.makedirs(data_dir, exist_ok=True)
    cfg = Config(os.path.join(data_dir, 'config.json'), pw_iterations=PW_ITERATIONS)
    cfg.load()
    ch = {'board': 'host', 'public_dashboard': public, 'hostname': 'mep-test',
          'web_hosts': '127.0.0.1, localhost', 'fast_mode': fast}
    if secrets:
        ch.update(SECRETS)
    errs = cfg.update(ch)
    if errs:
        raise RuntimeError(errs)
    if password:
        errs = cfg.set_password(password)
        if errs:
            raise RuntimeError(errs)
    cfg.save()


class AppOnSim:
    """The real App on the in-process meter simulator, plus what only a test holds: the
    simulated meter, the SimPort, the log lines the App wrote, the task running App.main().
    Create it inside a running event loop (SimPort needs one)."""

    def __init__(self, data_dir, http_port=0, meter=None, **cfg):
        import app as app_mod
        write_test_config(data_dir, **cfg)
        self.meter = meter or Meter(key=MBK)
        self.logs = []
        self.port = SimPort(self.meter)
        self.app = app_mod.App('host', data_dir=data_dir, mep_port=self.port,
                               http_port=http_port, http_host='127.0.0.1', console=False,
                               log=self.logs.append, supervise=False,
                               pw_iterations=PW_ITERATIONS)
        self.task = None

    def start(self):
        """App.main() in this event loop: the link, housekeeping, MQTT, notifier tasks and,
        with an http_port, the web server."""
        self.task = asyncio.get_running_loop().create_task(self.app.main())
        return self

    async def wait_reading(self, timeout=20):
        t = 0
        while self.app.poller.latest is None and t < timeout:
            await asyncio.sleep(0.1)
            t += 0.1
        return self.app.poller.latest

    def stop(self):
        if self.task is not None:
            self.task.cancel()
        self.port.close()


def make_bundle(app, tmpdir, files=None, key=None, device='mep', version='9.9.9'):
    """A signed bundle (bytes) for the App's OTA key, made with tools/bundle.py ('mep': for
    any chip, the PC's 'host' included)."""
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
    k = binascii.unhexlify(key or app.config['ota_key'])
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
