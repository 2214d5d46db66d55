# The link engine and poller against the meter simulator in virtual time: the happy path,
# every fault the simulator can inject, wrong keys, dead meters and the alert chain.
from vbench import Bench, check_reading, KEY
from mep import frames
from mep import requests as rq
from mep.jobs import Job, PRIO_USER


def started(b, limit=20000):
    ok = b.run_until(lambda: len(b.readings) >= 2, limit)
    assert ok, 'no readings: %r' % (b.eng.status(),)


def test_startup_adopts_seq_and_reads_everything():
    b = Bench()
    started(b)
    st = b.eng.status()
    assert st['link'] == 'ok'
    assert st['counters']['seq_errors'] == 1          # the first request after boot
    assert b.eng.seq == b.meter.expected_seq
    info = b.poller.info
    assert info['manufacturer'] and info['model'] and info['serial']
    assert '.' in info['fw']
    for name in ('bt52', 'bt01', 'bt21', 'et03', 'et11', 'et13', 'et50'):
        assert name in b.poller.tables, name
    assert b.line_log[0][:2] == ('enable', False)
    assert ('enable', True) in [x[:2] for x in b.line_log]


def test_readings_match_meter_truth():
    b = Bench()
    started(b)
    for _ in range(20):
        n = len(b.readings)
        b.run_until(lambda: len(b.readings) > n, 5000)
        snap = b.meter.model.snapshot()
        err = check_reading(b.readings[-1], snap)
        assert err is None, err
    r = b.readings[-1]
    assert r['e_in'] is not None and r['e_in'] >= 0
    assert r['time'] >= 1763700000


def _tables_in(b, ms):
    n23 = b.meter.stats['by_table'].get(rq.BT23, 0)
    n28 = b.meter.stats['by_table'].get(rq.BT28, 0)
    n = len(b.readings)
    b.run(ms)
    return (b.meter.stats['by_table'].get(rq.BT23, 0) - n23,
            b.meter.stats['by_table'].get(rq.BT28, 0) - n28, len(b.readings) - n)


def test_fast_mode_reads_bt28_back_to_back_and_bt23_at_its_interval():
    b = Bench(fast=True, bt23_ms=1000)
    started(b)
    d23, d28, got = _tables_in(b, 10000)
    assert 9 <= d23 <= 11, d23                     # the energies once a second
    assert d28 - 1 <= got <= d28, (got, d28)       # every BT28 a reading (one in flight)
    # the wire time of 10 BT23 partial reads (22+29 bytes) and their turnarounds, the rest
    # BT28 (19+233 bytes) back to back
    t28 = (19 + 233) * 1.0416667 + 20
    floor = (10000 - d23 * ((22 + 29) * 1.0416667 + 20)) / t28
    assert d28 >= floor * 0.87, (d28, floor)
    assert b.poller.cycle_ms is not None
    assert all(r['e_in'] is not None for r in b.readings[1:])
    err = check_reading(b.readings[-1], b.meter.model.snapshot())
    assert err is None, err


def test_fast_mode_never_starves_bt28():
    # an energy interval of 0, or a meter slower than the interval: BT23 and BT28 alternate
    for bt23_ms, turnaround in ((0, 20), (1000, 1200)):
        b = Bench(fast=True, bt23_ms=bt23_ms, turnaround_ms=turnaround)
        started(b, 60000)
        d23, d28, got = _tables_in(b, 30000)
        assert abs(d23 - d28) <= 1 and d28 >= 8, (bt23_ms, turnaround, d23, d28)


def test_slow_mode_respects_intervals():
    b = Bench(fast=False, bt23_ms=5000, bt28_ms=2000)
    started(b, 30000)
    n23 = b.meter.stats['by_table'].get(rq.BT23, 0)
    n28 = b.meter.stats['by_table'].get(rq.BT28, 0)
    b.run(60000)
    d23 = b.meter.stats['by_table'].get(rq.BT23, 0) - n23
    d28 = b.meter.stats['by_table'].get(rq.BT28, 0) - n28
    assert 10 <= d23 <= 14, d23
    assert 28 <= d28 <= 32, d28


def fault_case(fault, count=1, alert=True, **kw):
    b = Bench()
    started(b)
    b.meter.inject(fault, count, **kw)
    if alert:
        b.meter.alert(b.t)
    t_fault = b.t
    ok = b.run_until(lambda: len(b.readings_after(t_fault + 2000)) >= 2, 120000)
    assert ok, '%s: no readings after the fault: %r' % (fault, b.eng.status())
    err = check_reading(b.readings[-1], b.meter.model.snapshot())
    assert err is None, (fault, err)
    if alert:
        ok = b.run_until(lambda: b.alert_done() and b.settled(), 60000)
        assert ok, '%s: alert not answered: %r' % (fault, b.eng.status()['alert'])
    b.run(3000)
    assert not b.eng.alerts.active()
    assert b.eng.status()['link'] == 'ok', b.eng.status()
    return b


