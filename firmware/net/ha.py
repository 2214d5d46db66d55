# What goes over MQTT, in what format: topics, the state JSON, Home Assistant discovery,
# and the command-topic parser. mqtt.py moves the bytes.
#
# Topics (B = <mqtt_prefix>/<mqtt_device_id or hostname>):
#   B/status        retained 'online' / 'offline' (the last will)
#   B/state         one JSON object per reading (at most one per mqtt_interval_s), flat SI
#                   values: {"time":1700000000,"seq":7,"p_in":1234.0,..,"pf":0.93}
#                   (pf: total power factor |P| / S, when S > 0)
#   B/units         retained {"p_in":"W","e_in":"Wh",..}: the unit of every state key, sent
#                   with the first reading after every (re)connect
#   B/<key>         opt-in (mqtt_per_value): plain number in the unit of unit(key)
#   B/energy/<key>  retained plain number in Wh / varh (e_in, e_out, eq_in, eq_out), sent
#                   when the value changes and after every (re)connect
#   B/link          retained {"state":"ok","last_error":..}: the meter link in words, sent
#                   when the words change and after every (re)connect
#   B/diag          once a minute {"link":"ok","uptime":s,"heap_free":bytes,"reset_cause":..,
#                   "rssi":dBm,"resends":n,"timeouts":n,"turn_p50":ms,"turn_p95":ms}
#                   (what is unknown is left out)
#   B/period        retained {"h":Wh,"d":Wh,"m":Wh,"h0":iso,"d0":iso,"m0":iso}: energy
#                   imported this hour / today / this month (local time) and when each
#                   period began; a period is left out until its start value is known
#   B/raw           opt-in (mqtt_raw): {"dir":"tx"|"rx","hex":"..","ms":ticks}
#   B/alarm         JSON usage-alarm events (alarms.py)
#   B/cmd           opt-in (mqtt_commands; RISK: anyone who may publish on the broker can
#                   make the module read from the meter): a MEP READ request as hex text
#                   ("30001c0200") or JSON {"hex":".."} / {"table":28[,"offset":o,"count":c]};
#                   writes and procedures are refused. Outcome JSON on B/cmd/result.
# Home Assistant: <ha_prefix>/sensor/mep_<utility serial>/<key>/config (retained), one
# device per meter, announced only once the utility serial is known (so the id never
# changes); re-sent when HA publishes 'online' on <ha_prefix>/status. The discovery
# configs are built by ha_discovery.py, which mqtt.py imports only while it sends them.
import json
from binascii import unhexlify
from compat import unload
from mep.reading import ENERGY_KEYS
from system.config import opt as _opt


_UNIT_PREFIX = (('eq_', 'varh'), ('e_', 'Wh'), ('q_', 'var'), ('pf_', ''), ('p_', 'W'),
                ('u_', 'V'), ('i_', 'A'))


def unit(k):
    """The unit of reading key k (the table of mep/reading.py), None for time/seq; derived from
    the key's prefix so the field table itself need not be loaded."""
    if k == 'freq':
        return 'Hz'
    if k == 's':
        return 'VA'
    for p, u in _UNIT_PREFIX:
        if k.startswith(p):
            return u
    return None


def num(v):
    return str(v) if isinstance(v, int) else repr(float(v))


def power_factor(r):
    """Total power factor |P| / S (0..1, 3 decimals), None when not computable."""
    s = r.get('s')
    pi = r.get('p_in')
    if not s or s <= 0 or pi is None:
        return None
    pf = abs(pi - (r.get('p_out') or 0)) / s
    return round(min(pf, 1.0), 3)


def state_payload(r):
    # a copy of the reading (without the energies not known for sure) with the power factor
    # added, dumped once: adding it to the dumped text instead made two more strings of the
    # message's size (on MicroPython each new string is copied and hashed whole)
    d = {k: v for k, v in r.items() if v is not None} if None in r.values() else r.copy()
    pf = power_factor(r)
    if pf is not None and 'pf' not in r:
        d['pf'] = pf
    return json.dumps(d)


def link_payload(status):
    st = status or {}
    return json.dumps({'state': str(st.get('link') or st.get('state') or 'unknown'),
                       'last_error': st.get('last_error')})


def diag_dict(status, sysinfo):
    """B/diag: module and link health; keys whose value is unknown are left out."""
    st = status or {}
    d = {}
    if st:
        d['link'] = str(st.get('link') or st.get('state') or 'unknown')
        c = st.get('counters') or {}
        if c.get('retransmits') is not None:
            d['resends'] = c['retransmits']
        if c.get('timeouts') is not None:
            d['timeouts'] = c['timeouts']
        ta = (st.get('diag') or {}).get('turnaround') or {}
        for k in ('p50', 'p95'):
            if ta.get(k) is not None:
                d['turn_' + k] = ta[k]
    for k in DIAG_SYS:
        v = (sysinfo or {}).get(k)
        if v is not None:
            d[k] = v
    return d


DIAG_SYS = ('uptime', 'heap_free', 'reset_cause', 'rssi')


