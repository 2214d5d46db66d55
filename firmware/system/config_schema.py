# Settings schema of config.py: defaults, labels, help texts and validators, and the code that
# loads, changes and describes the settings. config.py imports this module for one call and
# drops it again on MicroPython, so only the values stay in the heap. passwords.py (random keys,
# password hashes) is imported only by the functions that need it.
# Loading never raises: a missing, corrupt or invalid file falls back to the .bak copy or to
# defaults (cfg.fallback, cfg.warning). Secret values never appear in warnings, error
# messages, public_view() or export().
import json
from storage import atomic
from drivers import boards
from mep.digest import key_from_mbk

ALARM_KINDS = ('power_above', 'energy_today_above', 'export_above')
MAX_ALARMS = 8
GENERATED = ('ap_password', 'session_secret', 'ota_key', 'legacy_token')  # made at first boot


def _gen(key):
    from system import passwords
    if key == 'ap_password':  # 16 of 32 unambiguous characters: 80 bits
        abc = 'abcdefghijkmnpqrstuvwxyz23456789'
        return ''.join(abc[b & 31] for b in passwords.rand(16))
    return passwords.hexs(passwords.rand(16 if key == 'legacy_token' else 32))


# ---- validators: return an error message (without the value) or None ----
def _host(v, label=False):
    if not v or len(v) > (63 if label else 253):
        return 'must be 1..%d characters' % (63 if label else 253)
    for part in ([v] if label else v.split('.')):
        if not part or len(part) > 63 or part[0] == '-' or part[-1] == '-':
            return 'must be letters, digits and inner hyphens' + ('' if label else ', dot separated')
        for ch in part:
            if not (ch.isalpha() or ch.isdigit() or ch == '-') or ord(ch) > 127:
                return 'may only contain letters a-z, digits and hyphens' + ('' if label else ' and dots')
    return None


def _v_label(v):
    return _host(v, True)


def _v_host_opt(v):
    return _host(v) if v else None


def _v_hosts(v):
    for h in v.split(','):
        h = h.strip()
        if h and _host(h):
            return 'must be host names or IPv4 addresses, comma separated'
    return None if len(v) <= 200 else 'must be at most 200 characters'


def _v_tz(v):
    from system import tz
    try:
        tz.rule_of(v)
    except tz.TzError:
        return 'unknown time zone: use a name such as Europe/Copenhagen, or a POSIX TZ rule'
    return None


def _v_topic(v):
    if not v or len(v) > 64 or v[0] == '/' or v[-1] == '/' or '//' in v:
        return 'must be 1..64 characters without leading, trailing or double "/"'
    for ch in v:
        if ch in '+#' or ord(ch) < 33 or ord(ch) > 126:
            return 'may not contain "+", "#", spaces or non-ASCII characters'
    return None


def _v_devid(v):
    if not v:
        return None
    for ch in v:
        if not (ch.isalpha() or ch.isdigit() or ch in '_-') or ord(ch) > 127:
            return 'may only contain letters, digits, "_" and "-"'
    return None if len(v) <= 64 else 'must be at most 64 characters'


def _v_name(v):
    if len(v) > 64:
        return 'must be at most 64 characters'
    for ch in v:
        if ord(ch) < 32:
            return 'may not contain control characters'
    return None


def _v_mail(v):
    for a in v.split(','):
        a = a.strip()
        if v and (a.count('@') != 1 or ' ' in a or a[0] == '@' or a[-1] == '@'):
            return 'must be an e-mail address like name@example.com (several: comma separated)'
    return None


def _v_wifi(v):
    return None if not v or 8 <= len(v) <= 63 else 'must be 8..63 characters (WPA2)'


def _v_ap(v):
    return None if 12 <= len(v) <= 63 else 'must be 12..63 characters'


def _v_mbk(v):
    if not v:
        return None
    try:
        key_from_mbk(v)
    except ValueError as e:
        return str(e)
    return None


def _v_hexkey(v):
    from system import passwords
    return None if len(v) >= 32 and len(v) % 2 == 0 and passwords.is_hex(v) else \
        'must be at least 32 hex digits (an even number)'


def _v_pwhash(v):
    from system import passwords
    return passwords.bad_hash(v)


PEM_MAX = 4000      # characters: a CA certificate with an intermediate one


def _v_pem(v):
    if not v:
        return None
    from net.tcp import ders
    try:
        n = len(ders(v))
    except ValueError as e:
        return 'must be PEM text ("-----BEGIN CERTIFICATE-----" ...): %s' % e
    return None if n <= 4 else 'must hold at most 4 certificates'