def test_fault_silence_resends_identical_frame():
    b = fault_case('silence', 1, alert=False)
    assert b.eng.c['timeouts'] >= 1 and b.eng.c['retransmits'] >= 1
    frames_ = [f for t, f in b.written]
    # the frame after a timeout is byte-identical (same SEQ and digest)
    dup = [i for i in range(1, len(frames_)) if frames_[i] == frames_[i - 1]]
    assert dup, 'no identical retransmission'


def test_short_silence_does_not_power_cycle():
    b = fault_case('silence', 6, alert=False)       # a few seconds: resends, no cycle
    assert b.eng.c['timeouts'] >= 3
    assert b.eng.c['power_cycles'] == 0


def test_fault_long_silence_power_cycles_after_10s():
    b = Bench()
    started(b)
    t0 = b.t
    b.meter.inject('silence', 40)
    b.run_until(lambda: b.eng.c['power_cycles'] >= 1, 60000)
    offs = [x for x in b.line_log if x[0] == 'driver' and x[1] is False]
    assert offs, b.eng.status()
    assert offs[0][2] - t0 >= 10000, offs[0][2] - t0   # only after 10 s of silence
    b.meter.faults.clear()
    assert b.run_until(lambda: len(b.readings_after(b.t)) >= 2, 120000)


def test_fault_partial_frame():
    b = fault_case('partial', 2)
    assert b.eng.c['timeouts'] >= 1


def test_fault_garbage_before_response():
    b = fault_case('garbage', 3)
    assert b.eng.c['resyncs'] >= 1


def test_fault_garbage_instead_of_response():
    fault_case('garbage_only', 2)


def test_one_auth_failure_does_not_stop_the_link():
    b = Bench()
    started(b)
    b.meter.inject('auth', 1)
    n = len(b.readings)
    b.run_until(lambda: b.eng.c['auth_failures'] >= 1, 10000)
    assert b.run_until(lambda: len(b.readings) >= n + 3, 5000), b.eng.status()
    st = b.eng.status()
    assert st['link'] == 'ok' and st['counters']['auth_retries'] == 1
    assert 'MBK' not in (b.eng.last_error or '')


def test_persistent_auth_failures_back_off():
    b = Bench()
    started(b)
    b.meter.inject('auth', 3)
    b.run_until(lambda: b.eng.c['auth_failures'] >= 3, 10000)
    assert b.eng.status()['link'] == 'auth failed'
    assert 'check the MBK' in b.eng.last_error
    n = b.meter.stats['requests']
    b.run(25000)
    assert b.meter.stats['requests'] == n          # backing off, not hammering
    ok = b.run_until(lambda: len(b.readings_after(b.t)) >= 1, 30000)
    assert ok and b.eng.status()['link'] == 'ok'


def test_alert_answered_during_auth_backoff_when_key_worked():
    b = Bench()
    started(b)
    b.meter.inject('auth', 3)
    b.run_until(lambda: b.eng.status()['link'] == 'auth failed', 10000)
    b.meter.alert(b.t)
    assert b.run_until(lambda: b.meter.alerts_answered >= 1, 10000), b.eng.status()


def test_wrong_key_never_hammers():
    b = Bench(meter_key=b'ZZZZZZZZZZZZZZZZ')
    b.run(600000)                                   # ten minutes
    assert b.readings == []
    st = b.eng.status()
    assert st['link'] == 'auth failed' and 'check the MBK' in st['last_error']
    assert b.meter.stats['requests'] <= 8, b.meter.stats['requests']
    assert b.meter.stats['auth_failures'] == b.meter.stats['requests']


def test_fault_seq_storm():
    b = fault_case('seq_storm', 3)
    assert b.eng.c['seq_errors'] >= 4


def test_fault_seq_jump():
    b = fault_case('seq_jump', 1)
    assert b.eng.c['seq_errors'] >= 2              # the boot one and the jump


def test_fault_alert_mid_poll():
    b = fault_case('alert_mid', 1, alert=False)
    b.run_until(lambda: b.meter.alerts_answered >= 1, 20000)
    assert b.meter.alerts_answered >= 1


def test_fault_alert_in_resync():
    b = fault_case('alert_resync', 1, alert=False)
    b.run_until(lambda: b.meter.alerts_answered >= 1, 20000)
    assert b.meter.alerts_answered >= 1
    assert b.eng.c['seq_errors'] >= 2


