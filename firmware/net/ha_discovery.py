# Home Assistant MQTT discovery: one retained config per sensor, one device per meter
# (topics and payload layout: see ha.py). Only needed while the configs go out after a
# (re)connect or when HA comes back online, so mqtt.py imports it then and drops it after.
#
# Live values (B/state) carry expire_after: when readings stop (meter link lost) Home
# Assistant shows them unavailable instead of the last value. Energy counters (retained
# B/energy/*) and the time of the last reading stay: they are true when shown.
import json
from system.config import opt as _opt
from net.ha import node_id
from mep.reading import rows, KEY, UNIT, LABEL, HA, ENERGY_UNITS

# The reading's values (B/state) and energy counters (retained Wh / varh on B/energy/<key>,
# shown in k-units) are announced as the table of mep/reading.py describes them (column ha). The
# total power factor is not in the reading: the state message adds it (ha.power_factor).
# HA's power_factor takes '%' or no unit; the reading has a ratio 0..1, so no unit.
_PF = ('pf', 'Power factor', 'power_factor', None, 'measurement', 'live')
# B/period: energy imported in the current local hour / day / month (resets at its start)
PERIOD = (('h', 'Energy this hour'), ('d', 'Energy today'), ('m', 'Energy this month'))
# B/diag (entity_category diagnostic); key, name, device_class, unit, state_class
DIAG = (
    ('link', 'Meter link', None, None, None),
    ('rssi', 'WiFi signal', 'signal_strength', 'dBm', 'measurement'),
    ('uptime', 'Uptime', 'duration', 's', 'total_increasing'),
    ('heap_free', 'Free memory', 'data_size', 'B', 'measurement'),
    ('reset_cause', 'Reset cause', None, None, None),
    ('resends', 'Meter link resends', None, None, 'total_increasing'),
    ('timeouts', 'Meter link time-outs', None, None, 'total_increasing'),
    ('turn_p50', 'Meter turnaround (median)', 'duration', 'ms', 'measurement'),
    ('turn_p95', 'Meter turnaround (95th percentile)', 'duration', 'ms', 'measurement'),
)
DIAG_MS = 60000


def _tpl(key, expr=None):
    """value_json.key (or expr of it); 'None' (unknown) when the key is missing."""
    return '{{ %s if value_json.%s is defined else None }}' % (expr or 'value_json.' + key, key)