def units_payload(r):
    """{key: unit} for the keys of reading r: sent once per connection (retained), so each
    state message stays small (on the ESP32 a big string needs a big contiguous block)."""
    d = {}
    for k in r:
        u = unit(k)
        if u is not None:
            d[k] = u
    return json.dumps(d)


def reading_messages(cfg, base, r, last_energy, period=None):
    """(topic, payload, retain) for one reading; last_energy: {key: value last sent}, empty
    after a (re)connect; period: periods.Periods.values() or None."""
    if not last_energy:
        yield base + '/units', units_payload(r), True
    yield base + '/state', state_payload(r), False
    if _opt(cfg, 'mqtt_per_value', False):
        for k in r:
            if r[k] is not None and unit(k) is not None:
                yield base + '/' + k, num(r[k]), False
    for k in ENERGY_KEYS:
        v = r.get(k)
        if v is not None and last_energy.get(k) != v:
            last_energy[k] = v
            yield base + '/energy/' + k, num(v), True
    if period and last_energy.get('period') != period:
        last_energy['period'] = period
        yield base + '/period', json.dumps(period), True


class Periods:
    """Energy imported this hour / today / this month (B/period). Per reading only compares
    the time with the bounds it holds; periods.py (with tz.py) is imported to compute new
    bounds when a period ends (or the time zone settings change) and dropped again."""

    def __init__(self, cfg, path=None):
        self.cfg = cfg
        self.path = path
        self.st = None          # {key: [start, end, e0 or None, iso start]}
        self._prev = None       # (time, e_in) of the previous reading
        self._zkey = None
        self._vals = None       # the settings dict zkey was taken from
        self._win = None        # (latest start, earliest end) of the periods in st

    def feed(self, r):
        t = r.get('time')
        e = r.get('e_in')
        if t is None or e is None or t < 1600000000:     # clock not set yet
            return
        t = int(t)
        cfg = self.cfg
        st = self.st
        vals = getattr(cfg, 'values', None)     # a Config's dict is replaced at each save
        if vals is not self._vals or not isinstance(vals, dict):
            self._vals = vals
            zkey = (_opt(cfg, 'timezone'), _opt(cfg, 'tz_offset_min'), _opt(cfg, 'dst'))
            if zkey != self._zkey:
                self._zkey = zkey
                if st is not None:
                    st = {}
                    self._win = None
        w = self._win
        if w is None or not (w[0] <= t < w[1]):
            st = self.st = self._roll(st, t, e)
            # the time all periods held hold together: the next roll is due outside it
            w = None
            if st is not None and len(st) >= 3:
                w = (max(v[0] for v in st.values()), min(v[1] for v in st.values()))
            self._win = w
        self._prev = (t, e)

    def _roll(self, st, t, e):
        import sys
        mine = [n for n in ('periods', 'system.tz') if n not in sys.modules]
        try:
            import periods
            return periods.roll(self.cfg, st, self.path, self._prev, t, e)
        finally:
            unload(*mine)

    def values(self, r):
        """{'h': Wh, 'h0': iso start, 'd': .., ..} for reading r: the known periods only;
        None if none is known."""
        t = r.get('time')
        e = r.get('e_in')
        if t is None or e is None or not self.st:
            return None
        out = None
        for k in ('h', 'd', 'm'):
            v = self.st.get(k)
            if v is None or v[2] is None or not (v[0] <= t < v[1]):
                continue
            if out is None:
                out = {}
            out[k] = int(round(e - v[2]))
            out[k + '0'] = v[3]
        return out


def parse_command(payload):
    """A MEP request from the command topic -> MSG bytes; ValueError unless a READ."""
    from mep.requests import parse_message, full_read, partial_read
    s = bytes(payload).decode().strip()
    msg = None
    if s.startswith('{'):
        d = json.loads(s)
        if 'hex' in d:
            s = str(d['hex'])
        elif 'offset' in d:
            msg = partial_read(int(d['table']), int(d['offset']), int(d['count']))
        else:
            msg = full_read(int(d['table']))
    if msg is None:
        try:
            msg = unhexlify(s.replace(' ', '').replace(':', ''))
        except Exception:
            raise ValueError('not a hex MEP request')
    if not parse_message(msg).is_read():
        raise ValueError('only READ requests (service 0x30/0x3F) are accepted')
    return bytes(msg)


# ---- Home Assistant discovery ----
def status_topic(cfg):
    return (_opt(cfg, 'ha_prefix') or 'homeassistant') + '/status'


def _id(sn):
    out = ''
    for ch in str(sn or '').strip():
        out += ch if (ch.isalpha() or ch.isdigit() or ch in '_-') else '_'
    return 'mep_' + out if out else ''


def node_id(info):
    """'mep_<utility serial>', '' while the utility serial is not known yet (the
    manufacturer serial is never used: the device id must not change later)."""
    return _id(info.get('serial')) if info else ''


def old_node_ids(info):
    """Ids earlier firmware versions announced this meter under (manufacturer serial)."""
    old = _id(info.get('mfg_serial')) if info else ''
    return [old] if old and old != node_id(info) else []
