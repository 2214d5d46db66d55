# Minimal async SMTP client: plain SMTP, STARTTLS (smtp_starttls) or implicit TLS (port
# 465), AUTH PLAIN or LOGIN. The socket is non-blocking and every step (connect, TLS
# handshake, each reply) has its own time-out, so sending never stalls the event loop;
# only the DNS look-up (once per mail) blocks. Runs unchanged on MicroPython (socket +
# ssl from micropython-lib) and CPython (socket + ssl).
# TLS verifies the server: its certificate must name smtp_host and chain to a built-in
# root (net/roots.py) or to the CA in smtp_ca; otherwise nothing is sent (the error says
# why). Errors never contain the password.
import socket
import time
from binascii import b2a_base64

from compat import asyncio, ticks_ms, ticks_diff, sleep_ms, unix_time, epoch_offset
from net.tcp import open_tcp, again as _again, tls_context, tls_wrap, handshake, tls_error
from system.config import opt as _opt, mail_configured as configured

STEP_MS = 10000
_DAYS = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')
_MONTHS = ('Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec')


class SmtpError(Exception):
    pass


def _b64(s):
    if isinstance(s, str):
        s = s.encode()
    return b2a_base64(s).strip().decode()


def rfc_date(t):
    y, mo, d, h, mi, s = time.gmtime(t - epoch_offset())[:6]
    wd = (t // 86400 + 3) % 7      # 1970-01-01 was a Thursday
    return '%s, %02d %s %04d %02d:%02d:%02d +0000' % (_DAYS[wd], d, _MONTHS[mo - 1], y, h, mi, s)


def _header(s):
    s = str(s).replace('\r', ' ').replace('\n', ' ')
    try:
        s.encode().decode('ascii')
        return s
    except Exception:
        return '=?utf-8?b?%s?=' % _b64(s)


def build_message(cfg, subject, body, t=None):
    t = unix_time() if t is None else t
    host = _opt(cfg, 'hostname') or 'mep'
    lines = ['Date: ' + rfc_date(t), 'From: ' + _header(cfg['smtp_from']),
             'To: ' + _header(cfg['smtp_to']), 'Subject: ' + _header(subject),
             'Message-ID: <%d.%d@%s>' % (t, ticks_ms() & 0xFFFFFF, host),
             'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8',
             'Content-Transfer-Encoding: 8bit', '']
    for ln in str(body).replace('\r\n', '\n').split('\n'):
        lines.append('.' + ln if ln.startswith('.') else ln)
    return ('\r\n'.join(lines) + '\r\n.\r\n').encode()


class _Conn:
    def __init__(self, sock, host, step_ms):
        self.s = sock
        self.host = host
        self.step = step_ms
        self.buf = b''
        self.tls_on = False

    async def _io(self, fn, what):
        t0 = ticks_ms()
        while True:
            try:
                r = fn()
                if r is not None:
                    return r
            except OSError as e:
                if not _again(e):
                    raise
            if ticks_diff(ticks_ms(), t0) > self.step:
                raise SmtpError('time-out: ' + what)
            await sleep_ms(5)

    def _recv(self):
        s = self.s
        return s.recv(512) if hasattr(s, 'recv') else s.read(512)

    async def send(self, data):
        mv = memoryview(data)
        while len(mv):
            n = await self._io(lambda: self.s.send(mv) if hasattr(self.s, 'send')
                               else self.s.write(mv), 'send')
            mv = mv[n:]

    async def line(self):
        while b'\n' not in self.buf:
            d = await self._io(self._recv, 'server reply')
            if not d:
                raise SmtpError('connection closed by server')
            self.buf += d
            if len(self.buf) > 4096:
                raise SmtpError('reply line too long')
        i = self.buf.index(b'\n')
        ln, self.buf = self.buf[:i], self.buf[i + 1:]
        return ln.decode().rstrip('\r')

    async def reply(self, expect, what):
        lines = []
        while True:
            ln = await self.line()
            lines.append(ln[4:])
            if len(ln) < 4 or ln[3] != '-':
                break
        try:
            code = int(ln[:3])
        except ValueError:
            raise SmtpError('bad reply to %s' % what)
        if code not in expect:
            # the server's text only: it never holds what was sent (AUTH data)
            raise SmtpError('%s: %d %s' % (what, code, ' '.join(lines)[:120]))
        return code, lines

    async def cmd(self, line, expect, what=None):
        await self.send((line + '\r\n').encode())
        return await self.reply(expect, what or line.split(' ')[0])

    async def tls(self, ca):
        # CPython shakes hands here, MicroPython on the first read or write (a step a call)
        self.s = tls_wrap(self.s, self.host, tls_context(ca or None))
        self.tls_on = True
        await handshake(self.s, self.step)


async def send_mail(cfg, subject, body, step_ms=STEP_MS, t=None):
    """Send one plain-text mail to every address in cfg['smtp_to'] (comma separated)."""
    if not configured(cfg):
        raise SmtpError('SMTP is not configured')
    host = cfg['smtp_host']
    port = int(_opt(cfg, 'smtp_port', 0) or 0) or (465 if _opt(cfg, 'smtp_tls') else 587
                                                    if _opt(cfg, 'smtp_starttls') else 25)
    c = _Conn(await open_tcp(host, port, step_ms), host, step_ms)
    try:
        await _talk(c, cfg, port, subject, body, t)
    except Exception as e:
        raise tls_error(e) if c.tls_on else e
    finally:
        try:
            c.s.close()
        except Exception:
            pass


async def _talk(c, cfg, port, subject, body, t):
    ca = _opt(cfg, 'smtp_ca')
    if port == 465:
        await c.tls(ca)
    await c.reply((220,), 'greeting')
    helo = _opt(cfg, 'hostname') or 'mep'
    code, caps = await c.cmd('EHLO ' + helo, (250,))
    if _opt(cfg, 'smtp_starttls') and port != 465:
        if 'STARTTLS' not in [x.upper() for x in caps]:
            raise SmtpError('server does not offer STARTTLS')
        await c.cmd('STARTTLS', (220,))
        c.buf = b''
        await c.tls(ca)
        code, caps = await c.cmd('EHLO ' + helo, (250,))
    user = _opt(cfg, 'smtp_user')
    if user:
        pw = _opt(cfg, 'smtp_password', '')
        mechs = []
        for x in caps:
            if x.upper().startswith('AUTH'):
                mechs += x.upper().replace('=', ' ').split()[1:]
        if 'PLAIN' in mechs or 'LOGIN' not in mechs:
            await c.cmd('AUTH PLAIN ' + _b64('\0%s\0%s' % (user, pw)), (235,), 'AUTH')
        else:
            await c.cmd('AUTH LOGIN', (334,), 'AUTH')
            await c.cmd(_b64(user), (334,), 'AUTH')
            await c.cmd(_b64(pw), (235,), 'AUTH')
    await c.cmd('MAIL FROM:<%s>' % cfg['smtp_from'], (250,), 'MAIL FROM')
    n = 0
    for rcpt in str(cfg['smtp_to']).split(','):
        rcpt = rcpt.strip()
        if rcpt:
            await c.cmd('RCPT TO:<%s>' % rcpt, (250, 251), 'RCPT TO')
            n += 1
    if not n:
        raise SmtpError('no recipient')
    await c.cmd('DATA', (354,))
    await c.send(build_message(cfg, subject, body, t))
    await c.reply((250,), 'message')
    try:
        await c.cmd('QUIT', (221,))
    except Exception:
        pass


async def send_alarm_mail(cfg, e, send=None):
    """One alarm event (alarms.py) as a mail; `send` replaces send_mail (tests)."""
    host = _opt(cfg, 'hostname') or ''
    subject = 'Meter alarm%s: %s' % ((' (%s)' % host) if host else '', e['text'])
    body = '%s\n\nAlarm %d (%s), threshold %s %s, value %s %s.\n' % (
        e['text'], e['alarm'], e['kind'], e['threshold'], e['unit'], e['value'], e['unit'])
    if e.get('time') is not None:
        body += 'Reading time: %s UTC\n' % rfc_date(int(e['time']))
    await (send or send_mail)(cfg, subject, body)
