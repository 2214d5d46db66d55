# Usage alarms (hysteresis, duration, repeat) and e-mail through a real SMTP server
# (aiosmtpd on loopback), plain, AUTH PLAIN/LOGIN and STARTTLS with a self-signed cert.
import asyncio
import email
import socket
import ssl
import tempfile
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import alarms
from net import smtp
from mqtt_broker import free_port, make_cert

SECRET = 'mail-SECRET-pw'


def cfg_with(*alarm_list, **kw):
    c = {'alarms': list(alarm_list), 'smtp_host': '', 'smtp_port': 25, 'smtp_starttls': False,
         'smtp_user': '', 'smtp_password': '', 'smtp_from': 'meter@example.org',
         'smtp_to': 'me@example.org', 'hostname': 'mepmod'}
    c.update(kw)
    return c


def alarm(kind='power_above', threshold=3000, seconds=10, hysteresis=200, repeat_min=0,
          enabled=True):
    return {'kind': kind, 'threshold': threshold, 'seconds': seconds,
            'hysteresis': hysteresis, 'repeat_min': repeat_min, 'enabled': enabled}


def rd(p_in=0.0, p_out=0.0, e_in=1000.0, t=1717243200):
    return {'time': t, 'seq': 1, 'p_in': p_in, 'p_out': p_out, 'e_in': e_in, 'e_out': 0.0}


