# Golden vectors, byte for byte, and the MBK forms users type.
from support import raises, load_json, unhex
from mep.digest import digest, key_from_mbk
from mep.frames import encode_request

VEC = load_json('mep-digest.json')


def test_golden_frames():
    n = 0
    for v in VEC['frames']:
        key = key_from_mbk(v['key'])
        frame = encode_request(unhex(v['message']), v['seq'], key)
        assert frame == unhex(v['frame']), v['what']
        n += 1
    assert n >= 15


def test_golden_digests():
    for v in VEC['digests']:
        got = digest(unhex(v['data']), key_from_mbk(v['key']))
        assert got == unhex(v['digest']), len(v['data'])
    assert len(VEC['digests']) >= 9


def test_digest_covers_every_byte():
    key = key_from_mbk('ABCDEFGHIJKLMNOPQRST')
    base = bytes(range(200))
    d0 = digest(base, key)
    for i in (0, 1, 100, 191, 192, 199):
        b = bytearray(base)
        b[i] ^= 0x01
        assert digest(bytes(b), key) != d0, i


def test_digest_needs_16_byte_key():
    e = raises(ValueError, digest, b'abc', b'short')
    assert '16' in str(e)


def test_mbk_ascii_forms():
    assert key_from_mbk('ABCDEFGHIJKLMNOPQRST') == b'ABCDEFGHIJKLMNOP'
    assert key_from_mbk('  53540BEEB79D0514AC00 \n') == b'53540BEEB79D0514'
    assert key_from_mbk('ABCDEFGHIJKLMNOP') == b'ABCDEFGHIJKLMNOP'


def test_mbk_hex_forms():
    # "53540BEEB79D0514AC00" written as 40 hex digits of its ASCII codes
    hex40 = ''.join('%02x' % ord(c) for c in '53540BEEB79D0514AC00')
    assert key_from_mbk(hex40) == b'53540BEEB79D0514'
    assert key_from_mbk(hex40.upper()) == b'53540BEEB79D0514'
    hex32 = ''.join('%02x' % ord(c) for c in 'ABCDEFGHIJKLMNOP')
    assert key_from_mbk(hex32) == b'ABCDEFGHIJKLMNOP'


def test_mbk_hex_and_ascii_give_same_frames():
    mbk = '0123456789abcdefghij'
    hex40 = ''.join('%02x' % ord(c) for c in mbk)
    a = encode_request(unhex('3000340200'), 7, key_from_mbk(mbk))
    b = encode_request(unhex('3000340200'), 7, key_from_mbk(hex40))
    assert a == b


def test_mbk_bad_inputs_explain_and_do_not_echo():
    for bad in ('', 'ABC', 'ABCDEFGHIJKLMNOPQRSTU', 'ABCDEFGHIJ KLMNOPQRS', '12345678901234567',
                'x' * 40, 'ABCDEFGHIJKLMNOPQRS\x01'):
        e = raises(ValueError, key_from_mbk, bad)
        msg = str(e)
        assert '20' in msg and 'ASCII' in msg or 'hex' in msg, msg
        assert 'looks like hex' in msg, msg
        if len(bad) > 3:
            assert bad.strip() not in msg, 'the key must not be echoed'
    raises(ValueError, key_from_mbk, None)
