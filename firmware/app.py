# The app: builds the objects, starts the tasks, supervises them. Wiring only.
# The same file runs on the ESP32 and, with the 'host' board profile, on a PC against the
# meter simulator (tools/host_run.py).
import time
from compat import asyncio, sleep_ms, unix_time, mem_free, mem_alloc, ticks_ms, epoch_offset, \
    unload
from drivers import boards
from system.config import Config
from storage.store import Store
from mep.digest import key_from_mbk
from mep.engine import Settings
from drivers.link import Link, Subscription
from mep.poller import Poller
from mep import tables

# the protocol core has no compat: it drops its start-up table decoders through this
tables.release = unload

NAME = 'Open MEP firmware'


def join(d, name):
    return name if d in ('', '.') else (d.rstrip('/') + '/' + name)


_CONSOLE = ('p_in', 'p_out', 'u_l1', 'u_l2', 'u_l3', 'i_l1', 'i_l2', 'i_l3', 'freq')


class App:
    def __init__(self, board=None, data_dir='/', mep_target=None, http_port=None, console=None,
                 log=print, supervise=True, heap_report_ms=0, http_host='0.0.0.0',
                 mep_port=None, pw_iterations=None):
        # mep_port: an open MEP port to use instead of the board's (the tests' in-process meter
        # simulator); pw_iterations: PBKDF2 rounds for new passwords (None: the config default)
        self.log = log
        self.heap_report_ms = heap_report_ms
        self.data_dir = data_dir
        self.http_host = http_host
        self.started = unix_time()
        from system.version import running
        self.release = running()        # release.py: what tools/flash.py or a bundle wrote
        unload('system.version')
        self._t0 = ticks_ms()
        self.reboot_requested = False
        self.web_task = None
        self.web_served = 0             # requests the web UI answered (web/server.py)
        if pw_iterations:
            self.config = Config(join(data_dir, 'config.json'), pw_iterations)
        else:
            self.config = Config(join(data_dir, 'config.json'))
        self.config.load()
        self.board = boards.get(board or self.config['board'])
        self.chip = self.board['chip']
        # http_port, console: None for the board's default (80 and off on the device; on a PC,
        # e.g. the virtual board of tools/vboard.py, what hw_host.defaults() says)
        if self.chip == 'host':
            import hw_host as hw
            d = hw.defaults()
            port = mep_port
            if port is None:
                port = hw.open_port(self.board, mep_target or d['mep_target'])
        else:
            from drivers import esp32 as hw
            d = {'http_port': 80, 'console': False}
            port = mep_port
            if port is None:
                port = hw.open_port(self.board)
        self.http_port = d['http_port'] if http_port is None else http_port
        self.console = d['console'] if console is None else console
        self.hw = hw
        self.lines = hw.Lines(self.board)
        self.reset_cause = hw.reset_cause()
        self._key_warning = None
        self.link = Link(port, self.lines, self._key(), Settings(), unix_time, log)
        c = self.config
        self.poller = Poller(self.link.submit, unix_time, c['poll_bt23_ms'], c['poll_bt28_ms'],
                             c['fast_mode'], log)
        self.link.hooks.append(self.poller)
        # 12 bytes a slot (p_in, p_out): 15 minutes at 1 s (10.8 KB) on the ESP32-C3 and -S3
        # and on the PC under CPython, 5 minutes (3.6 KB) on the ESP32-WROOM; the MicroPython
        # unix port keeps the WROOM size (its heap is the point)
        big = self.chip in ('esp32c3', 'esp32s3') or (self.chip == 'host' and mem_free() is None)
        self.store = Store(data_dir, 900 if big else 300, cfg=self.config)
        self._store_warning = self.store.load()
        self.poller.on_reading(self.store.add)
        self.mqtt = None
        self.alarms = None
        self.notifier = None
        self.supervisor = None
        self._optional()
        if supervise:
            from system.supervisor import Supervisor
            from storage.fs import Fs
            self.supervisor = Supervisor(hw.Watchdog(), Fs(data_dir),
                                         reset_cause=self.reset_cause, proven=self.proven,
                                         good_after_ms=d.get('good_after_ms'),
                                         prove_within_ms=d.get('prove_within_ms'))

    def _key(self):
        mbk = self.config['mbk']
        if not mbk:
            return None
        try:
            return key_from_mbk(mbk)
        except ValueError as e:
            self._key_warning = 'MBK not usable: %s' % e
            return None

    def _optional(self):
        """MQTT, alarms and e-mail: the app runs without them if a module is missing."""
        try:
            from net.mqtt import Mqtt
            from net.ha import Periods
            self.mqtt = Mqtt(self.config, lambda: self.poller.info, log=self.log,
                             on_command=self._command, sys_fn=self._mqtt_sys,
                             periods=Periods(self.config, join(self.data_dir, 'periods.json')))
            self.poller.on_reading(self.mqtt.publish_reading)
            self._raw_hook()
        except ImportError as e:
            self.log('mqtt unavailable: %r' % (e,))
        try:
            from alarms import Alarms, Notifier
            self.alarms = Alarms(self.config, energy_since=self.store.energy_since)
            self.notifier = Notifier(self.config, self.mqtt, self.log)
            self.poller.on_reading(self._alarm_feed)
        except ImportError:
            pass

    def _mqtt_sys(self):
        """Module health for the Home Assistant diagnostics (mqtt.py)."""
        d = {'uptime': (ticks_ms() - self._t0) // 1000, 'heap_free': mem_free(),
             'reset_cause': self.reset_cause}
        wifi = getattr(self, 'wifi', None)
        if wifi is not None:
            try:
                if wifi.sta.isconnected():
                    d['rssi'] = wifi.sta.status('rssi')
                d['url'] = 'http://%s/' % wifi.ip()
            except Exception:
                pass
        elif self.chip == 'host' and self.http_port:
            d['url'] = 'http://127.0.0.1:%d/' % self.http_port
        return d

    def proven(self):
        """None once this release has proven itself (the supervisor then calls the proven-good
        hook): its web UI answered a request and it read the meter (or no MBK is set); else
        what it still lacks."""
        missing = []
        if self.http_port and not self.web_served:
            missing.append('the web UI has not answered')
        if self.config['mbk'] and not self.poller.readings:
            missing.append('no reading from the meter')
        return ', '.join(missing) or None

    def _raw_hook(self):
        # every frame passes the hook: it is set only while raw frames are published
        self.link.engine.on_frame = self._raw if self.config['mqtt_raw'] else None

    def _raw(self, direction, data):
        self.mqtt.raw(direction, ''.join('%02x' % b for b in data))

    def _command(self, message):
        from mep.jobs import Job, PRIO_USER
        return self.link.submit(Job(message, PRIO_USER))

    def _alarm_feed(self, reading):
        events = self.alarms.feed(reading)
        if events:
            self.notifier.notify(events)      # queues only; mail goes out in its own task

    # --- for the web UI ---------------------------------------------------------------------

    def version(self):
        return self.release

    def warnings(self):
        out = []
        for w in (self.config.warning, self._key_warning, self._store_warning):
            if w:
                out.append(w)
        if not self.config['mbk']:
            out.append('No MBK configured: set the MEP Basic Key to start reading the meter.')
        return out

    def sysinfo(self):
        d = {'version': self.release, 'uptime_s': (ticks_ms() - self._t0) // 1000,
             'heap_free': mem_free(), 'heap_alloc': mem_alloc(),
             'reset_cause': self.reset_cause, 'board': self.board['name'], 'chip': self.chip}
        if self.supervisor is not None:
            d.update(self.supervisor.mem_info())
            d['last_reboot'] = self.supervisor.last_reboot
        d['time'] = unix_time()
        ntp = getattr(self, 'ntp', None)
        if self.chip == 'host':
            d['clock'] = 'computer clock'
        elif ntp is not None and ntp.synced:
            d['clock'] = 'NTP (%s)' % ntp.host
        else:
            d['clock'] = 'not synchronised yet'
        wifi = getattr(self, 'wifi', None)
        if wifi is not None:
            w = {'mode': getattr(wifi, 'mode', None), 'ssid': self.config['wifi_ssid']}
            try:
                w['ip'] = wifi.ip()
                if wifi.sta.isconnected():
                    w['rssi'] = wifi.sta.status('rssi')
            except Exception:
                pass
            d['wifi'] = w
        return d

    def apply_config(self, changes, clear=()):
        """Validate and save `changes` ({key: value}) and clear the secrets named in `clear`,
        all or nothing; returns {key: message} when refused. Only what changed is redone: a
        new MBK resets the link's key state, MQTT reconnects (and re-announces) only when one
        of its settings changed."""
        vals = self.config.values
        old = {}
        for k in changes:
            old[k] = vals.get(k)
        for k in clear:
            old[k] = vals.get(k)
        errors = self.config.update(changes, clear=clear)
        if errors:
            return errors
        self.config.save()
        vals = self.config.values       # update() replaces the dict (all or nothing)
        changed = [k for k in old if vals.get(k) != old[k]]
        c = self.config
        if 'mbk' in changed:
            self._key_warning = None
            self.link.engine.set_key(self._key())
        self.poller.configure(c['poll_bt23_ms'], c['poll_bt28_ms'], c['fast_mode'])
        if self.mqtt is not None:
            if 'mqtt_raw' in changed:
                self._raw_hook()
            for k in changed:
                if k[:5] == 'mqtt_' or k[:3] == 'ha_' or k in ('hostname', 'device_name'):
                    self.mqtt.reconfigure()
                    break
        return {}

    def reboot(self):
        self.reboot_requested = True

    # --- tasks ------------------------------------------------------------------------------

    async def _housekeeping(self):
        """Saves history (at most once a minute), publishes link status, feeds the
        supervisor's view of the link. Never touches the UART."""
        last_loops = -1
        while True:
            try:
                await self.store.maybe_save_async(unix_time())   # yields while writing
                if self.mqtt is not None:
                    self.mqtt.publish_link(self.link.status())
                sup = self.supervisor
                if sup is not None:
                    if self.link.loops != last_loops:
                        last_loops = self.link.loops
                        sup.alive('link')
                    if self.web_task is not None and not self.web_task.done():
                        sup.alive('web')
                    if self.mqtt is not None and getattr(self.mqtt, 'running', False):
                        sup.alive('mqtt')
                    if not sup.good and not self.web_served and self.web_task is not None \
                            and getattr(self, 'web_app', None) is not None:
                        from web import selftest     # until the web UI has answered once
                        if await selftest.served(self):
                            unload('web.selftest')
                if self.reboot_requested and self.chip != 'host':
                    self.store.save()
                    await sleep_ms(500)
                    import machine
                    machine.reset()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log('housekeeping: %r' % (e,))
            await sleep_ms(2000)

    async def _network(self):
        """On the board: join WiFi (or open the access point with the per-device password),
        then keep the clock right with NTP, rarely and with a bounded wait."""
        import network
        import machine
        from drivers.wifi import Wifi, Ntp
        c = self.config
        wifi = Wifi(network, c['hostname'])
        self.wifi = wifi
        mode = await wifi.up(c['wifi_ssid'], c['wifi_password'], c['ap_password'])
        self.log('network: %s %s' % (mode, wifi.ip()))
        ntp = self.ntp = Ntp(machine.RTC(), c['ntp_server'])
        while True:
            try:
                if mode == 'sta':
                    await ntp.maybe_sync()
                    if not wifi.sta.isconnected():
                        mode = await wifi.up(c['wifi_ssid'], c['wifi_password'],
                                             c['ap_password'])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.log('network: %r' % (e,))
            await sleep_ms(60000)

    async def _console(self):
        # a short BT28 leaves values out of a reading: the console shows 0 for them
        sub = Subscription()
        self.poller.on_reading(sub)
        while True:
            r = await sub.get()
            st = self.link.status()
            tm = time.gmtime(r['time'] - epoch_offset())
            self.log('%02d:%02d:%02dZ  P %5d W import %5d W export  U %.1f/%.1f/%.1f V  I %.2f/%.2f/%.2f A'
                     '  %.3f Hz  E %.3f kWh  [%s, seq %d]'
                     % ((tm[3], tm[4], tm[5]) + tuple(r.get(k) or 0 for k in _CONSOLE) +
                        ((r['e_in'] or 0) / 1000, st['link'], st['seq'])))

    async def _heap_report(self):
        """Opt-in (heap_report_ms): one 'HEAP free=.. alloc=.. readings=..' line per period,
        after a collection, for tools/bench_heap.py."""
        import gc
        import sys
        n = 0
        while True:
            gc.collect()
            self.log('HEAP free=%s alloc=%s readings=%d'
                     % (mem_free(), mem_alloc(), self.poller.readings))
            if n % 20 == 0:     # which modules are resident (their bytecode is in the heap)
                self.log('MODULES ' + ' '.join(sorted(sys.modules)))
            n += 1
            await sleep_ms(self.heap_report_ms)

    async def _web(self):
        try:
            from web import server
        except ImportError as e:
            self.log('web UI unavailable: %r' % (e,))
            return
        self.log('web UI on port %d' % self.http_port)
        await server.serve(self, host=self.http_host, port=self.http_port)

    async def main(self):
        tasks = [asyncio.create_task(self.link.run()),
                 asyncio.create_task(self._housekeeping())]
        if self.console:
            tasks.append(asyncio.create_task(self._console()))
        if self.chip != 'host':
            tasks.append(asyncio.create_task(self._network()))
        if self.heap_report_ms:
            tasks.append(asyncio.create_task(self._heap_report()))
        if self.mqtt is not None:
            tasks.append(asyncio.create_task(self.mqtt.run()))
        if self.notifier is not None:
            tasks.append(asyncio.create_task(self.notifier.run()))
        if self.supervisor is not None:
            if self.mqtt is None or not self.mqtt.enabled():
                self.supervisor.unwatch('mqtt')
            tasks.append(asyncio.create_task(self.supervisor.run()))
        self.web_task = None
        if self.http_port:
            self.web_task = asyncio.create_task(self._web())
            tasks.append(self.web_task)
        elif self.supervisor is not None:
            self.supervisor.unwatch('web')
        self.tasks = tasks
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            self.store.save()


def run(board=None, **opts):
    app = App(board, **opts)
    asyncio.run(app.main())


def device_main():
    """main.py on the board runs this; it handles whatever the app raises (main.py is never
    replaced by an update: it counts the failed start and resets the board)."""
    run()
