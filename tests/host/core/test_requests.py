from support import raises, unhex
from mep import requests as rq


def test_full_read_has_max_length():
    assert rq.full_read(rq.BT52) == unhex('30 0034 0200')
    assert rq.full_read(rq.ET50, 0x40) == unhex('30 0832 0040')


def test_partial_read_layout():
    assert rq.partial_read(rq.BT23, 0, 13) == unhex('3f 0017 000000 000d')
    assert rq.partial_read(rq.ET13, 0x110, 1) == unhex('3f 080d 000110 0001')
    raises(ValueError, rq.partial_read, rq.BT23, 1 << 24, 1)
    raises(ValueError, rq.partial_read, rq.BT23, 0, 1 << 16)


def test_writes():
    assert rq.full_write(0x0801, b'\x01\x02') == unhex('40 0801 0002 0102')
    assert rq.partial_write(0x0801, 5, b'\xaa') == unhex('4f 0801 000005 0001 aa')


def test_procedure_ep39_matches_vector():
    msg = rq.procedure(rq.EP39, 5, rq.ep39_params())
    assert msg == unhex('400007000d27080504010600010203040506')


def test_procedure_pseq_range_and_wrap():
    raises(ValueError, rq.procedure, rq.EP39, 4)
    raises(ValueError, rq.procedure, rq.EP39, 10)
    seq = [5]
    for _ in range(6):
        seq.append(rq.next_pseq(seq[-1]))
    assert seq == [5, 6, 7, 8, 9, 5, 6]


def test_parse_message_roundtrip():
    for msg in (rq.full_read(rq.BT28), rq.partial_read(rq.BT23, 3, 16),
                rq.procedure(rq.EP39, 7, rq.ep39_params()), rq.partial_write(2049, 1, b'xy')):
        m = rq.parse_message(msg)
        assert m.describe()
    m = rq.parse_message(rq.partial_read(rq.ET11, 1, 1))
    assert (m.service, m.table, m.offset, m.count) == (0x3F, rq.ET11, 1, 1)
    m = rq.parse_message(rq.procedure(rq.EP39, 8))
    assert m.is_procedure() and m.pseq() == 8
    assert 'procedure 0x0827 PSEQ 8' in m.describe()


def test_parse_message_errors_are_named():
    for bad in (b'', b'\x30\x00', b'\x3f\x00\x17', b'\x99\x00\x01\x02\x00',
                b'\x40\x00\x07\x00\x05\x01'):
        e = raises(ValueError, rq.parse_message, bad)
        assert str(e)


def test_table_names():
    assert rq.table_name(rq.ET50).startswith('ET50')
    assert rq.table_name(0x0899) == 'ET153'
    assert rq.table_name(0x0063) == 'BT99'
