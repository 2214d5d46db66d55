# Network helpers of the settings page (routes: web/server.py).
#
# POST /api/mqtt/test {'mqtt_host', 'mqtt_port', 'mqtt_tls', 'mqtt_user', 'mqtt_password'} (the
#      values as typed; an empty password means the stored one, which is sent only to the
#      stored broker) -> 200 {'ok': bool, 'result': word, 'message': text in words}
#      result: connected, refused (the broker's reason), no answer, no broker, host not found,
#      tls failure, not mqtt. The TCP connect and the wait for CONNACK do not block the loop
#      (mqtt.py's connack); the DNS lookup does (as in mqtt.py) and a TLS handshake for at
#      most 2 s. The password is never in the answer or the log.
# POST /api/wifi/scan -> 200 {'networks': [{'ssid', 'rssi', 'security'}]} strongest first, or
#      501 {'error': 'no WiFi on this board'} (the PC). The scan blocks for about 2 s: the MEP
#      link misses a poll and reads the answer late (the UART buffer keeps it).
import sys
import compat
from compat import ticks_ms, ticks_diff

NOSTORE = {'Cache-Control': 'no-store'}
TIMEOUT_MS = 3000
MODS = ('net.mqtt', 'net.ha', 'net.tcp')      # loaded for a test and dropped again when MQTT is off


def _bad(text, status=400):
    return {'error': text}, status, NOSTORE


def _port(v, tls):
    if v in (None, ''):
        return 8883 if tls else 1883
    try:
        p = int(v)
    except (TypeError, ValueError):
        return None
    return p if 0 < p < 65536 else None


def _answer(ok, result, message):
    return {'ok': ok, 'result': result, 'message': message}, 200, NOSTORE


async def mqtt_test(ctx, request):
    body = request.json
    if not isinstance(body, dict):
        return _bad('send JSON {"mqtt_host": ..., "mqtt_port": ...}')
    host = body.get('mqtt_host')
    if not isinstance(host, str) or not host.strip() or len(host) > 100:
        return _bad('type the MQTT broker (host name or IP address) first')
    host = host.strip()
    tls = body.get('mqtt_tls') in (True, 'on', 'true', 1)
    port = _port(body.get('mqtt_port'), tls)
    if port is None:
        return _bad('the MQTT port must be a number from 1 to 65535')
    user = body.get('mqtt_user') or ''
    pw = body.get('mqtt_password') or ''
    if not isinstance(user, str) or not isinstance(pw, str):
        return _bad('user and password must be text')
    c = ctx.config
    note = ''
    if not pw and user:
        same = host == c['mqtt_host'] and port == _port(c['mqtt_port'], bool(c['mqtt_tls'])) \
            and user == c['mqtt_user']
        if same:
            pw = c['mqtt_password'] or ''
        elif c['mqtt_password']:
            note = (' The stored password is sent only to the stored broker and user: type '
                    'it to test another one.')
    if getattr(ctx, 'web_mqtt_test', False):
        return _bad('a test is already running: try again in a few seconds', 429)
    ctx.web_mqtt_test = True
    had = [n for n in MODS if n in sys.modules]
    try:
        ok, result, msg = await _try(host, port, tls, user, pw)
    finally:
        ctx.web_mqtt_test = False
        if getattr(ctx, 'mqtt', None) is None:
            compat.unload(*[n for n in MODS if n not in had])
    ctx.log('web: MQTT connection test to %s:%d%s: %s' % (host[:60], port,
                                                          ' (TLS)' if tls else '', result))
    return _answer(ok, result, msg + ('' if ok else note))


def _refused(where):
    return False, 'no broker', 'No MQTT broker at %s: the connection was refused (wrong ' \
                               'port, or the broker is not running).' % where


async def _try(host, port, tls, user, pw):
    """(ok, result, message) of one connection attempt."""
    import socket
    from net import mqtt
    from net.tcp import open_tcp
    where = '%s:%d' % (host, port)
    try:
        ai = socket.getaddrinfo(host, port)[0][-1]
        ip = ai[0] if isinstance(ai, tuple) else host
    except OSError:     # socket.gaierror on CPython, OSError(-202) on the ESP32
        return False, 'host not found', 'Host not found: %s. Check the name or use the ' \
                                        'IP address.' % host
    t0 = ticks_ms()
    try:
        s = await open_tcp(ip, port, TIMEOUT_MS)
    except OSError as e:
        if e.args and e.args[0] == 110:
            return False, 'no answer', 'No answer from %s within %d s.' % (
                where, TIMEOUT_MS // 1000)
        return _refused(where)
    try:
        if tls:
            try:
                s = mqtt._tls(s, host, 2)
            except (OSError, ValueError) as e:     # ssl.SSLError is an OSError
                if isinstance(e, OSError) and e.args and e.args[0] == 111:
                    return _refused(where)
                return False, 'tls failure', 'TLS failed with %s (%s): does the broker ' \
                    'speak TLS on this port?' % (where, type(e).__name__)
        b = mqtt._Bounded(s, 0.25)
        try:
            await mqtt.connack(b, mqtt.connect_packet('mep-test-%d' % (t0 % 100000), 10,
                                                      None, None, user or None, pw),
                               TIMEOUT_MS)
        except mqtt.MQTTRefused as e:
            why = mqtt._CONNACK.get(e.args[0], 'code %s' % e.args[0])
            if e.args[0] == 5:          # what mosquitto answers to a wrong password too
                why += ' (wrong user name or password, or this user may not connect)'
            return False, 'refused', 'The broker at %s refused the connection: %s.' % (
                where, why)
        except OSError as e:
            n = e.args[0] if e.args else 0
            if n == 110:
                return False, 'no answer', 'Connected to %s but no MQTT answer within %d s.' \
                    % (where, TIMEOUT_MS // 1000)
            if n == 111:          # MicroPython learns of a refused connect on the first write
                return _refused(where)
            if n == 71:
                return False, 'not mqtt', '%s answered, but not as an MQTT broker.' % where
            return False, 'no answer', '%s closed the connection without an MQTT answer%s.' \
                % (where, '' if tls else ' (does it need TLS?)')
        try:
            b.write(b'\xe0\x00')           # DISCONNECT
        except OSError:
            pass
        return True, 'connected', 'Connected to %s%s in %d ms.' % (
            where, ' with TLS' if tls else '', ticks_diff(ticks_ms(), t0))
    finally:
        try:
            s.close()
        except OSError:
            pass


async def wifi_scan(ctx, request):
    w = getattr(ctx, 'wifi', None)
    if w is None:
        return _bad('no WiFi on this board', 501)
    ctx.log('web: WiFi scan (meter reading pauses for about 2 s)')
    try:
        nets = w.scan()
    except OSError as e:
        return _bad('the WiFi scan failed: %s' % e, 503)
    return {'networks': nets}, 200, NOSTORE