def run_series(a, values, step_ms=1000, key='p_in'):
    """Feed one reading per step; -> [(step index, event)]."""
    out = []
    for n, v in enumerate(values):
        r = rd(t=1717243200 + n * step_ms // 1000)
        r[key] = v
        for e in a.feed(r, now_ms=n * step_ms):
            out.append((n, e))
    return out


def test_duration_needs_continuous_excess():
    a = alarms.Alarms(cfg_with(alarm(seconds=10)))
    # above for 9 s, then a dip to exactly the threshold: the count restarts
    vals = [3500] * 10 + [3000] + [3500] * 11
    ev = run_series(a, vals)
    assert [(n, e['state']) for n, e in ev] == [(21, 'on')]
    e = ev[0][1]
    assert e['kind'] == 'power_above' and e['unit'] == 'W' and e['value'] == 3500
    assert e['threshold'] == 3000 and not e['repeat'] and e['alarm'] == 0
    assert '3500' in e['text']


def test_hysteresis():
    a = alarms.Alarms(cfg_with(alarm(seconds=0, hysteresis=200)))
    vals = [3100, 2900, 2801, 3100, 2800, 2900, 3001]
    ev = run_series(a, vals)
    assert [(n, e['state']) for n, e in ev] == [(0, 'on'), (4, 'off'), (6, 'on')]
    assert a.active() == [0]


def test_repeat_interval():
    a = alarms.Alarms(cfg_with(alarm(seconds=5, repeat_min=1)))
    ev = run_series(a, [4000] * 200)          # 200 s above
    ons = [n for n, e in ev if e['state'] == 'on']
    assert ons == [5, 65, 125, 185]
    assert [e['repeat'] for _, e in ev] == [False, True, True, True]
    b = alarms.Alarms(cfg_with(alarm(seconds=5, repeat_min=0)))
    assert len(run_series(b, [4000] * 200)) == 1


def test_export_and_disabled_and_config_change():
    cfg = cfg_with(alarm('export_above', threshold=500, seconds=2, hysteresis=50),
                   alarm(threshold=100, seconds=0, enabled=False))
    a = alarms.Alarms(cfg)
    ev = run_series(a, [600, 600, 600, 440], key='p_out')
    assert [(n, e['state'], e['alarm']) for n, e in ev] == [(2, 'on', 0), (3, 'off', 0)]
    cfg['alarms'][0]['threshold'] = 1000            # a changed alarm starts over
    assert run_series(a, [800] * 5, key='p_out') == []


def test_energy_today_and_midnight():
    a = alarms.Alarms(cfg_with(alarm('energy_today_above', threshold=2.0, seconds=0,
                                     hysteresis=0)))
    day = 1717200000            # 2024-06-01 00:00 UTC
    ev = []
    for n, e_in in enumerate((50000, 51000, 52000, 52000.5, 52100)):
        ev += a.feed(rd(e_in=e_in, t=day + 3600 * (n + 1)), now_ms=n * 1000)
    assert [(e['state'], e['value']) for e in ev] == [('on', 2.001)]
    assert ev[0]['unit'] == 'kWh'
    ev = a.feed(rd(e_in=52200, t=day + 86400 + 60), now_ms=10000)   # next day
    assert [e['state'] for e in ev] == ['off']
    assert a.energy_today(rd(e_in=52300)) == 0.1


def test_energy_today_survives_a_reboot_through_the_history(tmp_path):
    from storage.store import Store
    cfg = cfg_with(alarm('energy_today_above', threshold=3.0, seconds=0, hysteresis=0),
                   timezone='<+02>-2')       # UTC+2, no daylight saving
    midnight = 1717200000 - 7200          # 2024-06-01 00:00 at UTC+2
    t0 = midnight - 1800                  # half an hour before local midnight
    st = Store(str(tmp_path), 60)
    st.load()
    a = alarms.Alarms(cfg, energy_since=st.energy_since)
    e = 100000.0
    for n in range(0, 3 * 3600, 60):      # 1 Wh a minute = 60 W, for 3 h
        r = rd(e_in=e, t=t0 + n)
        st.add(r)
        assert a.feed(r, now_ms=n * 1000) == []
        e += 1
    today = a.energy_today(rd(e_in=e - 1))
    # from the first reading of the day: 149 Wh (the history also counts the minute
    # that ended at midnight: 150 Wh)
    assert today == 0.149
    assert st.energy_since(midnight) == 150
    st.save()
    # reboot: new store from flash, new alarms; the next reading continues the day
    st2 = Store(str(tmp_path), 60)
    assert st2.load() is None
    b = alarms.Alarms(cfg, energy_since=st2.energy_since)
    r = rd(e_in=e + 2000, t=t0 + 3 * 3600 + 60)       # 2 kWh more during the reboot
    st2.add(r)
    ev = b.feed(r, now_ms=0)
    assert abs(b.energy_today(r) - (0.150 + 2.001)) < 1e-9
    assert ev == []                                   # 2.151 kWh < 3 kWh
    r = rd(e_in=e + 3000, t=t0 + 3 * 3600 + 120)
    st2.add(r)
    assert [x['state'] for x in b.feed(r, now_ms=1000)] == ['on']
    # without the history a reboot would have started the day at zero
    c = alarms.Alarms(cfg)
    c.feed(r, now_ms=0)
    assert c.energy_today(r) == 0


def test_feed_is_cheap(monkeypatch):
    """feed() never waits and works the time zone out once a local day, not per reading
    (periods/tz are loaded only then). The time per call is printed, not judged."""
    spans = []
    real = alarms._day_span
    monkeypatch.setattr(alarms, '_day_span', lambda cfg, t: spans.append(t) or real(cfg, t))
    a = alarms.Alarms(cfg_with(*[alarm(threshold=1000 + i, repeat_min=1) for i in range(8)]))
    t0 = time.perf_counter()
    for n in range(1000):
        ev = a.feed(rd(p_in=1500 + n % 7, t=1717243200 + n), now_ms=n * 1000)
        assert isinstance(ev, list)
    print('alarms.feed: %.1f us a reading (8 alarms)' % ((time.perf_counter() - t0) * 1e3))
    assert len(spans) == 1                        # 1000 readings in one local day
    for day in (1, 2, 3):
        a.feed(rd(p_in=1500, t=1717243200 + day * 86400), now_ms=10 ** 6 + day)
    assert len(spans) == 4                        # once more for each new day
    b = alarms.Alarms(cfg_with(alarm()), tz_offset_s=3600)
    b.feed(rd(p_in=1500, t=1717243200), now_ms=0)
    assert len(spans) == 4                        # a fixed offset needs no time zone code


# ---------- e-mail ----------
class Handler:
    def __init__(self):
        self.mails = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                           session.authenticated, getattr(session, 'ssl', None) is not None))
        return '250 OK'


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = auth_data.login == b'meter' and auth_data.password == b'right-pw'
    return AuthResult(success=ok, handled=False)


