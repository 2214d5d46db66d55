# The app asks its own web server for a page once after start, so a new release proves that
# it serves its web UI even when nobody has opened it yet (system/supervisor.py, proven).
# Loaded only until that worked.
from compat import ticks_ms, ticks_diff, sleep_ms

TIMEOUT_MS = 5000


async def served(ctx):
    """True once GET /api/session through the server's socket was answered 200."""
    from net.tcp import open_tcp
    s = None
    try:
        s = await open_tcp('127.0.0.1', ctx.http_port, TIMEOUT_MS)
        s.send(b'GET /api/session HTTP/1.0\r\nHost: %s\r\n\r\n'
               % ctx.config['hostname'].encode())
        t0 = ticks_ms()
        got = b''
        while b'\r\n' not in got and ticks_diff(ticks_ms(), t0) < TIMEOUT_MS:
            try:
                b = s.recv(64)
            except OSError:         # nothing yet
                b = None
            if b == b'':
                break
            if b:
                got += b
            else:
                await sleep_ms(20)
        return got.startswith(b'HTTP/1.') and got[9:12] == b'200'
    except OSError:
        return False
    finally:
        if s is not None:
            s.close()
