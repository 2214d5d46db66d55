# Table decoders against hand-built tables: named fields, signed LE integers, short tables.
from support import raises, unhex
from mep import tables as t
from mep import tables_startup as tx
from mep import requests as rq


def le32(v):
    v &= 0xFFFFFFFF
    return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, v >> 24))


def le16(v):
    return bytes((v & 0xFF, v >> 8))


def bt21_bytes(flags0=0, present_demands=0, tiers=4, present_values=55):
    return bytes((flags0, 0, 2, 4, 2, 1, 1, tiers, present_demands, present_values))


def test_i32_signed():
    assert t.i32(le32(-618), 0) == -618
    assert t.i32(le32(0x7FFFFFFF), 0) == 0x7FFFFFFF
    assert t.i32(le32(-1), 0) == -1
    assert t.i32(b'\x00' + le32(-2147483648), 1) == -2147483648
    assert t.i32(unhex('5e b8 ec 03'), 0) == 65845342      # BT23 capture


def test_bt01():
    data = b'NES ' + b'83334-3I' + bytes((1, 2, 4, 4)) + b'SN0001234567    '
    d = tx.bt01(data)
    assert d['manufacturer'] == 'NES' and d['model'] == '83334-3I'
    assert d['fw'] == '4.4' and d['hw'] == '1.2' and d['mfg_serial'] == 'SN0001234567'
    e = raises(t.ShortTable, tx.bt01, data[:15])
    assert 'BT01' in str(e) and e.need == 16 and e.got == 15


def test_bt21_tiers_from_byte7():
    d = tx.bt21(bt21_bytes(tiers=4, present_demands=2))
    assert d['tiers'] == 4 and d['present_demands'] == 2 and d['present_values'] == 55
    raises(t.ShortTable, tx.bt21, b'\x00' * 9)


def test_bt23_offsets_and_signs():
    energies = le32(65845342) + le32(179) + le32(4056958) + le32(-5)
    d = t.bt23(energies + bytes(4), tx.bt21(bt21_bytes()))
    assert (d['e_fwd'], d['e_rev'], d['eq_fwd'], d['eq_rev']) == (65845342, 179, 4056958, -5)
    b21 = tx.bt21(bt21_bytes(flags0=0x04))
    d = t.bt23(b'\x09' + energies, b21)
    assert d['e_fwd'] == 65845342 and d['eq_rev'] == -5
    d = t.bt23(energies[:13])                 # the 13-byte partial read
    assert d['e_rev'] == 179 and 'eq_rev' not in d
    raises(t.ShortTable, t.bt23, energies[:7])
    raises(t.ShortTable, t.bt23, b'\x09' + energies[:7], b21)


def bt28_data(values):
    return b''.join(le32(v) for v in values)


SAMPLE = [399, 0, 0, 959, 2877, 1557, 2161, 225635, 227935, 227779, 451, 50050, 1491, 241, 45,
          -618, -311, -914, 399, 0, 0, 959, 0, 0, 0, 959, 292, 85, 22, 0, 0, 0, 292, 85, 22, 0,
          0, 0, 2877, 1557, 2161, 226715, 228315, 227051, 228931, 230851, 229015, 399, 0, 292,
          85, 22, 0, 0, 0]


def test_bt28_sample_named_fields():
    assert len(SAMPLE) == 55
    d = t.bt28(bt28_data(SAMPLE))
    assert d['p_fwd'] == 399 and d['q_exp'] == 959 and d['i_l1'] == 2877
    assert d['u_l3'] == 227779 and d['freq'] == 50050 and d['pf_l3'] == 45
    assert d['values'][15] == -618
    assert d['p_fwd_l1'] + d['p_fwd_l2'] + d['p_fwd_l3'] == d['p_fwd']
    assert d['u_avg_l2'] == 230851 and d['p_fwd_avg_l1'] == 292


def test_bt28_offset_from_bt21():
    b21 = tx.bt21(bt21_bytes(flags0=0x40, present_demands=2))
    assert t.bt28_offset(b21) == 14
    d = t.bt28(b'\xaa' * 14 + bt28_data(SAMPLE), b21)
    assert d['p_fwd'] == 399 and d['values'][54] == 0
    assert t.bt28_offset(tx.bt21(bt21_bytes(present_demands=3))) == 12
    # a table that ends early is decoded as far as it goes: later values are absent
    d = t.bt28(bt28_data(SAMPLE), b21)
    assert len(d['values']) == (220 - 14) // 4
    assert 'p_rev_avg_l3' not in d and 'p_fwd' in d
    e = raises(t.ShortTable, t.bt28, b'\xaa' * 17, b21)
    assert e.need == 14 + 4