def test_fault_onp_on_procedure_moves_pseq():
    b = Bench()
    started(b)
    b.meter.inject('onp', 1)
    b.meter.alert(b.t)
    ok = b.run_until(b.alert_done, 20000)
    assert ok, b.eng.status()
    assert b.eng.c['pseq_errors'] == 1
    assert b.eng.alerts.outcome == 'done'


def test_fault_slow_meter():
    fault_case('slow', 3, turnaround_ms=400)


def test_alert_chain_bt08_and_latency():
    b = Bench()
    started(b)
    for k in range(3):
        b.meter.alert(b.t)
        ok = b.run_until(lambda: b.alert_done(k + 1), 10000)
        assert ok
        b.run(2000)
    assert b.eng.alerts.handled == 3 and b.eng.alerts.failed == 0
    assert max(b.meter.alert_latency_ms) < 2000, b.meter.alert_latency_ms
    assert b.eng.alerts.result['result_text'] == 'completed'


def test_alert_chain_et58():
    b = Bench()
    b.meter.model.et58 = True
    started(b)
    b.meter.alert(b.t)
    assert b.run_until(lambda: b.meter.alerts_answered >= 1, 10000)
    assert b.eng.alerts.mep_flags & 0x02


def test_alert_chain_always_ends_when_meter_dies():
    b = Bench()
    started(b)
    b.meter.alert(b.t)
    b.run(60)                                     # the alert is on the wire
    b.meter.inject('silence', 1000)
    b.run(120000)
    st = b.eng.alerts.status()
    assert st['state'] == 'idle'
    assert st['outcome'] in ('timed out',) or st['outcome'].startswith('failed')
    # the meter comes back: the next alert starts a new chain
    b.meter.faults.clear()
    b.run_until(lambda: b.eng.status()['link'] == 'ok', 180000)
    b.meter.alert(b.t)
    assert b.run_until(lambda: b.meter.alerts_answered >= 1 and not b.eng.alerts.active(),
                       30000), b.eng.status()
    assert b.eng.alerts.outcome == 'done'


def test_dead_meter_backs_off_and_recovers():
    b = Bench()
    started(b)
    b.meter.inject('silence', 100000)
    t0 = b.t
    b.run(600000)
    st = b.eng.status()
    assert st['link'] == 'no answer'
    writes = len([1 for t, f in b.written if t > t0])
    assert writes < 200, writes                    # bounded, not a tight loop
    cycles = b.eng.c['power_cycles']
    assert 2 <= cycles < 60, cycles
    b.meter.faults.clear()
    assert b.run_until(lambda: len(b.readings_after(b.t)) >= 1, 180000)


def test_alert_preempts_polls_and_user_jobs():
    b = Bench()
    started(b)
    got = []
    for _ in range(3):
        b.eng.submit(Job(rq.full_read(rq.BT01), PRIO_USER, got.append))
    b.meter.alert(b.t)
    b.run_until(lambda: b.meter.alerts_answered >= 1, 10000)
    # the chain ran before the queued user reads finished
    assert len(got) < 3 or b.eng.alerts.handled == 1
    b.run_until(lambda: len(got) == 3, 10000)
    assert all(j.ok() for j in got)
    assert got[0].response.data[:3]


def test_seq_assigned_at_transmission_no_cascade():
    b = Bench()
    started(b)
    got = []
    for _ in range(5):
        b.eng.submit(Job(rq.full_read(rq.BT52), PRIO_USER, got.append))
    b.meter.inject('seq_jump', 1)
    before = b.eng.c['seq_errors']
    b.run_until(lambda: len(got) == 5, 20000)
    assert all(j.ok() for j in got)
    assert b.eng.c['seq_errors'] - before == 1


def test_queue_is_bounded():
    b = Bench()
    started(b)
    accepted = 0
    for _ in range(20):
        accepted += b.eng.submit(Job(rq.full_read(rq.BT01), PRIO_USER))
    assert accepted == b.eng.queue.size
    assert b.eng.queue.rejected == 20 - accepted


def test_no_key_means_no_traffic():
    b = Bench(key=None)
    b.run(10000)
    assert b.written == []
    assert b.eng.status()['link'] == 'no key'
    got = []
    b.eng.submit(Job(rq.full_read(rq.BT01), PRIO_USER, got.append))
    b.run(100)
    assert got and got[0].error == 'no MBK configured'


def test_exchange_log_bounded_and_complete():
    b = Bench()
    started(b)
    b.run(20000)
    log = b.eng.log.items
    assert len(log) == b.eng.log.size
    e = log[-1]
    assert e['req'][:2] == bytes((0, len(e['req']) - 2))
    assert e['resp'] is not None and e['status'] == 0 and e['text'] == 'ok'
    assert e['desc'] and e['seq'] is not None and e['ms'] > 0
