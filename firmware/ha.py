# What goes over MQTT, in what format: topics, the state JSON, Home Assistant discovery,
# and the command-topic parser. mqtt.py moves the bytes.
#
# Topics (B = <mqtt_prefix>/<mqtt_device_id or hostname>):
#   B/status        retained 'online' / 'offline' (the last will)
#   B/state         one JSON object per reading: flat SI values plus a units map,
#                   {"time":1700000000,"seq":7,"p_in":1234.0,..,"units":{"p_in":"W",..}}
#   B/<key>         opt-in (mqtt_per_value): plain number in the unit of reading.UNITS
#   B/energy/<key>  retained plain number in Wh / varh (e_in, e_out, eq_in, eq_out), sent
#                   when the value changes and after every (re)connect
#   B/link          retained JSON link status (coalesced: only the newest is sent)
#   B/raw           opt-in (mqtt_raw): {"dir":"tx"|"rx","hex":"..","ms":ticks}
#   B/alarm         JSON usage-alarm events (alarms.py)
#   B/cmd           opt-in (mqtt_commands; RISK: anyone who may publish on the broker can
#                   make the module read from the meter): a MEP READ request as hex text
#                   ("30001c0200") or JSON {"hex":".."} / {"table":28[,"offset":o,"count":c]};
#                   writes and procedures are refused. Outcome JSON on B/cmd/result.
# Home Assistant: <ha_prefix>/sensor/mep_<serial>/<key>/config (retained), one device
# per meter; re-sent when HA publishes 'online' on <ha_prefix>/status.
import json
from binascii import unhexlify

from mep.reading import UNITS

ENERGY_KEYS = ('e_in', 'e_out', 'eq_in', 'eq_out')

# key, name, device_class, unit, state_class
_PHASE = (('p_in_%s', '%s power import', 'power', 'W'),
          ('p_out_%s', '%s power export', 'power', 'W'),
          ('u_%s', '%s voltage', 'voltage', 'V'),
          ('i_%s', '%s current', 'current', 'A'),
          # HA's power_factor takes '%' or no unit; the reading has a ratio 0..1 -> no unit
          ('pf_%s', '%s power factor', 'power_factor', None))
SENSORS = (
    ('e_in', 'Energy import', 'energy', 'kWh', 'total_increasing'),
    ('e_out', 'Energy export', 'energy', 'kWh', 'total_increasing'),
    ('p_in', 'Power import', 'power', 'W', 'measurement'),
    ('p_out', 'Power export', 'power', 'W', 'measurement'),
    ('q_in', 'Reactive power import', 'reactive_power', 'var', 'measurement'),
    ('q_out', 'Reactive power export', 'reactive_power', 'var', 'measurement'),
    ('s', 'Apparent power', 'apparent_power', 'VA', 'measurement'),
    ('freq', 'Frequency', 'frequency', 'Hz', 'measurement'),
)


from config import opt as _opt


def num(v):
    return str(v) if isinstance(v, int) else repr(float(v))


def state_payload(r):
    d = {}
    units = {}
    for k in r:
        v = r[k]
        if v is None:
            continue
        d[k] = v
        if k in UNITS:
            units[k] = UNITS[k]
    d['units'] = units
    return json.dumps(d)


def reading_messages(cfg, base, r, last_energy):
    """(topic, payload, retain) for one reading; last_energy: {key: value last sent}."""
    yield base + '/state', state_payload(r), False
    if _opt(cfg, 'mqtt_per_value', False):
        for k in r:
            if k in UNITS and r[k] is not None:
                yield base + '/' + k, num(r[k]), False
    for k in ENERGY_KEYS:
        v = r.get(k)
        if v is not None and last_energy.get(k) != v:
            last_energy[k] = v
            yield base + '/energy/' + k, num(v), True


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


def node_id(info):
    """'mep_<utility serial>' (mfg serial as fallback), '' while unknown."""
    sn = ''
    if info:
        sn = str(info.get('serial') or '').strip() or str(info.get('mfg_serial') or '').strip()
    out = ''
    for ch in sn:
        out += ch if (ch.isalpha() or ch.isdigit() or ch in '_-') else '_'
    return 'mep_' + out if out else ''


def device(cfg, info):
    node = node_id(info)
    d = {'identifiers': [node],
         'name': 'Electricity meter ' + node[4:],
         'manufacturer': str(info.get('manufacturer') or '').strip() or 'NES',
         'model': str(info.get('model') or '').strip() or 'MEP meter',
         'serial_number': node[4:]}
    if info.get('fw'):
        d['sw_version'] = str(info['fw'])
    if info.get('hw'):
        d['hw_version'] = str(info['hw'])
    host = _opt(cfg, 'hostname')
    if host:
        d['configuration_url'] = 'http://%s.local/' % host
    return d


def sensors():
    """(key, name, device_class, unit, state_class) of every announced sensor."""
    for s in SENSORS:
        yield s
    for tpl in _PHASE:
        for ph in ('l1', 'l2', 'l3'):
            yield (tpl[0] % ph, tpl[1] % ph.upper(), tpl[2], tpl[3], 'measurement')


def config_topic(cfg, info, key):
    return '%s/sensor/%s/%s/config' % (_opt(cfg, 'ha_prefix') or 'homeassistant',
                                       node_id(info), key)


def sensor_config(cfg, info, base, s):
    key, name, dclass, unit, sclass = s
    node = node_id(info)
    c = {'name': name, 'unique_id': '%s_%s' % (node, key),
         'availability_topic': base + '/status',
         'payload_available': 'online', 'payload_not_available': 'offline',
         'device_class': dclass, 'state_class': sclass}
    if unit:
        c['unit_of_measurement'] = unit
    if key in ENERGY_KEYS:   # retained Wh counter -> kWh with 3 decimals
        c['state_topic'] = base + '/energy/' + key
        c['value_template'] = '{{ (value | float / 1000) | round(3) }}'
        c['suggested_display_precision'] = 3
    else:
        c['state_topic'] = base + '/state'
        c['value_template'] = '{{ value_json.%s }}' % key
    c['device'] = device(cfg, info)
    return c


def link_config(cfg, info, base):
    node = node_id(info)
    return {'name': 'Meter link', 'unique_id': node + '_link',
            'availability_topic': base + '/status',
            'state_topic': base + '/link', 'value_template': '{{ value_json.state }}',
            'entity_category': 'diagnostic', 'icon': 'mdi:connection',
            'device': device(cfg, info)}


def messages(cfg, info, base):
    """(topic, payload) of every discovery config, built one at a time (heap)."""
    for s in sensors():
        yield config_topic(cfg, info, s[0]), json.dumps(sensor_config(cfg, info, base, s))
    yield config_topic(cfg, info, 'link'), json.dumps(link_config(cfg, info, base))


def clear_messages(cfg, info):
    """Empty retained payloads: HA removes the entities, the broker forgets the configs."""
    for s in sensors():
        yield config_topic(cfg, info, s[0]), ''
    yield config_topic(cfg, info, 'link'), ''
