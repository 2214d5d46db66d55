# Usage alarms. Alarms.feed(reading) is a cheap synchronous check returning events (it
# never waits); Notifier.notify(events) publishes each event on MQTT (<base>/alarm) and
# queues a mail; Notifier.run() is the task that sends the mails (smtp.py, imported only
# while a mail goes out).
#
# cfg['alarms']: list of {kind, threshold, seconds, hysteresis, repeat_min, enabled}
#   power_above         p_in (W) > threshold for `seconds`
#   export_above        p_out (W) > threshold for `seconds`
#   energy_today_above  imported energy since local midnight (kWh) > threshold; the day
#                       begins at local midnight in the configured time zone. After a reboot the
#                       energy imported earlier today comes from the history on flash
#                       (energy_since, Store.energy_since), so a reboot does not reset it.
# An alarm switches on once the value stayed above the threshold for `seconds` (any
# reading at or below the threshold restarts the count) and off when the value falls to
# threshold - hysteresis or below. While on, the 'on' event repeats every repeat_min
# minutes (0: never). Mail goes out for 'on' events (first and repeats); 'off' events go
# to MQTT only.
# Event: {'alarm': index, 'kind', 'state': 'on'|'off', 'repeat': bool, 'value',
#         'threshold', 'unit', 'time': reading time, 'text'}
from compat import asyncio, ticks_ms, ticks_diff, unload
from system.config import mail_configured

KINDS = {'power_above': ('W', 'Power import'),
         'export_above': ('W', 'Power export'),
         'energy_today_above': ('kWh', 'Energy imported today')}


def _f(a, key, default=0):
    v = a.get(key)
    try:
        return float(v) if v is not None else default
    except (TypeError, ValueError):
        return default


def _day_span(cfg, t):
    """(start, end) in UTC of the local day holding t. periods/tz are loaded for this and
    dropped again (unless something else had them loaded)."""
    import sys
    mine = [n for n in ('periods', 'system.tz') if n not in sys.modules]
    try:
        from periods import zone
        z = zone(cfg)
        start = z.day_start(t)
        return (start, z.day_start(start + 93600))
    finally:
        unload(*mine)


class Alarms:
    def __init__(self, cfg, tz_offset_s=None, energy_since=None):
        """tz_offset_s: fixed offset for 'today' (default: the configured time zone);
        energy_since(t): Wh imported since unix time t, from the history (None: unknown)."""
        self.cfg = cfg
        self.tz = tz_offset_s
        self.energy_since = energy_since
        self._st = {}        # index -> [config key, active, since_ms, last_sent_ms]
        self._day = None
        self._e0 = None
        self._midnight = None  # set on the first day after boot: energy_since() still to ask
        self._span = None      # (start, end) of the current local day, UTC

    def _list(self):
        try:
            return self.cfg['alarms'] or []
        except KeyError:
            return []

    def energy_today(self, r):
        e = r.get('e_in')
        if e is None or self._e0 is None:
            return None
        if self._midnight is not None:
            # first use since boot: what today imported before the reboot, from the history
            # (asked only when an energy alarm needs it: it reads the minute files)
            t, self._midnight = self._midnight, None
            try:
                self._e0 = e - (self.energy_since(t) or 0)
            except Exception:
                pass
        return (e - self._e0) / 1000.0

    def _track_day(self, r):
        t = r.get('time')
        if t is None:
            return
        if self.tz is not None:
            day = (int(t) + self.tz) // 86400
            midnight = day * 86400 - self.tz
        else:
            # the configured time zone, daylight saving included; worked out once a day
            t = int(t)
            span = self._span
            if span is None or not span[0] <= t < span[1]:
                span = self._span = _day_span(self.cfg, t)
            midnight = day = span[0]
        if day != self._day and r.get('e_in') is not None:
            boot = self._day is None and self.energy_since is not None
            self._midnight = midnight if boot else None
            self._day = day
            self._e0 = r['e_in']

    def feed(self, r, now_ms=None):
        now = ticks_ms() if now_ms is None else now_ms
        self._track_day(r)
        events = []
        for i, a in enumerate(self._list()):
            kind = a.get('kind')
            if kind not in KINDS or not a.get('enabled', True):
                self._st.pop(i, None)
                continue
            if kind == 'power_above':
                v = r.get('p_in')
            elif kind == 'export_above':
                v = r.get('p_out')
            else:
                v = self.energy_today(r)
            if v is None:
                continue
            thr = _f(a, 'threshold')
            key = (kind, thr)
            st = self._st.get(i)
            if st is None or st[0] != key:
                st = self._st[i] = [key, False, None, 0]
            if not st[1]:
                if v > thr:
                    if st[2] is None:
                        st[2] = now
                    if ticks_diff(now, st[2]) >= int(_f(a, 'seconds') * 1000):
                        st[1] = True
                        st[3] = now
                        events.append(self._event(i, a, 'on', False, v, r))
                else:
                    st[2] = None
            elif v <= thr - _f(a, 'hysteresis'):
                st[1] = False
                st[2] = None
                events.append(self._event(i, a, 'off', False, v, r))
            else:
                rep = int(_f(a, 'repeat_min') * 60000)
                if rep > 0 and ticks_diff(now, st[3]) >= rep:
                    st[3] = now
                    events.append(self._event(i, a, 'on', True, v, r))
        return events

    def active(self):
        return [i for i in self._st if self._st[i][1]]

    def _event(self, i, a, state, repeat, v, r):
        unit, label = KINDS[a['kind']]
        thr = _f(a, 'threshold')
        v = round(v, 3)
        if state == 'on':
            text = '%s is %s %s, above the limit of %s %s' % (label, v, unit, thr, unit)
        else:
            text = '%s is back to %s %s (limit %s %s)' % (label, v, unit, thr, unit)
        return {'alarm': i, 'kind': a['kind'], 'state': state, 'repeat': repeat, 'value': v,
                'threshold': thr, 'unit': unit, 'time': r.get('time'), 'text': text}