def _num(v, kind):
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, str):
        v = v.strip()
        return int(v) if kind == 'int' else float(v)
    if kind == 'int':
        if isinstance(v, float) and v != int(v):
            raise ValueError
        return int(v)
    if isinstance(v, (int, float)):
        return v
    raise ValueError


def _bool(v):
    if isinstance(v, bool):
        return v
    if v in (0, 1) and not isinstance(v, float):
        return v == 1
    if isinstance(v, str) and v.lower() in ('true', 'on', 'yes', '1', 'false', 'off', 'no', '0', ''):
        return v.lower() in ('true', 'on', 'yes', '1')
    raise ValueError


_ALARM_KEYS = (('threshold', 'num', None, 0, 1e9), ('seconds', 'int', 0, 0, 86400),
               ('hysteresis', 'num', 0, 0, 1e9), ('repeat_min', 'int', 60, 0, 10080))


def _alarms(v):
    if not isinstance(v, list):
        raise ValueError('must be a list')
    if len(v) > MAX_ALARMS:
        raise ValueError('at most %d alarms' % MAX_ALARMS)
    out = []
    for n, a in enumerate(v):
        where = 'alarm %d: ' % (n + 1)
        if not isinstance(a, dict):
            raise ValueError(where + 'must be a set of fields')
        for k in a:
            if k not in ('kind', 'enabled') and k not in [x[0] for x in _ALARM_KEYS]:
                raise ValueError(where + 'unknown field "%s"' % str(k)[:20])
        if a.get('kind') not in ALARM_KINDS:
            raise ValueError(where + 'kind must be one of ' + ', '.join(ALARM_KINDS))
        d = {'kind': a['kind']}
        for k, kind, dflt, lo, hi in _ALARM_KEYS:
            x = a.get(k, dflt)
            try:
                x = _num(x, kind)
                if not lo <= x <= hi:
                    raise ValueError
            except (ValueError, TypeError):
                raise ValueError(where + '%s must be a number from %s to %s' % (k, lo, int(hi)))
            d[k] = x
        try:
            d['enabled'] = _bool(a.get('enabled', True))
        except ValueError:
            raise ValueError(where + 'enabled must be true or false')
        out.append(d)
    return out


