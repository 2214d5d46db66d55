# The incremental response decoder: any chunking, every check, resync after garbage.
from support import raises, unhex
from mep import frames as fr
from mep.frames import Decoder, EV_FRAME, EV_ALERT, EV_ERROR


def read_resp(data, trailer=b'TRAILER!'):
    n = 1 + 2 + len(data) + 8
    return bytes((n >> 8, n & 0xFF, 0, len(data) >> 8, len(data) & 0xFF)) + data + trailer


def err_resp(status, payload=b'', trailer=b'\x11' * 8):
    n = 1 + len(payload) + len(trailer)
    return bytes((n >> 8, n & 0xFF, status)) + payload + trailer


def kinds(events):
    return [e[0] for e in events]


def feed_chunks(dec, data, sizes):
    out = []
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out += dec.feed(data[i:i + n])
        i += n
        k += 1
    return out


def test_read_response_any_chunking():
    body = bytes(range(220))
    frame = read_resp(body)
    assert len(frame) == 233           # the BT28 capture's size
    for sizes in ([1], [2], [3, 7], [232, 1], [233], [5, 1, 100]):
        ev = feed_chunks(Decoder(), frame, sizes)
        assert kinds(ev) == [EV_FRAME], sizes
        r = ev[0][1]
        assert r.status == 0 and r.count == 220 and r.data == body
        assert r.trailer == b'TRAILER!' and r.raw == frame


def test_trailer_kept_never_checked():
    r = Decoder().feed(read_resp(b'\x01\x02', trailer=b'\x00' * 8))[0][1]
    assert r.trailer == b'\x00' * 8 and r.data == b'\x01\x02'


def test_alert_alone_and_before_response():
    d = Decoder()
    assert d.feed(b'\x00\x00') == []            # could still be a stray 00 before a frame
    assert kinds(d.idle()) == [EV_ALERT]
    ev = d.feed(b'\x00\x00' + read_resp(b'abc') + b'\x00\x00') + d.idle()
    assert kinds(ev) == [EV_ALERT, EV_FRAME, EV_ALERT]
    ev = feed_chunks(Decoder(), b'\x00\x00' + read_resp(b'abc'), [1])
    assert kinds(ev) == [EV_ALERT, EV_FRAME]


def test_seq_error_payload():
    d = Decoder()
    r = d.feed(err_resp(0x0C, unhex('8e2c000a')))[0][1]
    assert r.status == 0x0C and r.expected_seq() == 0x8E2C000A
    r = d.feed(err_resp(0x0C, unhex('00000007'), b''))[0][1]
    assert r.expected_seq() == 7 and r.trailer is None
    raises(fr.FrameError, fr.Response(0, b'', None, b'').expected_seq)


def test_error_and_write_ack_with_or_without_trailer():
    d = Decoder()
    for f in (err_resp(0x0B), err_resp(0x0B, trailer=b''), err_resp(0x00, trailer=b''),
              err_resp(0x00), err_resp(0x04)):
        ev = d.feed(f)
        assert kinds(ev) == [EV_FRAME], f
        assert ev[0][1].data == b''


def test_count_must_match_len_for_reads():
    bad = bytearray(read_resp(b'12345'))
    bad[4] = 6                           # COUNT 6 but 5 data bytes
    d = Decoder()
    d.expect = fr.EXPECT_READ
    ev = d.feed(bytes(bad)) + d.idle()
    assert EV_FRAME not in kinds(ev)
    assert EV_ERROR in kinds(ev)
    assert d.pending() == 0


def test_expect_write_refuses_read_shape():
    d = Decoder()
    d.expect = fr.EXPECT_WRITE
    ev = d.feed(read_resp(b'12')) + d.idle()
    assert EV_FRAME not in kinds(ev)


def test_unknown_status_and_huge_len_are_garbage():
    d = Decoder()
    ev = d.feed(b'\x00\x05\x77abcd')
    assert kinds(ev)[:1] == [EV_ERROR]
    ev = Decoder().feed(b'\xff\xff')
    assert kinds(ev) == [EV_ERROR]


def test_resync_after_garbage_finds_next_frame():
    good = read_resp(b'hello')
    for garbage in (b'\x13', b'\xff\x13\x99', b'\x30\x00\x17\x02', b'\x02\x00\x00\x00' * 5,
                    b'\x00\x20\x05', bytes(range(1, 40))):
        d = Decoder()
        ev = d.feed(garbage + good)
        ev += d.idle()
        frames_ = [e[1] for e in ev if e[0] == EV_FRAME]
        assert len(frames_) == 1 and frames_[0].data == b'hello', garbage
        assert d.resyncs >= 1
        assert d.pending() == 0


