# Frames captured on real NES meters (published in the original firmware's public issue
# threads, see tests/host/data/captures.json): the decoder, the table decoders and the request
# parser must agree with what the meters sent and with the values shown next to them.
from support import load_json, unhex
from mep import frames as fr
from mep import requests as rq
from mep import tables as t
from mep.frames import Decoder, EV_FRAME

CAPS = load_json('captures.json')

TABLE_IDS = {'BT23': rq.BT23, 'BT28': rq.BT28}


def feed_all(dec, frame, size):
    events = []
    for i in range(0, len(frame), size):
        events += dec.feed(frame[i:i + size])
    return events


def one_frame(frame, size, expect=fr.EXPECT_ANY):
    dec = Decoder()
    dec.expect = expect
    events = feed_all(dec, frame, size)
    assert len(events) == 1, (size, events)
    assert events[0][0] == EV_FRAME, (size, events)
    assert dec.pending() == 0 and dec.resyncs == 0
    return events[0][1]


def check_expect(cid, got, expect):
    for name in expect:
        if name == 'values':
            for k in expect['values']:
                assert got['values'][int(k)] == expect['values'][k], (cid, k)
        else:
            assert name in got, (cid, name)
            assert got[name] == expect[name], (cid, name, got[name], expect[name])


def test_data_file_holds_the_captures():
    assert len(CAPS) >= 8
    tables = [c['table'] for c in CAPS if c['status'] == 0]
    assert tables.count('BT23') >= 3 and tables.count('BT28') >= 4
    assert [c for c in CAPS if c['status'] == fr.STATUS_SEQ]
    ids = [c['id'] for c in CAPS]
    for c in CAPS:
        assert ids.count(c['id']) == 1, c['id']
        assert 'github.com/DabblerDK/MEP-SW-ESP32/issues/' in c['source'], c['id']
        frame = unhex(c['response'])
        assert len(frame) == ((frame[0] << 8) | frame[1]) + 2, c['id']
        assert frame[2] == c['status'], c['id']


def test_responses_whole_and_byte_by_byte():
    for c in CAPS:
        frame = unhex(c['response'])
        trailer = unhex(c['trailer'])
        for size in (len(frame), 1, 7):
            r = one_frame(frame, size)
            assert r.status == c['status'], c['id']
            assert r.raw == frame, c['id']
            assert r.trailer == trailer, c['id']
            if c['status'] == fr.STATUS_OK:
                assert r.count == c['count'], c['id']
                assert len(r.data) == c['count'], c['id']
                assert r.data == frame[5:5 + c['count']], c['id']
            else:
                assert r.count is None, c['id']


def test_read_responses_also_when_a_read_is_expected():
    n = 0
    for c in CAPS:
        if c['status'] != fr.STATUS_OK:
            continue
        r = one_frame(unhex(c['response']), 1, fr.EXPECT_READ)
        assert r.count == c['count'], c['id']
        n += 1
    assert n >= 7


def test_all_captures_back_to_back_in_one_stream():
    stream = b''.join(unhex(c['response']) for c in CAPS)
    for size in (1, 13, len(stream)):
        dec = Decoder()
        events = feed_all(dec, stream, size)
        assert [e[0] for e in events] == [EV_FRAME] * len(CAPS), size
        for c, e in zip(CAPS, events):
            assert e[1].raw == unhex(c['response']), (size, c['id'])
        assert dec.pending() == 0


def test_table_values_match_the_issue_text():
    n = 0
    for c in CAPS:
        if c['status'] != fr.STATUS_OK:
            continue
        r = one_frame(unhex(c['response']), 1)
        table = TABLE_IDS[c['table']]
        got = t.decode(table, r.data)          # BT21 unknown: offsets 0, as on these meters
        assert got is not None, c['id']
        check_expect(c['id'], got, c['expect'])
        n += len(c['expect'])
        if 'expect_ref' in c:
            check_expect(c['id'], got, c['expect_ref'])
        if table == rq.BT28:
            assert len(got['values']) == t.BT28_VALUES, c['id']
            assert got['values'] == t.bt28_values(r.data), c['id']
        else:
            assert len(r.data) == 220 and 'eq_fwd' in got, c['id']
    assert n >= 50


def test_bt23_full_reads_hold_the_same_energies_twice():
    # A full BT23 read on these meters is five 44-byte blocks (the totals, then four tiers):
    # 8 values and 12 zero bytes, then tier 1 = the totals with values 4 and 5 zero, then
    # zeros. This pins every zero run inside the data, which a transcription slip would shift.
    n = 0
    for c in CAPS:
        if c['status'] == fr.STATUS_OK and c['table'] == 'BT23':
            d = unhex(c['response'])[5:-8]
            assert len(d) == 5 * 44, c['id']
            assert t.i32(d, 0) == c['expect']['e_fwd'], c['id']
            assert t.i32(d, 4) == c['expect']['e_rev'], c['id']
            for k in range(8):
                tier = t.i32(d, 44 + 4 * k)
                assert tier == (0 if k in (4, 5) else t.i32(d, 4 * k)), (c['id'], k)
                assert k in (4, 5) or tier != 0, (c['id'], k)
            assert d[32:44] == bytes(12) and d[76:] == bytes(220 - 76), c['id']
            n += 1
    assert n >= 3


def test_seq_error_gives_the_next_seq():
    n = 0
    for c in CAPS:
        if c['status'] != fr.STATUS_SEQ:
            continue
        r = one_frame(unhex(c['response']), 1)
        want = int(c['expected_seq'], 16)
        assert r.expected_seq() == want, c['id']
        assert r.data == unhex(c['expected_seq']), c['id']
        req = fr.parse_request(unhex(c['request']))
        assert want == req.seq + 1, c['id']          # as the issue thread shows
        n += 1
    assert n >= 1


def test_requests_parse_and_match_their_table():
    n = 0
    for c in CAPS:
        if 'request' not in c:
            continue
        raw = unhex(c['request'])
        req = fr.parse_request(raw)
        assert len(raw) == ((raw[0] << 8) | raw[1]) + 2 == 19, c['id']
        assert req.seq == int(c['seq'], 16), c['id']
        assert req.raw == raw and req.digest == raw[-8:], c['id']
        m = rq.parse_message(req.message)
        assert m.service == rq.FULL_READ and m.is_read(), c['id']
        assert m.table == TABLE_IDS[c['table']], c['id']
        assert m.max_len == fr.MAX_TABLE == 512, c['id']
        assert m.offset is None and m.count is None, c['id']
        # The firmware builds the same MSG, and frames it the same way (LEN | MSG | SEQ);
        # only the digest depends on the meter's key, which the captures do not give.
        assert rq.full_read(m.table) == req.message, c['id']
        mine = fr.encode_request(req.message, req.seq, b'0123456789ABCDEF')
        assert mine[:-8] == raw[:-8], c['id']
        n += 1
    assert n >= 8
