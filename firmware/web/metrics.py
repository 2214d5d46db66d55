# GET /metrics: Prometheus text exposition format 0.0.4, produced line by line (a
# generator) so the whole page never sits in the heap.
# Units are Prometheus base units, named in the metric (watts, volts, amperes, hertz,
# joules, seconds, ...): the meter's Wh / varh are exported as J / var*s (x 3600). Meter
# counters are `_total` counters, per-phase values carry a phase="L1".. label. The link
# section reads link.status(): 'link' (the state in words), 'counters' ('rx' frames
# received, 'tx', 'retransmits', ...), 'diag' {'turnaround': {'p50','p95','max'} ms}.
from mep.reading import rows, KEY, UNIT, LABEL, METRIC, ENERGY_UNITS

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
# The reading's values are exported as the table of mep/reading.py names them (column metric); a
# counter in Wh / varh as J / var*s.
_TO_SECONDS = 3600
_LINK_COUNTERS = (    # counters key, metric (mep_link_<name>_total), help
    ('rx', 'frames', 'Response frames received from the meter'),
    ('tx', 'requests', 'Request frames sent to the meter'),
    ('retransmits', 'retransmits', 'Requests sent again (no or a bad answer)'),
    ('timeouts', 'timeouts', 'Requests the meter did not answer in time'),
    ('resyncs', 'resyncs', 'Sequence number resynchronisations'),
    ('auth_failures', 'auth_failures', 'Requests refused for authentication'),
    ('alerts', 'alerts', 'Alerts (00 00) received from the meter'),
    ('alerts_handled', 'alerts_handled', 'Alerts answered'),
)


def _esc(v):
    return str(v).replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _val(v):
    if isinstance(v, bool):
        return '1' if v else '0'
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def _head(name, typ, text):
    # text format 0.0.4: HELP/TYPE name the sample itself, counters included (x_total)
    return '# HELP %s %s\n# TYPE %s %s\n' % (name, text, name, typ)


def metrics_text(reading, info, link_status, sysinfo):
    """Yields the exposition text in pieces (each ends with a newline)."""
    r = reading or {}
    head = None                         # the metric whose HELP/TYPE went out last
    for f in rows():
        name = f[METRIC]
        v = r.get(f[KEY])
        if name is None or v is None:
            continue
        key = f[KEY]
        phase = key[-3:-1] == '_l'      # the three phases share a metric, labelled
        if f[UNIT] in ENERGY_UNITS:
            v = v * _TO_SECONDS
        if name != head:
            head = name
            if phase:                   # 'L1 average voltage' -> 'Average voltage per phase'
                text = f[LABEL][3].upper() + f[LABEL][4:] + ' per phase'
            else:
                text = f[LABEL]
            if f[UNIT] == '':
                text += ' (0..1)'
            yield _head(name, 'counter' if f[UNIT] in ENERGY_UNITS else 'gauge', text)
        if phase:
            yield '%s{phase="L%s"} %s\n' % (name, key[-1], _val(v))
        else:
            yield '%s %s\n' % (name, _val(v))
    if r.get('time') is not None:
        yield _head('mep_reading_timestamp_seconds', 'gauge',
                    'UTC unix time of the newest reading') + \
            'mep_reading_timestamp_seconds %d\n' % r['time']
    if r.get('seq') is not None:
        yield _head('mep_readings_total', 'counter', 'Readings since boot') + \
            'mep_readings_total %d\n' % r['seq']
    if info:
        yield _head('mep_meter_info', 'gauge', 'Meter identification (always 1)') + \
            'mep_meter_info{manufacturer="%s",model="%s",fw="%s",hw="%s",serial="%s"} 1\n' % (
                _esc(str(info.get('manufacturer') or '').strip()), _esc(info.get('model') or ''),
                _esc(info.get('fw') or ''), _esc(info.get('hw') or ''),
                _esc(info.get('serial') or ''))
    if link_status:
        st = str(link_status.get('link') or 'unknown')
        yield _head('mep_link_up', 'gauge', '1 while the meter answers (link state ok)') + \
            'mep_link_up %d\n' % (1 if st == 'ok' else 0)
        yield _head('mep_link_state', 'gauge', 'Current link state (label), always 1') + \
            'mep_link_state{state="%s"} 1\n' % _esc(st)
        c = link_status.get('counters') or {}
        for key, mname, text in _LINK_COUNTERS:
            if c.get(key) is not None:
                name = 'mep_link_%s_total' % mname
                yield _head(name, 'counter', text) + '%s %s\n' % (name, _val(c[key]))
        ta = (link_status.get('diag') or {}).get('turnaround') or {}
        head = False
        for key in ('p50', 'p95', 'max'):
            if ta.get(key) is None:
                continue
            if not head:
                head = True
                yield _head('mep_link_turnaround_seconds', 'gauge',
                            'Meter response time (request sent to answer): median, 95th '
                            'percentile and maximum (label stat)')
            yield 'mep_link_turnaround_seconds{stat="%s"} %s\n' % (key, _val(ta[key] / 1000))
    s = sysinfo or {}
    for key, name, typ, text in (
            ('heap_free', 'mep_heap_free_bytes', 'gauge', 'Free MicroPython heap'),
            ('heap_alloc', 'mep_heap_allocated_bytes', 'gauge', 'Allocated MicroPython heap'),
            ('uptime', 'mep_uptime_seconds', 'gauge', 'Seconds since boot')):
        if s.get(key) is not None:
            yield _head(name, typ, text) + '%s %s\n' % (name, _val(s[key]))
    mq = s.get('mqtt')
    if mq:
        yield _head('mep_mqtt_connected', 'gauge', '1 while connected to the MQTT broker') + \
            'mep_mqtt_connected %d\n' % (1 if mq.get('connected') else 0)
        for key, text in (('published', 'MQTT messages published'),
                          ('drops', 'MQTT messages dropped (queue full or connection lost)'),
                          ('reconnects', 'MQTT reconnections')):
            name = 'mep_mqtt_%s_total' % key
            yield _head(name, 'counter', text) + '%s %d\n' % (name, mq.get(key) or 0)
