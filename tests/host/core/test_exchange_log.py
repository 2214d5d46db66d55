# The link's exchange log: the last 16 exchanges as the tinker page lists them, kept in
# storage allocated at start: nothing an exchange hands over stays in the heap.
from mep.jobs import ExchangeLog, LOG_ROOM


def frame(n, seed):
    return bytes(((seed + k) & 0xFF for k in range(n)))


def exchanges(count):
    """(args of ExchangeLog.add, the entry it must list as): polls (a 27-byte request and
    a 235-byte answer, as BT28), a long user read that does not fit a slot, a dropped answer
    (no request, no SEQ) and a job that failed before an answer (no answer, no status)."""
    out = []
    for k in range(count):
        t = 1763700000 + k
        if k % 7 == 3:
            args = (t, 'user', b'\x30\x08\x32', 4000000000 + k, frame(20, k), frame(525, k),
                    0, 'ok', 900 + k)
        elif k % 7 == 5:
            args = (t, '-', 'duplicate answer drained', None, None, frame(12, k), 12,
                    'duplicate answer drained', 0)
        elif k % 7 == 6:
            args = (None, 'poll', b'\x30\x00\x1c', k, frame(27, k), None, None,
                    'no answer from the meter', 2500)
        else:
            args = (t, 'poll', b'\x30\x00\x1c', (2970706941 + k) & 0xFFFFFFFF, frame(27, k),
                    frame(235, k), 0, 'ok', 240 + k)
        want = dict(zip(('t', 'kind', 'desc', 'seq', 'req', 'resp', 'status', 'text', 'ms'),
                        args))
        want['n'] = k + 1
        out.append((args, want))
    return out


def test_lists_the_last_entries_as_they_were_added():
    log = ExchangeLog(16)
    assert log.items == [] and log.since(0) == []
    ex = exchanges(45)
    for args, _ in ex[:5]:
        log.add(*args)
    assert log.items == [w for _, w in ex[:5]]
    for args, _ in ex[5:]:
        log.add(*args)
    assert log.count == 45
    assert log.items == [w for _, w in ex[-16:]]
    assert log.since(40) == [w for _, w in ex[40:]]
    assert log.since(45) == []
    assert 235 + 27 <= LOG_ROOM < 525 + 20          # a poll fits a slot, a long read not


def test_an_entry_keeps_no_frame_of_its_own_in_the_heap():
    # what a poll logs is copied into the storage made at start, so nothing handed over
    # stays referenced (in the heap) for 16 exchanges: frames changed after add() are listed
    # as they were. A long read that does not fit a slot is kept as it was handed over.
    log = ExchangeLog(16)
    ex = exchanges(4)
    poll, user = ex[0], ex[3]
    assert poll[0][1] == 'poll' and user[0][1] == 'user'
    for args, want in (poll, user):
        req, resp = bytearray(args[4]), bytearray(args[5])
        log.add(*(args[:4] + (req, resp) + args[6:]))
        req[0] ^= 0xFF
        resp[-1] ^= 0xFF
    got = log.items
    assert got[0] == poll[1]                        # copied: unchanged
    assert got[1]['resp'] == resp and got[1]['resp'] != user[1]['resp']   # kept as handed
    assert isinstance(got[0]['req'], bytes) and isinstance(got[0]['resp'], bytes)