# (key, type, default, label, help, check). type: str | secret | bool | int | choice | alarms | pem
# (certificates as PEM text, up to PEM_MAX characters; public, so shown back).
# check: validator function (str/secret), (min, max) (int), or options tuple (choice).
SCHEMA = (
    ('hostname', 'str', 'esp32-mep', 'Hostname', 'Network name (DNS label: letters, digits, hyphens).', _v_label),
    ('wifi_ssid', 'str', '', 'WiFi network', 'Empty: no WiFi client, access point only.', None),
    ('wifi_password', 'secret', '', 'WiFi password', '', _v_wifi),
    ('ap_password', 'secret', '', 'Access point password', 'Password of the setup access point; unique per device.', _v_ap),
    ('mbk', 'secret', '', 'MEP key (MBK)', 'Empty: no MEP traffic. The 20 characters from the utility.', _v_mbk),
    ('web_password_hash', 'secret', '', 'Web password', 'Salted PBKDF2 hash; set it with the password form.', _v_pwhash),
    ('session_secret', 'secret', '', 'Session secret', 'Random key signing web sessions; clear it to log everyone out.', _v_hexkey),
    ('public_dashboard', 'bool', False, 'Public dashboard', 'Show live values without logging in.', None),
    ('web_hosts', 'str', '', 'Other names of this module', 'Comma separated names or addresses the web UI is '
     'also opened by (besides its IP address, hostname and hostname.local); requests for any other name are '
     'refused.', _v_hosts),
    ('board', 'choice', boards.DEFAULT, 'Board', 'Pins of the module hardware.', tuple(sorted(boards.PROFILES))),
    ('poll_bt23_ms', 'int', 1000, 'Energy poll interval (ms)', 'BT23 energy registers.', (0, 3600000)),
    ('poll_bt28_ms', 'int', 1000, 'Power poll interval (ms)', 'BT28 instantaneous values.', (0, 3600000)),
    ('fast_mode', 'bool', False, 'Fast mode', 'Live values (BT28) back to back, ignoring their interval; the energies (BT23) still at theirs (0: before every reading).', None),
    ('timezone', 'str', 'Europe/Copenhagen', 'Time zone', 'A name such as Europe/Copenhagen, Europe/Vienna or '
     'Europe/Zurich (daylight saving included), or a POSIX TZ rule. Days, hours and months of the charts, '
     'alarms and Home Assistant start at local time.', _v_tz),
    ('ntp_server', 'str', 'pool.ntp.org', 'NTP server', 'Empty: no NTP.', _v_host_opt),
    ('ota_key', 'secret', '', 'OTA key', 'HMAC key (hex) for signed update bundles.', _v_hexkey),
    ('mqtt_enabled', 'bool', False, 'MQTT', 'Publish readings to an MQTT broker.', None),
    ('mqtt_host', 'str', '', 'MQTT broker', 'Host name or IP address.', _v_host_opt),
    ('mqtt_port', 'int', 1883, 'MQTT port', '1883, or 8883 with TLS.', (1, 65535)),
    ('mqtt_tls', 'bool', False, 'MQTT over TLS', 'The broker must show a certificate that names it and chains to the CA '
     'below or, without one, to a well-known CA (Let\'s Encrypt, DigiCert, Amazon, Sectigo).', None),
    ('mqtt_ca', 'pem', '', 'Broker CA certificate', 'PEM: the CA that signed your broker\'s certificate (or the '
     'certificate itself if it is self-signed). Empty: the built-in CAs.', _v_pem),
    ('mqtt_tls_insecure', 'bool', False, 'Accept any broker certificate', 'RISK: whoever sits between the module and '
     'the broker can then read the MQTT password and send commands. Only for a broker whose CA you cannot give.', None),
    ('mqtt_user', 'str', '', 'MQTT user', '', None),
    ('mqtt_password', 'secret', '', 'MQTT password', '', None),
    ('mqtt_prefix', 'str', 'mep', 'MQTT topic prefix', '', _v_topic),
    ('mqtt_device_id', 'str', '', 'MQTT device id', 'Empty: derived from the hostname.', _v_devid),
    ('mqtt_per_value', 'bool', False, 'One topic per value', 'Also publish each value on its own topic.', None),
    ('mqtt_raw', 'bool', False, 'Raw protocol topic', 'Publish raw MEP frames (debugging).', None),
    ('mqtt_commands', 'bool', False, 'Accept MQTT commands', 'RISK: anyone who can publish to the broker can control the module.', None),
    ('ha_discovery', 'bool', True, 'Home Assistant discovery', '', None),
    ('ha_prefix', 'str', 'homeassistant', 'Discovery prefix', '', _v_topic),
    ('device_name', 'str', '', 'Device name', 'Name of the meter in Home Assistant. Empty: "Electricity meter <serial>".', _v_name),
    ('mqtt_interval_s', 'int', 0, 'MQTT state interval (s)', 'At most one state message per this many seconds (a smaller database); 0: every reading.', (0, 3600)),
    ('legacy_public', 'bool', False, 'Legacy endpoints without login', 'Serve /getDashDataWS and /metrics to '
     'anyone on the network. Off: they need a login, or the private address shown below.', None),
    ('legacy_token', 'secret', '', 'Private address key', 'Part of the private address of the legacy endpoints; '
     'tick "clear" for a new one.', _v_hexkey),
    ('alarms', 'alarms', [], 'Alarms', 'Up to 8: kind power_above (W), energy_today_above (Wh) or export_above (W); '
     'threshold, seconds, hysteresis, repeat_min, enabled.', None),
    ('smtp_host', 'str', '', 'SMTP server', 'Empty: no e-mail.', _v_host_opt),
    ('smtp_port', 'int', 587, 'SMTP port', '', (1, 65535)),
    ('smtp_starttls', 'bool', True, 'STARTTLS', 'The server\'s certificate is verified (well-known CAs or the CA '
     'below).', None),
    ('smtp_ca', 'pem', '', 'Mail server CA certificate', 'PEM, as for MQTT. Empty: the built-in CAs.', _v_pem),
    ('smtp_user', 'str', '', 'SMTP user', '', None),
    ('smtp_password', 'secret', '', 'SMTP password', '', None),
    ('smtp_from', 'str', '', 'Sender address', '', _v_mail),
    ('smtp_to', 'str', '', 'Recipients', 'Comma separated.', _v_mail),
)
_BY_KEY = {}
for _f in SCHEMA:
    _BY_KEY[_f[0]] = _f


def validate(key, v):
    """Return (value, error): the normalised value, or error text that names the field."""
    f = _BY_KEY.get(key)
    if f is None:
        return None, '%s: unknown setting' % str(key)[:40]
    t, check, label = f[1], f[5], f[3]
    err = None
    try:
        if t == 'bool':
            v = _bool(v)
        elif t == 'int':
            v = _num(v, 'int')
            if not check[0] <= v <= check[1]:
                err = 'must be from %d to %d' % check
        elif t == 'choice':
            if v not in check:
                err = 'must be one of ' + ', '.join(check)
        elif t == 'alarms':
            v = _alarms(v)
        else:
            if not isinstance(v, str):
                raise ValueError
            if t != 'secret':
                v = v.strip()
            if len(v) > (PEM_MAX if t == 'pem' else 256):
                err = 'is too long'
            elif check:
                err = check(v)
    except ValueError as e:
        err = str(e) if t == 'alarms' else 'has the wrong type (expected %s)' % (
            'true/false' if t == 'bool' else 'a whole number' if t == 'int' else 'text')
    except TypeError:
        err = 'has the wrong type'
    return (None, '%s (%s): %s' % (label, key, err)) if err else (v, None)