class Smtpd:
    def __init__(self, **kw):
        self.handler = Handler()
        self.port = free_port()
        self.c = Controller(self.handler, hostname='127.0.0.1', port=self.port, **kw)
        self.c.start()

    def close(self):
        self.c.stop()


@pytest.fixture
def smtpd():
    made = []

    def make(**kw):
        s = Smtpd(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


async def test_no_mail_below_one_per_repeat_interval_above(smtpd):
    srv = smtpd()
    cfg = cfg_with(alarm(seconds=10, repeat_min=1), smtp_host='127.0.0.1', smtp_port=srv.port,
                   smtp_to='me@example.org, you@example.org')
    mq = []
    a = alarms.Alarms(cfg)
    n = alarms.Notifier(cfg, mqtt=type('M', (), {'publish_alarm': lambda s, e: mq.append(e)})(),
                        log=lambda s: None)
    task = asyncio.create_task(n.run())
    # 5 minutes below the threshold (simulated clock), then 200 s above, then below again
    vals = [2500] * 300 + [3600] * 200 + [100] * 10
    for i, v in enumerate(vals):
        n.notify(a.feed(rd(p_in=v, t=1717243200 + i), now_ms=i * 1000))
        if i == 299:                                # nothing published, nothing queued
            assert n.stats()['queued'] == 0 and mq == [] and srv.handler.mails == []
    end = time.monotonic() + 10
    while n.stats()['sent'] + n.stats()['failed'] < 4 and time.monotonic() < end:
        await asyncio.sleep(0.05)
    n.stop()
    await asyncio.wait_for(task, 5)
    # on at 310 s, repeats at 370, 430, 490: four mails; the 'off' goes to MQTT only
    assert n.stats()['failed'] == 0, n.stats()['last_error']
    assert len(srv.handler.mails) == 4
    assert [e['state'] for e in mq] == ['on', 'on', 'on', 'on', 'off']
    frm, rcpts, content, _, _ = srv.handler.mails[0]
    assert frm == 'meter@example.org' and rcpts == ['me@example.org', 'you@example.org']
    msg = email.message_from_bytes(content)
    assert msg['Subject'].startswith('Meter alarm (mepmod): Power import is 3600')
    assert msg['Date'] and msg['Message-ID']
    assert 'threshold 3000' in msg.get_payload()


async def test_smtp_code_is_loaded_only_while_a_mail_goes_out(smtpd, monkeypatch):
    import sys
    import compat
    monkeypatch.setattr(compat, 'UNLOAD', True)     # as on MicroPython
    import net
    import web
    monkeypatch.delitem(sys.modules, 'net.smtp')
    monkeypatch.delattr(net, 'smtp')
    monkeypatch.delitem(sys.modules, 'web.legacy', raising=False)
    monkeypatch.delattr(web, 'legacy', raising=False)
    srv = smtpd()
    cfg = cfg_with(alarm(seconds=0), smtp_host='127.0.0.1', smtp_port=srv.port)
    a = alarms.Alarms(cfg)
    n = alarms.Notifier(cfg, log=lambda s: None)
    assert 'net.smtp' not in sys.modules
    task = asyncio.create_task(n.run())
    n.notify(a.feed(rd(p_in=5000, t=1717243200), now_ms=0))
    end = time.monotonic() + 10
    while n.stats()['sent'] + n.stats()['failed'] < 1 and time.monotonic() < end:
        await asyncio.sleep(0.05)
    n.stop()
    await asyncio.wait_for(task, 5)
    assert n.stats()['sent'] == 1, n.stats()['last_error']
    assert len(srv.handler.mails) == 1
    assert 'net.smtp' not in sys.modules
    assert 'web.legacy' not in sys.modules, 'the mail left the legacy endpoint code loaded'


async def test_auth_plain_and_login_and_wrong_password(smtpd):
    for excl in ([], ['PLAIN']):
        srv = smtpd(authenticator=authenticator, auth_require_tls=False,
                    auth_exclude_mechanism=excl)
        cfg = cfg_with(smtp_host='127.0.0.1', smtp_port=srv.port, smtp_user='meter',
                       smtp_password='right-pw')
        await smtp.send_mail(cfg, 'Test ümlaut', 'line 1\n.leading dot\nline 3')
        assert len(srv.handler.mails) == 1 and srv.handler.mails[0][3]
        msg = email.message_from_bytes(srv.handler.mails[0][2])
        assert str(email.header.make_header(email.header.decode_header(msg['Subject']))) == \
            'Test ümlaut'
        assert msg.get_payload().splitlines()[1] == '.leading dot'
    cfg['smtp_password'] = SECRET
    with pytest.raises(smtp.SmtpError) as ei:
        await smtp.send_mail(cfg, 's', 'b')
    assert 'AUTH' in str(ei.value) and '535' in str(ei.value)
    assert SECRET not in str(ei.value)


async def test_starttls_with_self_signed_cert(smtpd):
    certfile, keyfile = make_cert(tempfile.mkdtemp())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile, keyfile)
    srv = smtpd(tls_context=ctx, require_starttls=True, authenticator=authenticator,
                auth_require_tls=True)
    cfg = cfg_with(smtp_host='127.0.0.1', smtp_port=srv.port, smtp_user='meter',
                   smtp_password='right-pw', smtp_starttls=True)
    with open(certfile) as f:
        cfg['smtp_ca'] = f.read()          # self-signed: the certificate is its own CA
    await smtp.send_mail(cfg, 'over TLS', 'hello')
    assert len(srv.handler.mails) == 1
    assert srv.handler.mails[0][3] and srv.handler.mails[0][4]   # authenticated, over TLS
    # without STARTTLS the server refuses
    cfg['smtp_starttls'] = False
    with pytest.raises(smtp.SmtpError):
        await smtp.send_mail(cfg, 'plain', 'hello')


