# Random and mutated byte streams through the decoder and the link: zero unhandled
# exceptions, bounded buffers, and recovery within one frame. The default count keeps CI
# fast; MEP_FUZZ_FULL=1 runs the full 100 000 streams (CPython: `./dev test -k fuzz`).
import os

from support import unhex
from mep import frames as fr
from mep.frames import Decoder, EV_FRAME
from mep.engine import Engine
from mep.jobs import Job, PRIO_USER
from mep import requests as rq


def _count(default):
    try:
        if os.getenv('MEP_FUZZ_FULL'):
            return 100000
    except AttributeError:          # MicroPython builds without getenv
        pass
    return default


class Rand:
    def __init__(self, seed):
        self.s = seed or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n

    def bytes(self, n):
        return bytes(self.below(256) for _ in range(n))


def read_resp(data):
    n = len(data) + 11
    return bytes((n >> 8, n & 0xFF, 0, len(data) >> 8, len(data) & 0xFF)) + data + b'T' * 8


def mutate(r, frame):
    """Flip, delete or insert bytes, or cut the tail (slicing: MicroPython's bytearray has
    no item deletion)."""
    b = bytes(frame)
    for _ in range(1 + r.below(4)):
        op = r.below(4)
        i = r.below(len(b) + 1)
        if op == 0 and i < len(b):
            b = b[:i] + bytes((r.below(256),)) + b[i + 1:]
        elif op == 1 and i < len(b):
            b = b[:i] + b[i + 1:]
        elif op == 2:
            b = b[:i] + bytes((r.below(256),)) + b[i:]
        else:
            b = b[:i]
    return b


def stream(r):
    """Garbage or a mutated frame, then two good frames separated by a quiet line."""
    kind = r.below(3)
    if kind == 0:
        bad = r.bytes(r.below(600))
    elif kind == 1:
        bad = mutate(r, read_resp(r.bytes(r.below(300))))
    else:
        bad = r.bytes(r.below(8)) + b'\x00\x00' + mutate(r, read_resp(r.bytes(20)))
    good1 = read_resp(r.bytes(r.below(240)))
    good2 = read_resp(r.bytes(r.below(240)))
    return bad, good1, good2


def chunks(r, data):
    i = 0
    out = []
    while i < len(data):
        n = 1 + r.below(64)
        out.append(data[i:i + n])
        i += n
    return out


def test_decoder_fuzz():
    r = Rand(12345)
    n = _count(3000)
    lost = 0
    for _ in range(n):
        bad, good1, good2 = stream(r)
        d = Decoder()
        got = []
        for c in chunks(r, bad):
            got += d.feed(c)
            if d.pending() > fr.MAX_FRAME:
                raise AssertionError('buffer grew past one frame')
        got += d.idle()                       # the line goes quiet after the bad part
        for c in chunks(r, good1 + good2):
            got += d.feed(c)
        got += d.idle()
        datas = [e[1].data for e in got if e[0] == EV_FRAME]
        # recovery within one frame: the second good frame is always decoded
        assert datas and datas[-1] == good2[5:-8], 'lost the frame after the next one'
        if good1[5:-8] not in datas:
            lost += 1
        assert d.pending() == 0
    # after a quiet line the decoder is in sync again: the first good frame survives too
    assert lost == 0, lost


def test_link_fuzz_never_raises_and_recovers():
    r = Rand(777)
    n = _count(100)
    key = b'ABCDEFGHIJKLMNOP'
    eng = Engine(key)
    eng.s.settle_ms = 0
    t = 0
    for _ in range(n):
        done = []
        eng.submit(Job(rq.full_read(rq.BT01), PRIO_USER, done.append))
        for _ in range(5):
            eng.step(t)
            t += 1
        if eng.state != 'wait-first':
            eng.step(t)
        bad, good1, good2 = stream(r)
        for c in chunks(r, bad):
            eng.on_bytes(c, t)
            eng.step(t)
            t += 1
        # the meter then answers properly (as after a retransmission)
        t += 200
        eng.step(t)
        for _ in range(3):
            if done:
                break
            eng.on_bytes(good1, t)
            eng.step(t)
            t += 700
            eng.step(t)
        if not done:
            t += 20000
            for _ in range(20):
                eng.step(t)
                eng.on_bytes(good1, t)
                t += 5000
        assert done, eng.status()
        t += 100
        eng.step(t)
    st = eng.status()
    assert st['counters']['callback_errors'] == 0
    assert len(eng.queue) == 0
