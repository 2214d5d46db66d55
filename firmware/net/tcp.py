# The network steps MQTT and mail share, small: a TCP connect whose wait is async, and TLS
# that verifies the server by default (a certificate chaining to a trusted root or to the
# owner's own CA, naming the host) with a handshake that never waits on the network.
import socket
from compat import ticks_ms, ticks_diff, sleep_ms, MICROPYTHON

_AGAIN = (11, 35, 36, 114, 115, 119, 10035)   # EAGAIN, EINPROGRESS, EALREADY (Linux/lwIP/BSD)


class TLSError(OSError):
    """A TLS failure in words: TLSError(text)."""


def again(e):
    """True for the 'try again later' errors of a non-blocking socket (and TLS wants)."""
    if type(e).__name__.startswith('SSLWant'):
        return True
    return bool(e.args) and e.args[0] in _AGAIN


async def open_tcp(host, port, step_ms):
    """A connected non-blocking TCP socket; the wait for the connection is async."""
    addr = None
    for ai in socket.getaddrinfo(host, port):
        if ai[0] == socket.AF_INET:
            addr = ai[-1]
            break
    if addr is None:
        raise OSError(-2, 'no IPv4 address for ' + host)
    s = socket.socket()
    s.setblocking(False)
    try:
        s.connect(addr)
    except OSError as e:
        if not again(e):
            s.close()
            raise
    import select
    p = select.poll()
    p.register(s, select.POLLOUT)
    t0 = ticks_ms()
    ev = p.poll(0)
    while not ev:
        if ticks_diff(ticks_ms(), t0) > step_ms:
            s.close()
            raise OSError(110, 'connect time-out')
        await sleep_ms(5)
        ev = p.poll(0)
    if ev[0][1] & (select.POLLERR | select.POLLHUP):    # refused (MicroPython has no
        s.close()                                       # SO_ERROR on every port)
        raise OSError(111, 'connection refused')
    try:
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except (AttributeError, OSError):
        err = 0
    if err:
        s.close()
        raise OSError(err, 'connect failed')
    return s


def ders(pem):
    """The DER of each certificate in PEM text (str or bytes); ValueError if there is none
    or one is broken. MicroPython's ssl takes DER only, one certificate a call."""
    from binascii import a2b_base64
    if isinstance(pem, (bytes, bytearray)):
        pem = bytes(pem).decode()
    out = []
    for part in pem.split('-----BEGIN CERTIFICATE-----')[1:]:
        end = part.find('-----END CERTIFICATE-----')
        if end < 0:
            raise ValueError('a certificate has no END line')
        try:
            der = a2b_base64(''.join(part[:end].split()))
        except Exception:
            raise ValueError('a certificate is not valid base64')
        if len(der) < 64 or der[0] != 0x30:
            raise ValueError('a certificate is not DER inside')
        out.append(der)
    if not out:
        raise ValueError('no "-----BEGIN CERTIFICATE-----" block')
    return out


def tls_context(ca_pem=None, insecure=False):
    """A TLS client context that requires a certificate naming the host given to
    wrap_socket and chaining to the owner's CA (ca_pem: PEM text) or, without one, to one of
    the built-in roots (net/roots.py). Only one set is loaded: mbedTLS keeps the parsed
    CAs for the connection's life, about 2 KB each (14 KB for the built-in six).
    insecure=True accepts any certificate (the owner's explicit choice: it protects against
    passive listeners only)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        try:
            ctx.check_hostname = False
        except AttributeError:     # MicroPython: no such attribute
            pass
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED    # MicroPython's client default is CERT_NONE
    if ca_pem:
        for der in ders(ca_pem):
            ctx.load_verify_locations(cadata=der)
        return ctx
    from net import roots           # frozen: in flash; a .mpy: imported now, dropped after
    for der in roots.ROOTS:
        ctx.load_verify_locations(cadata=der)
    from compat import unload
    unload('net.roots')
    return ctx


def tls_wrap(s, host, ctx):
    """TLS over the connected non-blocking socket s, the handshake not done yet: on
    MicroPython the first read or write drives it (returning None until it is done), on
    CPython handshake() does. With verification the host name is checked against the
    certificate (CN or subjectAltName, IP addresses too)."""
    return ctx.wrap_socket(s, server_hostname=host, do_handshake_on_connect=False)


async def handshake(s, step_ms):
    """CPython: complete the handshake of a tls_wrap() socket without blocking. MicroPython
    does it on the first I/O (each step of the handshake computes, then returns)."""
    if MICROPYTHON or not hasattr(s, 'do_handshake'):
        return
    t0 = ticks_ms()
    while True:
        try:
            s.do_handshake()
            return
        except OSError as e:
            if not again(e):
                raise tls_error(e, True)
        if ticks_diff(ticks_ms(), t0) > step_ms:
            raise OSError(110, 'TLS handshake time-out')
        await sleep_ms(5)


def tls_error(e, handshake=False):
    """A TLSError in words for an exception of a TLS connection; e itself when it is no TLS
    failure (a time-out, a reset) and did not happen in the handshake."""
    if isinstance(e, TLSError):
        return e
    name = type(e).__name__
    text = str(getattr(e, 'verify_message', '') or e).strip()
    low = text.lower()
    why = None
    if 'expired' in low or 'not yet valid' in low or 'future' in low:
        why = 'its certificate has expired or is not valid yet (is the clock right?)'
    elif 'hostname' in low or 'common name' in low or 'cn)' in low or 'ip address mismatch' in low:
        why = 'its certificate does not name this host'
    elif 'issuer' in low or 'signed' in low or 'self-signed' in low or 'self signed' in low \
            or 'trusted' in low or 'ca_chain' in low:
        why = 'its certificate is not signed by a trusted CA (add the broker\'s CA)'
    elif name in ('SSLError', 'SSLCertVerificationError', 'ValueError') or 'SSL' in text \
            or 'MBEDTLS' in text:
        why = 'the TLS handshake failed (%s)' % (text[:80] or name)
    if why is None:
        if not handshake:
            return e
        why = 'the TLS handshake failed (%s)' % (text[:80] or name)
    return TLSError('TLS: server not verified: ' + why if 'certificate' in why else 'TLS: ' + why)
