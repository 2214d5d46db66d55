# A non-blocking TCP connect whose wait is async (MQTT and SMTP use it), shared and small.
import socket
from compat import ticks_ms, ticks_diff, sleep_ms

_AGAIN = (11, 35, 36, 114, 115, 119, 10035)   # EAGAIN, EINPROGRESS, EALREADY (Linux/lwIP/BSD)


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


def tls_context():
    """A TLS client context that checks no certificate (the board holds no CA certificates;
    umqtt.simple does the same). MQTT and mail use it."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.check_hostname = False
    except Exception:           # a MicroPython without the attribute
        pass
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