def expire_after(cfg):
    """Seconds without a reading before the live values go unavailable: three reading (or
    publish) intervals, at least 30 s."""
    ms = max(int(_opt(cfg, 'poll_bt28_ms', 1000) or 1000),
             int(_opt(cfg, 'mqtt_interval_s', 0) or 0) * 1000)
    return max(30, (3 * ms + 999) // 1000)


def device(cfg, info, sysinfo=None):
    node = node_id(info)
    d = {'identifiers': [node],
         'name': str(_opt(cfg, 'device_name') or '').strip() or
         'Electricity meter ' + node[4:],
         'manufacturer': str(info.get('manufacturer') or '').strip() or 'NES',
         'model': str(info.get('model') or '').strip() or 'MEP meter',
         'serial_number': node[4:]}
    if info.get('fw'):
        d['sw_version'] = str(info['fw'])
    if info.get('hw'):
        d['hw_version'] = str(info['hw'])
    url = (sysinfo or {}).get('url')
    if not url:
        host = _opt(cfg, 'hostname')
        url = 'http://%s.local/' % host if host else None
    if url:
        d['configuration_url'] = url
    return d


def sensors(diag_keys=None):
    """(key, name, device_class, unit, state_class, kind) of every announced sensor; kind:
    'live', 'energy', 'period', 'diag', 'time'. diag_keys: the B/diag keys known now
    (a diagnostic nobody can supply, e.g. RSSI on a PC, is not announced)."""
    for f in rows():
        if f[HA] is not None and f[UNIT] not in ENERGY_UNITS:
            yield (f[KEY], f[LABEL], f[HA] or None, f[UNIT] or None, 'measurement', 'live')
            if f[KEY] == 's':
                yield _PF
    for f in rows():
        if f[HA] is not None and f[UNIT] in ENERGY_UNITS:
            yield (f[KEY], f[LABEL], f[HA] or None, 'k' + f[UNIT], 'total_increasing', 'energy')
    for k, name in PERIOD:
        yield ('e_' + k, name, 'energy', 'kWh', 'total', 'period')
    yield ('last_reading', 'Last reading', 'timestamp', None, None, 'time')
    for s in DIAG:
        if diag_keys is None or s[0] in diag_keys or s[0] == 'link':
            yield s + ('diag',)


def prefix(cfg):
    return _opt(cfg, 'ha_prefix') or 'homeassistant'


def config_topic(cfg, info, key, pfx=None, node=None):
    return '%s/sensor/%s/%s/config' % (pfx or prefix(cfg), node or node_id(info), key)


def sensor_config(cfg, info, base, s, sysinfo=None):
    key, name, dclass, unit, sclass, kind = s
    node = node_id(info)
    c = {'name': name, 'unique_id': '%s_%s' % (node, key),
         'availability_topic': base + '/status',
         'payload_available': 'online', 'payload_not_available': 'offline'}
    if dclass:
        c['device_class'] = dclass
    if sclass:
        c['state_class'] = sclass
    if unit:
        c['unit_of_measurement'] = unit
    if kind == 'energy':   # retained Wh counter -> kWh with 3 decimals
        c['state_topic'] = base + '/energy/' + key
        c['value_template'] = '{{ (value | float / 1000) | round(3) }}'
        c['suggested_display_precision'] = 3
    elif kind == 'period':
        k = key[2:]
        c['state_topic'] = base + '/period'
        c['value_template'] = _tpl(k, '(value_json.%s / 1000) | round(3)' % k)
        c['last_reset_value_template'] = \
            "{{ value_json.%s0 if value_json.%s0 is defined else '' }}" % (k, k)
        c['suggested_display_precision'] = 3
    elif kind == 'time':
        c['state_topic'] = base + '/state'
        c['value_template'] = _tpl('time', "value_json.time | timestamp_custom("
                                           "'%Y-%m-%dT%H:%M:%S+00:00', false)")
    elif kind == 'diag':
        c['entity_category'] = 'diagnostic'
        if key == 'link':
            c['state_topic'] = base + '/link'
            c['value_template'] = '{{ value_json.state }}'
            c['icon'] = 'mdi:connection'
        else:
            c['state_topic'] = base + '/diag'
            c['value_template'] = _tpl(key)
            c['expire_after'] = 3 * DIAG_MS // 1000 + 30
    else:
        c['state_topic'] = base + '/state'
        c['value_template'] = _tpl(key)
        c['expire_after'] = expire_after(cfg)
    c['device'] = device(cfg, info, sysinfo)
    return c


def messages(cfg, info, base, sysinfo=None, diag_keys=None):
    """(topic, payload) of every discovery config, built one at a time (heap)."""
    for s in sensors(diag_keys):
        yield config_topic(cfg, info, s[0]), json.dumps(sensor_config(cfg, info, base, s,
                                                                      sysinfo))


def clear_messages(cfg, info, pfx=None, node=None):
    """Empty retained payloads: HA removes the entities, the broker forgets the configs.
    pfx: the discovery prefix they were sent under (default: the configured one); node: the
    device id they were sent under (default: the current one)."""
    for s in sensors():
        yield config_topic(cfg, info, s[0], pfx, node), ''


def announce(cfg, info, base, old_pfx=None, old_nodes=(), sysinfo=None, diag_keys=None):
    """messages(); first clears the configs sent under an earlier prefix, if it changed,
    and those sent under an earlier device id (old_nodes)."""
    if old_pfx and old_pfx != prefix(cfg):
        yield from clear_messages(cfg, info, old_pfx)
    for n in old_nodes:
        yield from clear_messages(cfg, info, None, n)
    yield from messages(cfg, info, base, sysinfo, diag_keys)