def test_partial_frame_then_silence_then_good_frame():
    good = read_resp(b'xyz')
    d = Decoder()
    assert d.feed(good[:10]) == []
    ev = d.idle()
    assert kinds(ev) == [EV_ERROR] and 'incomplete' in ev[0][1]
    assert d.pending() == 0
    assert kinds(d.feed(good)) == [EV_FRAME]


def test_a_cut_answer_is_not_mistaken_for_the_frames_inside_it():
    # a cut BT28-sized answer whose payload holds 00 01 01 (a 0x01 "unrecognised request")
    # and 00 01 42, then silence: no frame may come out of it, only a framing error; a
    # real frame behind garbage still does, and so does an alert after it
    data = bytes((7,)) * 40 + b'\x00\x01\x01' + bytes((9,)) * 30 + b'\x00\x01\x42\x5d' + \
        bytes((3,)) * 20
    cut = read_resp(data)[:100]
    d = Decoder()
    ev = d.feed(cut)
    assert ev == []
    ev = d.idle()
    assert kinds(ev) == [EV_ERROR] and 'incomplete' in ev[0][1], ev
    assert d.pending() == 0
    good = read_resp(b'ok')
    for tail in (b'', b'\x00\x00'):
        d = Decoder()
        ev = d.feed(b'\x13\x99' + good + tail) + d.idle()
        got = [e for e in ev if e[0] != EV_ERROR]
        assert [e[0] for e in got] == [EV_FRAME] + ([EV_ALERT] if tail else []), ev
        assert got[0][1].data == b'ok'


def test_buffer_never_exceeds_one_max_frame():
    d = Decoder()
    big = read_resp(bytes(512))
    assert len(big) == fr.MAX_FRAME
    ev = d.feed(b'\x01' + big + b'\x00\x00')
    ev += d.idle()
    assert len(d.buf) == fr.MAX_FRAME
    assert kinds(ev).count(EV_FRAME) == 1
    assert kinds(ev)[-1] == EV_ALERT
    # a read of 513 data bytes cannot be valid
    d = Decoder()
    ev = d.feed(read_resp(bytes(513))) + d.idle()
    assert EV_FRAME not in kinds(ev)
    assert len(d.buf) == fr.MAX_FRAME


def test_one_error_event_per_garbage_run():
    d = Decoder()
    ev = d.feed(b'\xee' * 300) + d.idle()
    assert kinds(ev) == [EV_ERROR]
    assert d.dropped == 300


def test_encode_request_checks():
    key = b'ABCDEFGHIJKLMNOP'
    f = fr.encode_request(unhex('3000340200'), 0, key)
    assert f == unhex('001130003402000000000071691ecd24e242b2')
    raises(fr.FrameError, fr.encode_request, b'\x30', -1, key)
    raises(fr.FrameError, fr.encode_request, b'\x30', 1 << 32, key)
    r = fr.parse_request(f)
    assert r.seq == 0 and r.message == unhex('3000340200') and r.digest_ok(key)
    assert not r.digest_ok(b'ABCDEFGHIJKLMNOQ')
    raises(fr.FrameError, fr.parse_request, f[:-1])


def test_status_text():
    assert 'MBK' in fr.status_text(0x0B)
    assert 'sequence' in fr.status_text(0x0C)
    assert '0x7f' in fr.status_text(0x7F)


def test_stray_zero_before_frame_is_not_an_alert():
    good = read_resp(b'hello')
    for prefix in (b'\x00', b'\x00\x00\x00', b'\xee\x00'):
        d = Decoder()
        ev = feed_chunks(d, prefix + good, [1]) + d.idle()
        assert EV_FRAME in kinds(ev), prefix
        if prefix == b'\x00\x00\x00':
            assert kinds(ev) == [EV_ALERT, EV_ERROR, EV_FRAME] or EV_ALERT in kinds(ev)
        else:
            assert EV_ALERT not in kinds(ev), prefix


def test_alert_then_long_frame():
    big = read_resp(bytes(300))         # LEN 0x0137: high byte non-zero
    d = Decoder()
    ev = feed_chunks(d, b'\x00\x00' + big, [1])
    assert kinds(ev) == [EV_ALERT, EV_FRAME]
    d = Decoder()
    ev = feed_chunks(d, b'\x00\x00\x00' + read_resp(b'x'), [1])   # alert, stray 00, frame
    assert kinds(ev) == [EV_ALERT, EV_ERROR, EV_FRAME]


def test_no_spurious_alerts_inside_garbage():
    d = Decoder()
    ev = d.feed(b'\xee' + bytes(40) + b'\xee\x00\x00\x13\x77') + d.idle()
    assert EV_ALERT not in kinds(ev[:1])
    assert kinds(ev).count(EV_ALERT) <= 1
