# What a reading holds: one poll cycle's values in SI units, and the one table that describes
# them. A reading is a plain dict (cheap on MicroPython) with the keys of FIELDS besides 'time'
# (UTC unix seconds, int, when the BT28 answer arrived) and 'seq' (readings since boot).
# Energies come from BT23, everything else from BT28.
#
# Every module that shows, stores or exports a value takes what it needs about it from FIELDS:
# the poller which BT28 value it is and its scale, Home Assistant discovery the name, device
# class and unit, the Prometheus page the metric name and help text (net/ha.py derives the
# unit from the key's prefix, checked against this table by the tests).
#
# Columns:
#   key      the reading's key; a per-phase value ends in _l1, _l2, _l3
#   unit     SI unit of the value in the reading (W, var, VA, V, A, Hz, Wh, varh; '' for a
#            ratio 0..1)
#   label    for people
#   bt28     index of the value in BT28, None when it is not from BT28 (the energies)
#   div      the meter sends mA, mV, mHz and 1/1000: the value is BT28's divided by this
#   ha       Home Assistant device class, '' for a sensor announced without one, None for a
#            value not announced
#   metric   Prometheus metric name; the three phases share theirs, labelled phase="L1".."L3"
FIELDS = (
    ('p_in', 'W', 'Power import', 0, 1, 'power', 'mep_power_import_watts'),
    ('p_out', 'W', 'Power export', 1, 1, 'power', 'mep_power_export_watts'),
    ('q_in', 'var', 'Reactive power import', 2, 1, 'reactive_power',
     'mep_reactive_power_import_vars'),
    ('q_out', 'var', 'Reactive power export', 3, 1, 'reactive_power',
     'mep_reactive_power_export_vars'),
    ('s', 'VA', 'Apparent power', 12, 1, 'apparent_power', 'mep_apparent_power_volt_amperes'),
    ('freq', 'Hz', 'Frequency', 11, 1000, 'frequency', 'mep_frequency_hertz'),
    ('p_in_avg', 'W', 'Average power import', 47, 1, None, 'mep_average_power_import_watts'),
    ('p_out_avg', 'W', 'Average power export', 48, 1, None, 'mep_average_power_export_watts'),
    ('i_l1', 'A', 'L1 current', 4, 1000, 'current', 'mep_current_amperes'),
    ('i_l2', 'A', 'L2 current', 5, 1000, 'current', 'mep_current_amperes'),
    ('i_l3', 'A', 'L3 current', 6, 1000, 'current', 'mep_current_amperes'),
    ('u_l1', 'V', 'L1 voltage', 7, 1000, 'voltage', 'mep_voltage_volts'),
    ('u_l2', 'V', 'L2 voltage', 8, 1000, 'voltage', 'mep_voltage_volts'),
    ('u_l3', 'V', 'L3 voltage', 9, 1000, 'voltage', 'mep_voltage_volts'),
    ('p_in_l1', 'W', 'L1 power import', 26, 1, 'power', 'mep_phase_power_import_watts'),
    ('p_in_l2', 'W', 'L2 power import', 27, 1, 'power', 'mep_phase_power_import_watts'),
    ('p_in_l3', 'W', 'L3 power import', 28, 1, 'power', 'mep_phase_power_import_watts'),
    ('p_out_l1', 'W', 'L1 power export', 29, 1, 'power', 'mep_phase_power_export_watts'),
    ('p_out_l2', 'W', 'L2 power export', 30, 1, 'power', 'mep_phase_power_export_watts'),
    ('p_out_l3', 'W', 'L3 power export', 31, 1, 'power', 'mep_phase_power_export_watts'),
    ('u_avg_l1', 'V', 'L1 average voltage', 44, 1000, None, 'mep_average_voltage_volts'),
    ('u_avg_l2', 'V', 'L2 average voltage', 45, 1000, None, 'mep_average_voltage_volts'),
    ('u_avg_l3', 'V', 'L3 average voltage', 46, 1000, None, 'mep_average_voltage_volts'),
    ('p_in_avg_l1', 'W', 'L1 average power import', 49, 1, None,
     'mep_phase_average_power_import_watts'),
    ('p_in_avg_l2', 'W', 'L2 average power import', 50, 1, None,
     'mep_phase_average_power_import_watts'),
    ('p_in_avg_l3', 'W', 'L3 average power import', 51, 1, None,
     'mep_phase_average_power_import_watts'),
    ('p_out_avg_l1', 'W', 'L1 average power export', 52, 1, None,
     'mep_phase_average_power_export_watts'),
    ('p_out_avg_l2', 'W', 'L2 average power export', 53, 1, None,
     'mep_phase_average_power_export_watts'),
    ('p_out_avg_l3', 'W', 'L3 average power export', 54, 1, None,
     'mep_phase_average_power_export_watts'),
    ('pf_l1', '', 'L1 power factor', 10, 1000, 'power_factor', 'mep_power_factor_ratio'),
    ('pf_l2', '', 'L2 power factor', 13, 1000, 'power_factor', 'mep_power_factor_ratio'),
    ('pf_l3', '', 'L3 power factor', 14, 1000, 'power_factor', 'mep_power_factor_ratio'),
    ('e_in', 'Wh', 'Energy import', None, 1, 'energy', 'mep_energy_import_joules_total'),
    ('e_out', 'Wh', 'Energy export', None, 1, 'energy', 'mep_energy_export_joules_total'),
    ('eq_in', 'varh', 'Reactive energy import', None, 1, '',
     'mep_reactive_energy_import_var_seconds_total'),
    ('eq_out', 'varh', 'Reactive energy export', None, 1, '',
     'mep_reactive_energy_export_var_seconds_total'),
)
KEY, UNIT, LABEL, BT28, DIV, HA, METRIC = 0, 1, 2, 3, 4, 5, 6
ENERGY_UNITS = ('Wh', 'varh')       # counters; every other value is a measurement
