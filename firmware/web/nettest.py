# Network helpers of the settings page (routes: web/server.py).
#
# POST /api/mqtt/test {'mqtt_host', 'mqtt_port', 'mqtt_tls', 'mqtt_user', 'mqtt_password',
#      'mqtt_ca', 'mqtt_tls_insecure'} (the values as typed; an empty password means the
#      stored one, which is sent only to the stored broker; a missing mqtt_ca or
#      mqtt_tls_insecure the stored one) -> 200 {'ok': bool, 'result': word, 'message': text}
#      result: connected, refused (the broker's reason), no answer, no broker, host not found,
#      not verified (TLS: the certificate is not trusted, names another host, expired),
#      tls failure, not mqtt. The TCP connect, the TLS handshake and the wait for CONNACK do
#      not block the loop (net/mqtt_wire.py); the DNS lookup does (as in mqtt.py). The
#      password is never in the answer or the log.
# POST /api/wifi/scan -> 200 {'networks': [{'ssid', 'rssi', 'security'}]} strongest first, or
#      501 {'error': 'no WiFi on this board'} (the PC). The scan blocks for about 2 s: the MEP
#      link misses a poll and reads the answer late (the UART buffer keeps it).
import sys
import compat
from compat import ticks_ms, ticks_diff

NOSTORE = {'Cache-Control': 'no-store'}
TIMEOUT_MS = 3000
MODS = ('net.mqtt_wire', 'net.tcp', 'umqtt.simple', 'umqtt')      # loaded for a test and dropped again when MQTT is off


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
    ca = body.get('mqtt_ca', c['mqtt_ca'])
    insecure = body.get('mqtt_tls_insecure', c['mqtt_tls_insecure']) in (True, 'on', 'true', 1)
    if not isinstance(ca, str):
        return _bad('mqtt_ca must be PEM text')
    if getattr(ctx, 'web_mqtt_test', False):
        return _bad('a test is already running: try again in a few seconds', 429)
    ctx.web_mqtt_test = True
    had = [n for n in MODS if n in sys.modules]
    try:
        ok, result, msg = await _try(host, port, tls, user, pw, ca, insecure)
    except ImportError:
        ok, result, msg = False, 'unavailable', 'The MQTT client (umqtt.simple) is not ' \
            'installed on this module: flash.py installs it.'
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


async def _try(host, port, tls, user, pw, ca, insecure):
    """(ok, result, message) of one connection attempt."""
    import socket
    from net.mqtt_wire import Client, MQTTException, REFUSED
    from net.tcp import tls_context, TLSError
    where = '%s:%d' % (host, port)
    try:
        ai = socket.getaddrinfo(host, port)[0][-1]
        ip = ai[0] if isinstance(ai, tuple) else host
    except OSError:     # socket.gaierror on CPython, OSError(-202) on the ESP32
        return False, 'host not found', 'Host not found: %s. Check the name or use the ' \
                                        'IP address.' % host
    t0 = ticks_ms()
    try:
        tctx = tls_context(ca or None, insecure) if tls else None
    except ValueError as e:
        return False, 'tls failure', 'The CA certificate is not usable: %s.' % e
    c = Client('mep-test-%d' % (t0 % 100000), host, port, user or None, pw, 10)
    try:
        await c.aconnect(ip, tctx, TIMEOUT_MS)
    except MQTTException as e:
        code = e.args[0] if e.args else 0
        why = REFUSED.get(code, 'code %s' % code)
        if code == 5:          # what mosquitto answers to a wrong password too
            why += ' (wrong user name or password, or this user may not connect)'
        return False, 'refused', 'The broker at %s refused the connection: %s.' % (where, why)
    except TLSError as e:
        text = str(e)
        if 'not verified' in text:
            return False, 'not verified', '%s: %s. Nothing was sent to it.' % (where, text)
        return False, 'tls failure', '%s with %s: does the broker speak TLS on this port?' % (
            text, where)
    except OSError as e:
        n = e.args[0] if e.args else 0
        if n == 110 and 'CONNACK' in str(e):
            return False, 'no answer', 'Connected to %s but no MQTT answer within %d s.' \
                % (where, TIMEOUT_MS // 1000)
        if n == 110:
            return False, 'no answer', 'No answer from %s within %d s.' % (
                where, TIMEOUT_MS // 1000)
        if n in (111, 113):     # MicroPython learns of a refused connect on the first write
            return _refused(where)
        if n == 71:
            return False, 'not mqtt', '%s answered, but not as an MQTT broker.' % where
        return False, 'no answer', '%s closed the connection without an MQTT answer%s.' \
            % (where, '' if tls else ' (does it need TLS?)')
    try:
        c.disconnect()
    except OSError:
        pass
    return True, 'connected', 'Connected to %s%s in %d ms.' % (
        where, (' with TLS (certificate NOT verified)' if insecure else
                ' with TLS, certificate verified') if tls else '', ticks_diff(ticks_ms(), t0))


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