class Mailer:
    """Alarm mails: send_alarm(event) queues 'on' events (bounded, oldest dropped) and
    never blocks; run() is the task that sends them one by one."""
    QMAX = 8

    def __init__(self, cfg, log=print, send=None):
        self.cfg = cfg
        self.log = log
        self.send = send
        self.q = []
        self.sent = self.failed = self.drops = 0
        self.last_error = None
        self._ev = asyncio.Event()
        self.running = False

    def send_alarm(self, e):
        if e.get('state') != 'on' or not mail_configured(self.cfg):
            return
        if len(self.q) >= self.QMAX:
            self.q.pop(0)
            self.drops += 1
        self.q.append(e)
        self._ev.set()

    def stats(self):
        return {'sent': self.sent, 'failed': self.failed, 'drops': self.drops,
                'queued': len(self.q), 'last_error': self.last_error}

    def stop(self):
        self.running = False
        self._ev.set()

    async def run(self):
        self.running = True
        while self.running:
            if not self.q:
                await self._ev.wait()
                self._ev.clear()
                continue
            e = self.q.pop(0)
            try:
                from net import smtp
                try:
                    await smtp.send_alarm_mail(self.cfg, e, self.send)
                finally:
                    smtp = None
                    unload('net.smtp')
                self.sent += 1
                self.last_error = None
            except Exception as ex:    # SmtpError, OSError; never contains the password
                self.failed += 1
                self.last_error = '%s: %s' % (type(ex).__name__, ex)
                self.log('alarm mail failed: %s' % self.last_error)


class Notifier:
    """MQTT + e-mail for alarm events; notify() never blocks, run() is the mail task."""

    def __init__(self, cfg, mqtt=None, log=print, send=None):
        self.mqtt = mqtt
        self.mailer = Mailer(cfg, log=log, send=send)
        self.QMAX = self.mailer.QMAX

    def notify(self, events):
        for e in events:
            if self.mqtt is not None:
                self.mqtt.publish_alarm(e)
            self.mailer.send_alarm(e)

    def stats(self):
        return self.mailer.stats()

    def stop(self):
        self.mailer.stop()

    async def run(self):
        await self.mailer.run()
