# What a reading holds: one poll cycle's values in SI units, and the one table that describes
# them. A reading is a plain dict (cheap on MicroPython) with the keys of the table below,
# besides 'time' (UTC unix seconds, int, when the BT28 answer arrived) and 'seq' (readings
# since boot). Energies come from BT23, everything else from BT28.
#
# Every module that shows, stores or exports a value takes what it needs about it from this
# table: the poller which BT28 value it is and its scale, Home Assistant discovery the name,
# device class and unit, the Prometheus page the metric name and help text (net/ha.py derives
# the unit from the key's prefix, checked against this table by the tests).
#
# Columns (one row a line; the label is the rest of the line):
#   key      the reading's key; a per-phase value ends in _l1, _l2, _l3
#   unit     SI unit of the value in the reading (W, var, VA, V, A, Hz, Wh, varh; '-' for a
#            ratio 0..1)
#   bt28     index of the value in BT28; '-' for a value not from BT28 (the energies)
#   div      the meter sends mA, mV, mHz and 1/1000: the value is BT28's divided by this
#   ha       Home Assistant device class; 'none' for a sensor announced without one, '-' for
#            a value not announced
#   metric   Prometheus metric name; the three phases share theirs, labelled phase="L1".."L3"
#   label    for people
# The table is text, made into rows only while they are read (rows()): as tuples it would
# take some 9 KB of heap where the app runs as .mpy files (a tuple per row, a string object
# per label), as text about 4 KB; frozen into the image it takes none either way.
_TABLE = """\
p_in         W    0  1    power          mep_power_import_watts                       Power import
p_out        W    1  1    power          mep_power_export_watts                       Power export
q_in         var  2  1    reactive_power mep_reactive_power_import_vars               Reactive power import
q_out        var  3  1    reactive_power mep_reactive_power_export_vars               Reactive power export
s            VA   12 1    apparent_power mep_apparent_power_volt_amperes              Apparent power
freq         Hz   11 1000 frequency      mep_frequency_hertz                          Frequency
p_in_avg     W    47 1    -              mep_average_power_import_watts               Average power import
p_out_avg    W    48 1    -              mep_average_power_export_watts               Average power export
i_l1         A    4  1000 current        mep_current_amperes                          L1 current
i_l2         A    5  1000 current        mep_current_amperes                          L2 current
i_l3         A    6  1000 current        mep_current_amperes                          L3 current
u_l1         V    7  1000 voltage        mep_voltage_volts                            L1 voltage
u_l2         V    8  1000 voltage        mep_voltage_volts                            L2 voltage
u_l3         V    9  1000 voltage        mep_voltage_volts                            L3 voltage
p_in_l1      W    26 1    power          mep_phase_power_import_watts                 L1 power import
p_in_l2      W    27 1    power          mep_phase_power_import_watts                 L2 power import
p_in_l3      W    28 1    power          mep_phase_power_import_watts                 L3 power import
p_out_l1     W    29 1    power          mep_phase_power_export_watts                 L1 power export
p_out_l2     W    30 1    power          mep_phase_power_export_watts                 L2 power export
p_out_l3     W    31 1    power          mep_phase_power_export_watts                 L3 power export
u_avg_l1     V    44 1000 -              mep_average_voltage_volts                    L1 average voltage
u_avg_l2     V    45 1000 -              mep_average_voltage_volts                    L2 average voltage
u_avg_l3     V    46 1000 -              mep_average_voltage_volts                    L3 average voltage
p_in_avg_l1  W    49 1    -              mep_phase_average_power_import_watts         L1 average power import
p_in_avg_l2  W    50 1    -              mep_phase_average_power_import_watts         L2 average power import
p_in_avg_l3  W    51 1    -              mep_phase_average_power_import_watts         L3 average power import
p_out_avg_l1 W    52 1    -              mep_phase_average_power_export_watts         L1 average power export
p_out_avg_l2 W    53 1    -              mep_phase_average_power_export_watts         L2 average power export
p_out_avg_l3 W    54 1    -              mep_phase_average_power_export_watts         L3 average power export
pf_l1        -    10 1000 power_factor   mep_power_factor_ratio                       L1 power factor
pf_l2        -    13 1000 power_factor   mep_power_factor_ratio                       L2 power factor
pf_l3        -    14 1000 power_factor   mep_power_factor_ratio                       L3 power factor
e_in         Wh   -  1    energy         mep_energy_import_joules_total               Energy import
e_out        Wh   -  1    energy         mep_energy_export_joules_total               Energy export
eq_in        varh -  1    none           mep_reactive_energy_import_var_seconds_total Reactive energy import
eq_out       varh -  1    none           mep_reactive_energy_export_var_seconds_total Reactive energy export
"""
KEY, UNIT, LABEL, BT28, DIV, HA, METRIC = 0, 1, 2, 3, 4, 5, 6
ENERGY_UNITS = ('Wh', 'varh')       # counters; every other value is a measurement


def rows():
    """Every row of the table, in its order, as (KEY, UNIT, LABEL, BT28, DIV, HA, METRIC):
    unit '' for a ratio, BT28 None for '-', HA None for '-' and '' for 'none'. One line is
    taken apart at a time (no list of them all)."""
    t = _TABLE
    i = 0
    n = len(t)
    while i < n:
        j = t.find('\n', i)
        if j < 0:
            j = n
        if j > i:
            key, unit, bt28, div, ha, metric, label = t[i:j].split(None, 6)
            yield (key, '' if unit == '-' else unit, label, None if bt28 == '-' else int(bt28),
                   int(div), None if ha == '-' else ('' if ha == 'none' else ha), metric)
        i = j + 1


# the energy counters' keys (e_in e_out eq_in eq_out: not from BT28), for the poller and MQTT
ENERGY_KEYS = tuple(f[KEY] for f in rows() if f[BT28] is None)
