# The poller on its own: what it asks for before the table layouts are known, the energy
# plausibility rules and readings from short BT28 tables. Jobs are answered by hand with
# real frames.Response objects, as the engine would.
from mep import requests as rq
from mep import frames
from mep import tables
from mep.poller import Poller, to_reading, MAX_W, REBASE_N, REBASE_MS, BT23_COUNT

EPOCH = 1763700000


def le32(v):
    v &= 0xFFFFFFFF
    return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, v >> 24))


BT21 = bytes((0, 0, 2, 4, 2, 1, 1, 4, 0, 55))


class Rig:
    def __init__(self, fast=True):
        self.jobs = []
        self.now = 0
        self.p = Poller(self.submit, lambda: EPOCH + self.now // 1000, fast=fast)
        self.readings = []
        self.p.on_reading(self.readings.append)

    def submit(self, job):
        self.jobs.append(job)
        return True

    def step(self, ms=10):
        self.now += ms
        self.p.step(self.now)

    def answer(self, data=None, error=None):
        job = self.jobs[-1]
        if error is None:
            job.response = frames.Response(0, data, bytes(8), b'', len(data))
        job.error = error
        job.finished = True
        job.done(job)
        return job

    def table_of_last(self):
        return self.jobs[-1].info.table

    def startup(self, bt21_ok=True):
        for _ in range(7):                     # the start-up tables, in order
            self.step()
            t = self.table_of_last()
            if t == rq.BT21:
                if bt21_ok:
                    self.answer(BT21)
                else:
                    self.answer(error='meter answered 0x02: unsupported request')
            else:
                self.answer(error='not needed here')


def bt23_data(e_fwd, e_rev=0, eq_fwd=0, eq_rev=0):
    return le32(e_fwd) + le32(e_rev) + le32(eq_fwd) + le32(eq_rev)


def bt28_data(n=55, p=500):
    return b''.join(le32(p if k == 0 else 1000 + k) for k in range(n))


def test_no_poll_before_bt21_is_known_and_it_is_retried_soon():
    r = Rig()
    r.startup(bt21_ok=False)
    n = len(r.jobs)
    for _ in range(300):                       # 3 s
        r.step()
    assert len(r.jobs) == n                    # nothing decoded without the layout
    asked = []
    for _ in range(300):                       # 6 s: the failed tables are read again
        r.step()                               # (after 5 s, doubling, while BT21 is missing)
        job = r.jobs[-1]
        if not job.finished:
            asked.append(job.info.table)
            if job.info.table == rq.BT21:
                break
            r.answer(error='not needed here')
    assert asked and asked[-1] == rq.BT21, asked
    r.answer(BT21)
    for _ in range(20):
        r.step()
        job = r.jobs[-1]
        if job.tag in ('bt23', 'bt28'):
            break
        if not job.finished:
            r.answer(error='not needed here')     # the other start-up tables
    assert r.jobs[-1].tag in ('bt23', 'bt28')


def poll_cycle(r, e_fwd, ms=1000, n28=55):
    """One BT23 + BT28 exchange `ms` after the last; returns the reading."""
    got = len(r.readings)
    while len(r.readings) == got:
        r.step(ms // 2)
        job = r.jobs[-1]
        if job.finished:
            continue
        if job.tag == 'bt23':
            r.answer(bt23_data(e_fwd))
        elif job.tag == 'bt28':
            r.answer(bt28_data(n28))
        else:
            r.answer(error='not needed here')      # a start-up table read again
    return r.readings[-1]


def test_energy_backwards_or_jumping_is_never_published():
    r = Rig()
    r.startup()
    assert poll_cycle(r, 1000000)['e_in'] == 1000000
    assert poll_cycle(r, 1000010)['e_in'] == 1000010
    assert poll_cycle(r, 999000)['e_in'] is None            # backwards
    jump = 1000010 + int(MAX_W * 10 / 3600) + 1000           # far more than 100 kW allows
    assert poll_cycle(r, jump)['e_in'] is None
    assert poll_cycle(r, 1000030)['e_in'] == 1000030         # the good counter goes on
    assert r.p.energy_dropped == 2


def test_a_new_counter_base_needs_consistent_values_over_a_minute():
    r = Rig()
    r.startup()
    poll_cycle(r, 5000000)
    published = []
    v = 100
    t0 = None
    for k in range(REBASE_N + 60):
        v += 5
        e = poll_cycle(r, v, ms=2000)['e_in']
        if t0 is None:
            t0 = r.now
        published.append((e, r.now - t0))
    assert published[0][0] is None
    first = [k for k, e in enumerate(published) if e[0] is not None][0]
    assert first + 1 >= REBASE_N and published[first][1] >= REBASE_MS - 2000, published[first]
    assert all(e is None for e, t in published[:first])
    published = [e for e, t in published]
    assert r.p.energy_rebased == 1
    assert published[-1] == v


def test_short_bt28_leaves_missing_values_absent():
    r = Rig()
    r.startup()
    reading = poll_cycle(r, 42, n28=12)
    assert reading['p_in'] == 500 and reading['i_l1'] == 1.004
    assert reading['pf_l1'] == 1.01                 # index 10 is there, 13 and later not
    assert 'pf_l2' not in reading and 'p_in_l1' not in reading and 'u_avg_l3' not in reading
    assert reading['e_in'] == 42


def test_to_reading_without_energies_has_none():
    r = to_reading([1, 2, 3], None, EPOCH, 1)
    assert r['p_in'] == 1 and r['q_in'] == 3 and 'q_out' not in r
    assert r['e_in'] is None and r['eq_out'] is None


def test_a_polls_job_is_sent_again_as_new_until_its_request_changes():
    r = Rig()
    seen = []                                  # (job, its state when submitted)
    submit = r.submit

    def snap(job):
        seen.append((job, job.finished, job.response, job.error, job.frame, job.attempts,
                     job.resends, job.message))
        return submit(job)
    r.p.submit = snap
    r.startup()
    poll_cycle(r, 1000)
    poll_cycle(r, 1001)
    polls = [s for s in seen if s[0].tag in ('bt23', 'bt28')]
    assert len(polls) == 4
    j23, j28 = polls[0][0], polls[1][0]
    assert j23.tag == 'bt23' and j28.tag == 'bt28'
    assert polls[2][0] is j23 and polls[3][0] is j28           # the same objects again
    for job, finished, resp, err, frame, attempts, resends, msg in polls:
        assert not finished and resp is None and err is None and frame is None
        assert attempts == 0 and resends == 0
    off = tables.bt23_offset(r.p.tables['bt21'])
    assert j23.message == rq.partial_read(rq.BT23, 0, off + BT23_COUNT)
    assert j28.message == rq.full_read(rq.BT28)
    assert len(r.readings) == 2 and r.readings[-1]['e_in'] == 1001
    # the meter refuses the full BT28 as too large: a new job reads it in part
    while r.jobs[-1].tag != 'bt28' or r.jobs[-1].finished:
        r.step(500)
        if r.jobs[-1].tag == 'bt23' and not r.jobs[-1].finished:
            r.answer(bt23_data(1002))
    job = r.jobs[-1]
    job.response = frames.Response(frames.STATUS_RSTL, b'', bytes(8), b'', None)
    job.error = 'meter answered 0x10: response too large'
    job.finished = True
    job.done(job)
    poll_cycle(r, 1003)
    p28 = [j for j in r.jobs if j.tag == 'bt28'][-1]
    assert p28 is not j28 and p28.info.service == rq.PARTIAL_READ
    # BT21 read again (a new object, same layout): the requests are made again from it
    r.p.tables['bt21'] = dict(r.p.tables['bt21'])
    poll_cycle(r, 1004)
    assert [j for j in r.jobs if j.tag == 'bt23'][-1] is not j23
    assert r.readings[-1]['e_in'] == 1004


def test_the_field_table_describes_every_value_of_a_reading_once():
    from mep.reading import rows, KEY, UNIT, BT28, DIV, METRIC, ENERGY_UNITS
    FIELDS = tuple(rows())
    keys = [f[KEY] for f in FIELDS]
    assert len(keys) == len(set(keys))
    idx = [f[BT28] for f in FIELDS if f[BT28] is not None]
    assert len(idx) == len(set(idx)) and max(idx) < tables.BT28_VALUES
    for f in FIELDS:
        assert f[UNIT] in ('W', 'var', 'VA', 'V', 'A', 'Hz', 'Wh', 'varh', ''), f
        assert (f[BT28] is None) == (f[UNIT] in ENERGY_UNITS), f      # energies: BT23
        assert f[DIV] in (1, 1000), f
    for i, f in enumerate(FIELDS):      # the phases of a value: together, one metric
        if f[KEY].endswith('_l1'):
            three = FIELDS[i:i + 3]
            assert [g[KEY] for g in three] == [f[KEY][:-1] + n for n in '123']
            assert len(set(g[METRIC] for g in three)) == 1
    # a reading from a full BT28 has exactly the table's keys (MicroPython's dicts keep no order)
    r = to_reading(list(range(tables.BT28_VALUES)), {'e_fwd': 1, 'e_rev': 2, 'eq_fwd': 3,
                                                     'eq_rev': 4}, EPOCH, 1)
    assert sorted(r) == sorted(['time', 'seq'] + keys)
    assert r['freq'] == 11 / 1000 and r['p_in_l1'] == 26 and r['e_in'] == 1 and r['eq_out'] == 4
