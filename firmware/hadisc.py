# Home Assistant MQTT discovery: one retained config per sensor, one device per meter
# (topics and payload layout: see ha.py). Only needed while the configs go out after a
# (re)connect or when HA comes back online, so mqtt.py imports it then and drops it after.
import json
from config import opt as _opt
from ha import ENERGY_KEYS, node_id

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


def prefix(cfg):
    return _opt(cfg, 'ha_prefix') or 'homeassistant'


def config_topic(cfg, info, key, pfx=None):
    return '%s/sensor/%s/%s/config' % (pfx or prefix(cfg), node_id(info), key)


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


def clear_messages(cfg, info, pfx=None):
    """Empty retained payloads: HA removes the entities, the broker forgets the configs.
    pfx: the discovery prefix they were sent under (default: the configured one)."""
    for s in sensors():
        yield config_topic(cfg, info, s[0], pfx), ''
    yield config_topic(cfg, info, 'link', pfx), ''


def announce(cfg, info, base, old_pfx=None):
    """messages(); first clears the configs sent under an earlier prefix, if it changed."""
    if old_pfx and old_pfx != prefix(cfg):
        yield from clear_messages(cfg, info, old_pfx)
    yield from messages(cfg, info, base)