def defaults():
    """A new dict of all settings at their defaults (generated secrets still empty)."""
    out = {}
    for f in SCHEMA:
        out[f[0]] = f[2][:] if f[1] == 'alarms' else f[2]
    return out


def _warn(cfg, msg):
    cfg.warning = msg if not cfg.warning else cfg.warning + '; ' + msg


def _parse(f):
    d = json.load(f)          # streamed: no one-piece copy of the file in the heap
    if not isinstance(d, dict):
        raise ValueError('not an object')
    return d


def load(cfg, save_generated):
    """Config.load(): read cfg.path (never raises)."""
    cfg.warning = None
    cfg.fallback = False
    cfg.values = defaults()
    data, src = atomic.read(cfg.path, _parse)
    if data is None:
        cfg.fallback = True
        _warn(cfg, ('config file was corrupt or unreadable' if atomic.exists(cfg.path)
                    else 'no config file') + '; defaults loaded, AP mode active')
    else:
        if src != 'main':
            _warn(cfg, 'config file was %s; %s copy loaded' % (
                'missing' if src == 'tmp' else 'corrupt or missing', 'backup' if src == 'bak' else 'new'))
        bad, unknown = [], []
        for k in data:
            v, err = validate(k, data[k])
            if k not in _BY_KEY:
                unknown.append(str(k)[:40])
            elif err:
                bad.append(k)
            else:
                cfg.values[k] = v
        if unknown:
            _warn(cfg, 'unknown settings dropped: ' + ', '.join(unknown))
        if bad:
            _warn(cfg, 'invalid settings reset to defaults: ' + ', '.join(bad))
    if _generate(cfg.values) and save_generated:
        try:
            cfg.save()
        except OSError:
            _warn(cfg, 'could not store the generated keys')
    return cfg


def _generate(values):
    made = []
    for k in GENERATED:
        if not values[k]:
            values[k] = _gen(k)
            made.append(k)
    return made


def update(cfg, changes, keep_empty_secrets, clear):
    """Config.update(): validate everything first, then apply all or nothing."""
    errors, new = {}, {}
    for k in changes:
        v = changes[k]
        f = _BY_KEY.get(k)
        if f and f[1] == 'secret' and (v is None or v == ''):
            if not keep_empty_secrets:
                new[k] = ''
            continue
        v, err = validate(k, v)
        if err:
            errors[k] = err
        else:
            new[k] = v
    for k in clear:
        f = _BY_KEY.get(k)
        if not f or f[1] != 'secret':
            errors[k] = '%s: only secret settings can be cleared' % str(k)[:40]
        else:
            new[k] = ''
    merged = dict(cfg.values)
    merged.update(new)
    if merged['mqtt_enabled'] and not merged['mqtt_host']:
        errors.setdefault('mqtt_host', 'MQTT broker (mqtt_host) is required when MQTT is enabled')
    if errors:
        return errors
    _generate(merged)
    cfg.values = merged
    return {}


def public_view(values):
    out = {}
    for f in SCHEMA:
        v = values[f[0]]
        out[f[0]] = {'set': bool(v)} if f[1] == 'secret' else v
    return out


def schema_view():
    out = []
    for k, t, d, label, hlp, check in SCHEMA:
        e = {'key': k, 'type': t, 'label': label, 'help': hlp, 'secret': t == 'secret'}
        if t != 'secret':
            e['default'] = d
        if t == 'int':
            e['min'], e['max'] = check
        elif t == 'choice':
            e['options'] = list(check)
        elif t == 'alarms':
            e['kinds'] = list(ALARM_KINDS)
            e['max_items'] = MAX_ALARMS
        out.append(e)
    return out


def export(values, include_secrets):
    out = {'_version': 1}
    for f in SCHEMA:
        if f[1] != 'secret' or include_secrets:
            out[f[0]] = values[f[0]]
    return out


def restore(cfg, data):
    """Config.restore(): an export() dict, validated like update()."""
    if not isinstance(data, dict):
        return {'_': 'backup must be a JSON object'}
    d = {}
    for k in data:
        if not str(k).startswith('_'):
            d[k] = data[k]
    return update(cfg, d, False, ())
