# One poll cycle's values in SI units. A reading is a plain dict (cheap on MicroPython);
# FIELDS lists every key with its unit and a human label, in display order.
#
# 'time' is UTC unix seconds (int) of the moment the BT28 answer arrived; 'seq' counts
# readings since boot. Everything else comes from BT23 (energies) and BT28 (the rest).
# Energies are Wh, powers W, reactive var/varh, voltages V, currents A, frequency Hz,
# power factor as a ratio 0..1.

FIELDS = (
    ('p_in', 'W', 'Power import'),
    ('p_out', 'W', 'Power export'),
    ('p_in_l1', 'W', 'L1 power import'),
    ('p_in_l2', 'W', 'L2 power import'),
    ('p_in_l3', 'W', 'L3 power import'),
    ('p_out_l1', 'W', 'L1 power export'),
    ('p_out_l2', 'W', 'L2 power export'),
    ('p_out_l3', 'W', 'L3 power export'),
    ('u_l1', 'V', 'L1 voltage'),
    ('u_l2', 'V', 'L2 voltage'),
    ('u_l3', 'V', 'L3 voltage'),
    ('i_l1', 'A', 'L1 current'),
    ('i_l2', 'A', 'L2 current'),
    ('i_l3', 'A', 'L3 current'),
    ('pf_l1', '', 'L1 power factor'),
    ('pf_l2', '', 'L2 power factor'),
    ('pf_l3', '', 'L3 power factor'),
    ('freq', 'Hz', 'Frequency'),
    ('q_in', 'var', 'Reactive power import'),
    ('q_out', 'var', 'Reactive power export'),
    ('s', 'VA', 'Apparent power'),
    ('e_in', 'Wh', 'Energy import'),
    ('e_out', 'Wh', 'Energy export'),
    ('eq_in', 'varh', 'Reactive energy import'),
    ('eq_out', 'varh', 'Reactive energy export'),
    ('p_in_avg', 'W', 'Average power import'),
    ('p_out_avg', 'W', 'Average power export'),
    ('p_in_avg_l1', 'W', 'L1 average power import'),
    ('p_in_avg_l2', 'W', 'L2 average power import'),
    ('p_in_avg_l3', 'W', 'L3 average power import'),
    ('p_out_avg_l1', 'W', 'L1 average power export'),
    ('p_out_avg_l2', 'W', 'L2 average power export'),
    ('p_out_avg_l3', 'W', 'L3 average power export'),
    ('u_avg_l1', 'V', 'L1 average voltage'),
    ('u_avg_l2', 'V', 'L2 average voltage'),
    ('u_avg_l3', 'V', 'L3 average voltage'),
)

UNITS = {}
for _k, _u, _l in FIELDS:
    UNITS[_k] = _u


def net_power(r):
    """Net active power in W: import minus export (negative while exporting)."""
    return r['p_in'] - r['p_out']
