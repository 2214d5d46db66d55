# WiFi (station with a bounded wait, access point fallback), mDNS hostname and the clock.
# The network module and RTC are handed in; nothing here blocks the event loop for more than
# a short bounded time, except the one DNS lookup of the NTP server, which is done once (or
# after a failure, at most every interval) and cached.
import time
import socket
import struct
from compat import ticks_ms, ticks_diff, sleep_ms, epoch_offset

NTP_DELTA = 2208988800  # seconds from 1900 (NTP) to 1970 (unix)
AUTH_WPA2 = 3
# network.WLAN.scan()'s security codes (ESP32 port), in words
SECURITY = 'open WEP WPA WPA2 WPA/WPA2 WPA2-Enterprise WPA3 WPA2/WPA3 WAPI OWE'.split()


def ap_ssid(network):
    """'MEP-' + the last three bytes of this board's AP MAC address."""
    mac = network.WLAN(network.AP_IF).config('mac')
    return 'MEP-%02X%02X%02X' % (mac[3], mac[4], mac[5])


class Wifi:
    def __init__(self, network, hostname=None):
        self.network = network
        if hostname and hasattr(network, 'hostname'):
            network.hostname(hostname)  # also the mDNS name: <hostname>.local
        self.sta = network.WLAN(network.STA_IF)
        self.mode = None

    async def connect(self, ssid, password, timeout_ms=20000):
        """Join `ssid`; give up after timeout_ms (returns False, station left idle)."""
        sta = self.sta
        sta.active(True)
        if sta.isconnected():
            self.mode = 'sta'
            return True
        sta.connect(ssid, password)  # returns at once; the driver connects in the background
        t0 = ticks_ms()
        while not sta.isconnected():
            if ticks_diff(ticks_ms(), t0) >= timeout_ms:
                try:
                    sta.disconnect()
                except OSError:
                    pass
                return False
            await sleep_ms(250)
        self.mode = 'sta'
        self.power_save()
        return True

    def power_save(self):
        """WiFi modem sleep between beacons: the meter's MEP supply gives about 1 W, and
        the radio awake all the time needs ~0.4 W (see hardware/kicad/README.md)."""
        pm = getattr(self.sta, 'PM_POWERSAVE', None)
        if pm is not None:
            try:
                self.sta.config(pm=pm)
            except (OSError, ValueError):
                pass

    def start_ap(self, ssid, password):
        """Open the fallback access point (WPA2, password >= 8 characters). Returns the SSID."""
        n = self.network
        if not password or len(password) < 8:
            raise ValueError('the AP password must have at least 8 characters')
        ssid = ssid or ap_ssid(n)
        ap = n.WLAN(n.AP_IF)
        ap.active(True)
        ap.config(essid=ssid, password=password, authmode=getattr(n, 'AUTH_WPA2_PSK', AUTH_WPA2))
        self.mode = 'ap'
        return ssid

    async def up(self, ssid, password, ap_password, timeout_ms=20000):
        """Station if it connects in time, else the access point. Returns 'sta' or 'ap'."""
        if ssid and await self.connect(ssid, password, timeout_ms):
            return 'sta'
        self.sta.active(False)
        self.start_ap(None, ap_password)
        return 'ap'

    def scan(self, limit=20):
        """Networks in reach, strongest first: [{'ssid', 'rssi', 'security'}], one entry per
        name, hidden ones left out. Blocks for about 2 s (the radio listens on every
        channel): only on request."""
        sta = self.sta
        was = sta.active()
        if not was:
            sta.active(True)
        try:
            found = sta.scan()      # [(ssid bytes, bssid, channel, RSSI, security, hidden)]
        finally:
            if not was:
                sta.active(False)
        best = {}
        for t in found:
            try:
                name = bytes(t[0]).decode()
            except UnicodeError:
                continue
            if not name or (len(t) > 5 and t[5]):
                continue
            if name not in best or t[3] > best[name][0]:
                best[name] = (t[3], t[4])
        out = []
        for name in best:
            rssi, sec = best[name]
            out.append({'ssid': name, 'rssi': rssi,
                        'security': SECURITY[sec] if 0 <= sec < len(SECURITY) else str(sec)})
        out.sort(key=lambda d: -d['rssi'])
        return out[:limit]

    def ip(self):
        n = self.network
        if self.mode == 'sta':
            return self.sta.ifconfig()[0]
        if self.mode == 'ap':
            return n.WLAN(n.AP_IF).ifconfig()[0]
        return None


class Ntp:
    """Sets the RTC from an NTP server: rarely (every interval_s) and with a bounded wait."""

    def __init__(self, rtc, host='pool.ntp.org', interval_s=6 * 3600, port=123):
        self.rtc = rtc
        self.host = host
        self.port = port
        self.interval_ms = interval_s * 1000
        self._addr = None
        self._last = None
        self.synced = False

    def due(self):
        return self._last is None or ticks_diff(ticks_ms(), self._last) >= self.interval_ms

    async def maybe_sync(self, timeout_ms=3000):
        if not self.due():
            return self.synced
        self._last = ticks_ms()
        try:
            return await self.sync(timeout_ms)
        except OSError as e:
            print('ntp:', repr(e))
            return False

    async def sync(self, timeout_ms=3000):
        if self._addr is None:  # blocking DNS: once, then cached
            self._addr = socket.getaddrinfo(self.host, self.port)[0][-1]
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            q = bytearray(48)
            q[0] = 0x1B  # LI 0, version 3, mode 3 (client)
            s.sendto(q, self._addr)
            t0 = ticks_ms()
            while True:
                try:
                    data = s.recv(48)
                    break
                except OSError:
                    if ticks_diff(ticks_ms(), t0) >= timeout_ms:
                        return False
                    await sleep_ms(50)
        finally:
            s.close()
        if len(data) < 48:
            return False
        t = struct.unpack('!I', data[40:44])[0] - NTP_DELTA
        if t < 1700000000:  # a server answering garbage
            return False
        tm = time.gmtime(t - epoch_offset())
        self.rtc.datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
        self.synced = True
        return True