def test_bt28_short_or_long_decodes_as_far_as_it_goes():
    d = t.bt28(bt28_data(SAMPLE)[:219])
    assert len(d['values']) == 54
    assert d['p_fwd'] == 399 and 'p_rev_avg_l2' in d and 'p_rev_avg_l3' not in d
    d = t.bt28(bt28_data(SAMPLE) + bytes(12))         # more than 55 values
    assert len(d['values']) == 55 and d['p_fwd'] == 399
    e = raises(t.ShortTable, t.bt28, b'\x01\x02\x03')
    assert 'BT28' in str(e)


def test_bt52_clock():
    d = tx.bt52(bytes((26, 11, 21, 10, 7, 31, 0x16)))
    assert d['epoch'] == 1795255651 and d['weekday'] == 6 and d['gmt']
    assert d['text'] == '2026-11-21 10:07:31'
    assert tx.bt52(bytes((0, 1, 1, 0, 0, 0, 0)))['epoch'] == 946684800
    raises(t.ShortTable, tx.bt52, bytes(6))
    raises(t.TableError, tx.bt52, bytes((26, 13, 1, 0, 0, 0, 0)))


def test_et03():
    data = b'5706567290000001234           ' + bytes(107) + le16(0xBEEF)
    d = tx.et03(data)
    assert d['serial'] == '5706567290000001234' and d['image_crc'] == 0xBEEF
    assert 'image_crc' not in tx.et03(data[:30])
    raises(t.ShortTable, tx.et03, data[:29])


def et11_bytes(devices=5, entry=66):
    b = bytearray(32)
    b[0] = devices
    b[1] = entry
    b[5:7] = le16(300)
    b[28:30] = le16(1024)
    return bytes(b)


def test_et11_le16():
    d = tx.et11(et11_bytes())
    assert d['devices'] == 5 and d['config_entry_size'] == 66
    assert d['data_entry_size'] == 300 and d['ram_transaction_request_len'] == 1024
    raises(t.ShortTable, tx.et11, bytes(31))


def test_et13_entries_and_alert_flags():
    e11 = tx.et11(et11_bytes())
    data = bytearray(5 * 66)
    data[0:8] = bytes((31, 2, 3, 7)) + le16(900) + bytes((13, 0xff))
    data[66] = 34
    data[4 * 66 + 8] = 0x05
    d = tx.et13(bytes(data), e11)
    assert d['alert_flags'] == 5 and d['mep']['alert_flags'] == 5
    assert d['entries'][0]['billing_day_text'].startswith('reserved')   # 31: no crash
    assert d['entries'][0]['billing_freq_text'].startswith('reserved')  # 7: range-checked
    assert d['entries'][0]['baud_text'].startswith('reserved')
    assert d['entries'][0]['status_read_freq'] == 900
    assert d['entries'][1]['billing_day_text'] == 'Tuesday'
    assert t.et13_alert_offset(66) == 0x110
    raises(t.ShortTable, tx.et13, bytes(data[:-1]), e11)
    raises(t.TableError, tx.et13, bytes(data), tx.et11(et11_bytes(devices=4)))


def test_et50():
    data = bytearray(68)
    data[0:6] = b'MEP-01'
    data[30] = 0x02
    data[31:33] = le16(0x1234)
    data[43:47] = le32(-7)
    data[67] = 9
    d = tx.et50(bytes(data))
    assert d['mep_id'] == 'MEP-01' and d['result_in_et58']
    assert d['icon_control'][0] == 0x1234 and d['display_data'][0] == -7 and d['mep_icon'] == 9
    raises(t.ShortTable, tx.et50, bytes(67))        # the original checked only > 31


def test_procedure_result():
    d = tx.procedure_result(unhex('2708 05 00'))
    assert d['procedure'] == 0x0827 and d['pseq'] == 5 and d['result_text'] == 'completed'
    assert tx.procedure_result(unhex('2708 05 06'))['result_text'] == 'unrecognized procedure'
    assert tx.procedure_result(unhex('2708 05 20'))['result_text'].startswith('reserved')
    raises(t.ShortTable, tx.procedure_result, unhex('2708 05'))


def test_decode_dispatch():
    assert t.decode(rq.BT21, bt21_bytes())['present_values'] == 55
    assert t.decode(0x0899, b'abc') is None
    raises(t.TableError, t.decode, rq.ET13, bytes(330))
    assert t.decode(rq.ET13, bytes(330), {'et11': tx.et11(et11_bytes())})['alert_flags'] == 0
    assert t.hexdump(bytes(range(20))).startswith('0000  00 01 02')