async def test_silent_server_times_out_without_blocking_the_loop():
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    lag = [0.0]
    ticks = [0]

    async def ticker():
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            lag[0] = max(lag[0], time.monotonic() - t0 - 0.01)
            ticks[0] += 1
    tick = asyncio.create_task(ticker())
    cfg = cfg_with(smtp_host='127.0.0.1', smtp_port=port)
    t0 = time.monotonic()
    ticks0 = ticks[0]
    with pytest.raises(smtp.SmtpError) as ei:
        await asyncio.wait_for(smtp.send_mail(cfg, 's', 'b', step_ms=400), 60)
    assert 'time-out' in str(ei.value)
    took = time.monotonic() - t0
    assert took >= 0.4                             # it waited for the step's time-out
    # the loop went on meanwhile: the ticker ran all along, not once at the end
    assert ticks[0] - ticks0 >= 3, (ticks[0] - ticks0, took)
    tick.cancel()
    lsock.close()
    print('time-out after %.2f s (step 0.4 s), longest loop lag %.3f s' % (took, lag[0]))
    # nothing listening: a clean error
    with pytest.raises(OSError):
        await smtp.send_mail(cfg_with(smtp_host='127.0.0.1', smtp_port=free_port()), 's', 'b',
                             step_ms=1000)


def test_rfc_date_and_notifier_queue_bound():
    assert smtp.rfc_date(0) == 'Thu, 01 Jan 1970 00:00:00 +0000'
    assert smtp.rfc_date(1717243200) == 'Sat, 01 Jun 2024 12:00:00 +0000'
    n = alarms.Notifier(cfg_with(smtp_host='x'), log=lambda s: None)
    for i in range(20):
        n.notify([{'state': 'on', 'alarm': 0, 'kind': 'power_above', 'text': str(i)}])
    assert n.stats()['queued'] == alarms.Mailer.QMAX and n.stats()['drops'] == 12
    assert n.mailer.q[0]['text'] == '12'
    quiet = alarms.Notifier(cfg_with(), log=lambda s: None)     # no SMTP host: no queue
    quiet.notify([{'state': 'on'}])
    assert quiet.stats()['queued'] == 0
