"""The MEP drawer PCB, as data: parts, their pins' nets, footprints, part numbers and placement.

generate.py turns this into the KiCad schematic and board. Net names here are the schematic's
label names ('GND' and '+3V3' are power symbols). A pin mapped to None is marked no-connect.

Rev C: ESP32-S3-MINI-1-N4R2 (4 MB flash, 2 MB quad PSRAM in the package): the stock
ESP32_GENERIC_S3 MicroPython image brings the PSRAM up and runs the app as .mpy files.

GPIO plan (must match firmware/drivers/boards.py, profile 'mepdrawer'; checked by
tests/host/test_board_netlist.py against the exported netlist):
  IO12 <- MAX3232 R1OUT   MEP RX (meter TXD, connector pin 2)
  IO14 -> MAX3232 T2IN    MEP TX (to meter RXD, connector pin 5)
  IO13 -> MAX3232 T1IN    ENABLE, through T1OUT, diode D5 and R12 to connector pin 3 (GPIO low = enabled;
                          R16 pull-up to the transceiver supply: off while the GPIO floats)
  IO9  -> TPS22917 ON     RS-232 transceiver supply switch (GPIO high = transceiver powered; R11 3.3k
                          pull-down: off from power-on, against the chip's ~45k weak pull-up)
  IO16 -> R10 -> LED D6   status LED, active high
  IO0  <- SW1 BOOT        active low (strapping pin: low at reset = ROM download mode; also the
                          firmware's safe-mode button), R7 pull-up
  IO19/IO20               USB D-/D+ (native USB)
  IO3, IO45, IO46         strapping pins, left open: their internal pulls and the eFuse
                          defaults select 3.3 V flash (IO45 low), boot from flash, normal logs
  IO26                    the in-package PSRAM's chip select on the -N4R2 (module datasheet):
                          never connected; IO27-IO32 are the flash/PSRAM bus inside the package
"""

R0603 = 'Resistor_SMD:R_0603_1608Metric'
C0603 = 'Capacitor_SMD:C_0603_1608Metric'
C0805 = 'Capacitor_SMD:C_0805_2012Metric'
C1206 = 'Capacitor_SMD:C_1206_3216Metric'
C1210 = 'Capacitor_SMD:C_1210_3225Metric'

YAGEO = 'Yageo'
MURATA = 'Murata'


def res(ref, value, mpn, a, b, pos, desc=''):
    return dict(ref=ref, sym='Device:R', value=value, fp=R0603, mfr=YAGEO, mpn=mpn,
                pins={'1': a, '2': b}, pos=pos, desc=desc)


def cap(ref, value, fp, mpn, a, b, pos, desc='', mfr=MURATA, sym='Device:C'):
    return dict(ref=ref, sym=sym, value=value, fp=fp, mfr=mfr, mpn=mpn,
                pins={'1': a, '2': b}, pos=pos, desc=desc)


def c100n(ref, a, b, pos, desc=''):
    return cap(ref, '100n', C0603, 'GRM188R71H104KA93D', a, b, pos, desc)


# ESP32-S3-MINI-1 pin numbers (module datasheet, "Pin Definitions"; the -N4R2 has the same pins)
ESP_MODULE = 'ESP32-S3-MINI-1'
ESP_PINS = {'3V3': '3', 'EN': '45', 'TXD0': '39', 'RXD0': '40'}
ESP_PINS.update({'IO%d' % n: str(4 + n) for n in range(22)})          # IO0..IO21: pins 4..25
ESP_PINS.update({'IO26': '26', 'IO47': '27', 'IO33': '28', 'IO34': '29', 'IO48': '30',
                 'IO35': '31', 'IO36': '32', 'IO37': '33', 'IO38': '34', 'IO39': '35',
                 'IO40': '36', 'IO41': '37', 'IO42': '38', 'IO45': '41', 'IO46': '44'})
ESP_GND = ['1', '2', '42', '43'] + [str(n) for n in range(46, 66)]   # 61: centre pad, 62-65: corners
ESP_NC = []

esp_nets = {k: None for k in ESP_PINS}
esp_nets.update({
    '3V3': '+3V3', 'EN': 'ESP_EN', 'IO0': 'BOOT', 'IO9': 'XCVR_ON', 'IO13': 'ENABLE_TTL',
    'IO12': 'RXD_TTL', 'IO14': 'TXD_TTL', 'IO16': 'LED', 'IO19': 'USB_DN', 'IO20': 'USB_DP',
})
_u1_pins = {ESP_PINS[k]: v for k, v in esp_nets.items()}
_u1_pins.update({n: 'GND' for n in ESP_GND})

# Board: 70 x 28 mm like the original dabbler.dk rev 2.00 board (its outline, its two M3 holes and
# the 28 x 8 mm cut-out in the lower edge), origin of the outline at (88, 98) (KiCad page
# coordinates, mm). The right-hand end and the lower edge are where rev A had them, so J1 keeps its
# absolute position (pin 1 21 mm from the right-hand end, 6 mm above the lower edge).
BOARD = (88.0, 98.0, 158.0, 126.0)
# Cut-out in the lower edge (9..37 mm from the left-hand end, 8 mm deep): the module's antenna
# hangs over it, as the original's module antenna does.
NOTCH = (97.0, 118.0, 125.0, 126.0)
# Two M3 mounting holes, 5 mm from each end, 3 mm above the lower edge (the original's places).
HOLES = [(93.0, 123.0), (153.0, 123.0)]
HOLE_KEEPOUT = 2.9          # radius without copper tracks or parts: M3 head 5.5 mm + margin
# The module, rotated so its antenna points down over the cut-out. ESP32-S3-MINI-1: 15.4 x 20.5 mm,
# the antenna's 5.1 mm at one end; footprint origin at the centre of the pad field, 7.7 mm from
# the antenna end of the body. The antenna area starts 0.1 mm inside the board edge, which keeps
# the ground pads next to it 0.4 mm from the edge; nothing but solder mask lies under it.
ESP_AT = (111.0, 110.2, 180)
ESP_BODY = 7.7          # half the module's width; body (without antenna) from -7.7 to +7.7
ESP_HEIGHT = 2.55       # 2.4 +/- 0.15 mm (module datasheet, physical dimensions)
# Copper keep-outs (both layers) along the cut-out edge beside the antenna.
ANTENNA_KEEPOUTS = [(97.0, 116.6, 103.1, 118.0), (118.9, 116.6, 125.0, 118.0)]
# Heights above the board (mm, datasheet maximum or nominal where no maximum is given). The
# original's tallest top-side part (apart from the MEP header J1, the same part in the same place)
# is its ESP32-WROOM-32 module: 3.10 +/- 0.15 mm. Top-side parts stay within that; taller parts go
# on the back, as the original's buck module does. check.sh enforces both.
TOP_MAX_HEIGHT = 3.25
H = {'R0603': 0.55, 'C0603': 0.9, 'C0805': 1.35, 'C1206': 1.8, 'C1210': 2.7, 'SOD123': 1.35,
     'SOD123F': 1.1, 'SMA': 2.44, 'SOT236': 1.45, 'SOIC16': 1.75, 'LED0603': 0.8}

# EN (~SHDN) of the buck: VIN divider with hysteresis from +3V3, and a path from USB VBUS.
#   R1 200k VIN->EN, R13 21.5k EN->GND, R15 110k +3V3->EN, R14 22k VBUS->EN.
#   Meter only, output off: starts at 1.25 V x (1 + R1 / (R13 || R15)) ~ 15 V;
#   running (+3V3 up): stops when VIN falls to ~8.9 V; USB only (VIN ~4.6 V, VBUS >= 4.4 V): EN > 2 V.

PARTS = [
    # --- MEP connector: pin-out, footprint (2x3 right-angle header), rotation and position from the
    # lower right-hand corner (21 mm, 6 mm) as the original module's J6; the pins lie over a
    # part-free lane towards the upper edge, where the meter's socket slides on.
    dict(ref='J1', sym='Connector_Generic:Conn_02x03_Odd_Even', value='MEP 2x3',
         fp='Connector_PinHeader_2.54mm:PinHeader_2x03_P2.54mm_Horizontal',
         mfr='Samtec', mpn='TSW-103-08-G-D-RA',
         pins={'1': 'GND', '2': 'MEP_RXD', '3': 'MEP_ENABLE', '4': 'MEP_PWR', '5': 'MEP_TXD', '6': None},
         pos=(137.0, 120.0, 90), h=2.54, h_note='the original J6 (same part, same place)',
         desc='MEP: 1 GND (term. 19), 2 RXD in = meter TXD (16A), 3 ENABLE (18), 4 +24V (16), 5 TXD out = meter RXD (17), 6 NC'),
    # --- input protection ------------------------------------------------------------------------
    dict(ref='D1', sym='Device:D_Schottky', value='B1100', fp='Diode_SMD:D_SMA',
         mfr='Diodes Incorporated', mpn='B1100-13-F', pins={'1': 'VIN', '2': 'MEP_PWR'},
         pos=(147.4, 118.3, 180), h=H['SMA'], desc='reverse-polarity protection, 100 V'),
    dict(ref='D2', sym='Diode:SMAJ28A', value='SMAJ28A', fp='Diode_SMD:D_SMA',
         mfr='Littelfuse', mpn='SMAJ28A', pins={'1': 'VIN', '2': 'GND'},
         pos=(147.4, 114.7, 180), h=H['SMA'],
         desc='TVS, 28 V stand-off, 45.4 V clamp at 8.8 A: below the 50 V input capacitors'),
    dict(ref='D3', sym='Device:D_Schottky', value='PMEG6010CEH', fp='Diode_SMD:D_SOD-123F',
         mfr='Nexperia', mpn='PMEG6010CEH,115', pins={'1': 'VIN', '2': 'VBUS'},
         pos=(154.6, 112.3, 180), h=H['SOD123F'], desc='USB VBUS into the buck; blocks back-feed into USB'),
    cap('C1', '33u 50V', 'Capacitor_SMD:CP_Elec_6.3x5.4', 'EEE-1HA330P', 'VIN', 'GND',
        (152.0, 111.2, 90), 'bulk: WiFi bursts come from here (back side: 5.4 mm tall)', mfr='Panasonic',
        sym='Device:C_Polarized'),
    # --- buck converter: input caps, catch diode and bootstrap cap at the VIN/SW side of U2,
    # feedback divider at FB ------------------------------------------------------------------------
    dict(ref='U2', sym='Regulator_Switching:LMR16006YQ', value='LMR16006XDDCR',
         fp='Package_TO_SOT_SMD:SOT-23-6', mfr='Texas Instruments', mpn='LMR16006XDDCR',
         pins={'5': 'VIN', '4': 'BUCK_EN', '2': 'GND', '1': 'BUCK_CB', '6': 'BUCK_SW', '3': 'BUCK_FB'},
         pos=(150.5, 104.9, 0), h=H['SOT236'],
         desc='4-60 V in, 0.6 A, 0.7 MHz buck (X version: on-time stays above its minimum at 26 V in)'),
    c100n('C14', 'VIN', 'GND', (154.05, 104.9, 0), 'buck input, next to VIN'),
    cap('C2', '2.2u 50V', C1206, 'GRM31CR71H225KA88L', 'VIN', 'GND', (156.7, 105.7, 90)),
    dict(ref='D4', sym='Device:D_Schottky', value='PMEG6010CEH', fp='Diode_SMD:D_SOD-123F',
         mfr='Nexperia', mpn='PMEG6010CEH,115', pins={'1': 'BUCK_SW', '2': 'GND'},
         pos=(154.3, 102.2, 0), h=H['SOD123F'], desc='catch diode'),
    c100n('C3', 'BUCK_CB', 'BUCK_SW', (150.6, 101.2, 0), 'bootstrap'),
    dict(ref='L1', sym='Device:L', value='22u', fp='Inductor_SMD:L_Bourns-SRN4018',
         mfr='Bourns', mpn='SRN4018-220M', pins={'1': 'BUCK_SW', '2': '+3V3'},
         pos=(146.5, 101.0, 180), h=1.8),
    res('R2', '33.2k', 'RC0603FR-0733K2L', '+3V3', 'BUCK_FB', (146.6, 104.8, 0), 'Vout = 0.765 V x (1 + R2/R3)'),
    res('R3', '10k', 'RC0603FR-0710KL', 'BUCK_FB', 'GND', (146.6, 106.5, 180)),
    cap('C4', '22u', C1206, 'GRM31CR61A226KE19L', '+3V3', 'GND', (146.4, 108.4, 0)),
    cap('C5', '100u', C1210, 'GRM32ER60J107ME20L', '+3V3', 'GND', (146.4, 111.2, 0), '3V3 bulk'),
    res('R1', '200k', 'RC0603FR-07200KL', 'VIN', 'BUCK_EN', (153.6, 107.2, 0), 'EN divider: on at ~15 V'),
    res('R13', '21.5k', 'RC0603FR-0721K5L', 'BUCK_EN', 'GND', (153.6, 108.9, 0)),
    res('R15', '110k', 'RC0603FR-07110KL', '+3V3', 'BUCK_EN', (150.2, 107.6, 0), 'EN hysteresis: off at ~9 V'),
    res('R14', '22k', 'RC0603FR-0722KL', 'VBUS', 'BUCK_EN', (156.9, 109.6, 90), 'USB alone enables the buck'),
    # --- USB-C (native USB serial/JTAG) --------------------------------------------------------
    dict(ref='J2', sym='Connector:USB_C_Receptacle_USB2.0_16P', value='USB-C',
         fp='Connector_USB:USB_C_Receptacle_HRO_TYPE-C-31-M-12', mfr='Korean Hroparts Elec',
         mpn='TYPE-C-31-M-12',
         pins={'A1': 'GND', 'A12': 'GND', 'B1': 'GND', 'B12': 'GND', 'S1': 'GND',
               'A4': 'VBUS', 'A9': 'VBUS', 'B4': 'VBUS', 'B9': 'VBUS',
               'A5': 'CC1', 'B5': 'CC2', 'A6': 'USB_DP_C', 'B6': 'USB_DP_C', 'A7': 'USB_DN_C', 'B7': 'USB_DN_C',
               'A8': None, 'B8': None},
         pos=(93.8, 101.5, 180), h=3.2),
    res('R4', '5.1k', 'RC0603FR-075K1L', 'CC1', 'GND', (96.4, 111.0, 90)),
    res('R5', '5.1k', 'RC0603FR-075K1L', 'CC2', 'GND', (91.2, 111.0, 90)),
    dict(ref='U5', sym='Power_Protection:USBLC6-2SC6', value='USBLC6-2SC6', fp='Package_TO_SOT_SMD:SOT-23-6',
         mfr='STMicroelectronics', mpn='USBLC6-2SC6',
         pins={'6': 'USB_DN_C', '1': 'USB_DN', '4': 'USB_DP_C', '3': 'USB_DP', '2': 'GND', '5': 'VBUS'},
         pos=(100.6, 109.2, 180), h=H['SOT236'], desc='USB ESD protection (D+, D-, VBUS)'),
    # --- ESP32-S3 ----------------------------------------------------------------------------------
    dict(ref='U1', sym='MEP:ESP32-S3-MINI-1', value='ESP32-S3-MINI-1-N4R2', fp='MEP:ESP32-S3-MINI-1',
         mfr='Espressif Systems', mpn='ESP32-S3-MINI-1-N4R2', pins=_u1_pins,
         pos=ESP_AT, h=ESP_HEIGHT,
         desc='4 MB flash, 2 MB quad PSRAM in package (stock ESP32_GENERIC_S3 image), -40..85 C'),
    cap('C7', '10u', C0805, 'GRM21BR61A106KE19L', '+3V3', 'GND', (120.1, 114.4, 90), 'module supply'),
    c100n('C8', '+3V3', 'GND', (122.2, 114.4, 90)),
    res('R6', '10k', 'RC0603FR-0710KL', '+3V3', 'ESP_EN', (101.3, 113.3, 90), 'EN RC delay'),
    cap('C6', '1u', C0603, 'GRM188R61E105KA12D', 'ESP_EN', 'GND', (99.3, 115.1, 90)),
    dict(ref='SW2', sym='Switch:SW_Push', value='RESET', fp='Button_Switch_SMD:SW_SPST_B3U-1000P',
         mfr='Omron', mpn='B3U-1000P', pins={'1': 'ESP_EN', '2': 'GND'}, pos=(92.6, 118.1, 0), h=1.6),
    dict(ref='SW1', sym='Switch:SW_Push', value='BOOT', fp='Button_Switch_SMD:SW_SPST_B3U-1000P',
         mfr='Omron', mpn='B3U-1000P', pins={'1': 'BOOT', '2': 'GND'}, pos=(120.85, 100.5, 0), h=1.6,
         desc='BOOT / safe mode (IO0)'),
    res('R7', '10k', 'RC0603FR-0710KL', '+3V3', 'BOOT', (116.9, 100.3, 0)),
    res('R10', '1k', 'RC0603FR-071KL', 'LED', 'LED_A', (113.9, 100.3, 180)),
    dict(ref='D6', sym='Device:LED', value='green', fp='LED_SMD:LED_0603_1608Metric',
         mfr='Lite-On', mpn='LTST-C191KGKT', pins={'1': 'GND', '2': 'LED_A'},
         pos=(110.9, 100.3, 0), h=H['LED0603'], desc='status LED (IO16, active high), ~1.4 mA'),
    # --- RS-232 transceiver and its supply switch -------------------------------------------------
    dict(ref='U3', sym='Interface_UART:MAX3232', value='MAX3232E', fp='Package_SO:SOIC-16_3.9x9.9mm_P1.27mm',
         mfr='Analog Devices (Maxim)', mpn='MAX3232EESE+',
         pins={'16': 'VCC_232', '15': 'GND', '1': 'C1P', '3': 'C1N', '4': 'C2P', '5': 'C2N',
               '2': 'VP_232', '6': 'VN_232', '11': 'ENABLE_TTL', '14': 'ENABLE_232',
               '10': 'TXD_TTL', '7': 'MEP_TXD', '13': 'MEP_RXD', '12': 'RXD_TTL',
               '8': None, '9': None},
         pos=(129.6, 104.2, 180), h=H['SOIC16'],
         desc='SOIC-16 only (counterfeit DIP parts failed in the field)'),
    # charge-pump capacitors on the back, under U3 (as on the original)
    c100n('C9', 'C1P', 'C1N', (131.0, 107.2, 90)),
    c100n('C10', 'C2P', 'C2N', (131.0, 103.6, 90)),
    c100n('C11', 'VP_232', 'GND', (128.2, 107.2, 90)),
    c100n('C12', 'VN_232', 'GND', (128.2, 103.6, 90)),
    c100n('C13', 'VCC_232', 'GND', (124.4, 110.7, 90)),
    dict(ref='U4', sym='Power_Management:TPS22917DBV', value='TPS22917', fp='Package_TO_SOT_SMD:SOT-23-6',
         mfr='Texas Instruments', mpn='TPS22917DBVR',
         pins={'1': '+3V3', '2': 'GND', '3': 'XCVR_ON', '4': None, '5': 'XCVR_QOD', '6': 'VCC_232'},
         pos=(121.7, 107.1, 0), h=H['SOT236'],
         desc='RS-232 transceiver supply switch: IO4 high = on; QOD tied to VOUT discharges VCC_232 when off'),
    res('R11', '3.3k', 'RC0603FR-073K3L', 'XCVR_ON', 'GND', (121.7, 110.3, 0),
        'transceiver off from power-on until firmware enables it (wins against the 45k internal pull-up)'),
    res('R17', '100', 'RC0603FR-07100RL', 'XCVR_QOD', 'VCC_232', (124.6, 107.4, 90),
        'QOD: VCC_232 discharged through ~100 ohm while the switch is off'),
    res('R16', '10k', 'RC0603FR-0710KL', 'VCC_232', 'ENABLE_TTL', (124.6, 104.2, 270),
        'ENABLE off while IO5 floats: T1IN high = T1OUT low'),
    dict(ref='D5', sym='Device:D', value='1N4148W', fp='Diode_SMD:D_SOD-123',
         mfr='Diodes Incorporated', mpn='1N4148W-7-F', pins={'1': 'ENABLE_D', '2': 'ENABLE_232'},
         pos=(130.2, 118.0, 180), h=H['SOD123'], desc='ENABLE: only the positive RS-232 level reaches the meter'),
    res('R12', '100', 'RC0603FR-07100RL', 'ENABLE_D', 'MEP_ENABLE', (133.9, 118.2, 90)),
    # --- mounting holes (no copper) ------------------------------------------------------------------
    dict(ref='H1', sym='Mechanical:MountingHole', value='M3', fp='MountingHole:MountingHole_3.2mm_M3_DIN965',
         mfr='', mpn='', pins={}, pos=(HOLES[0][0], HOLES[0][1], 0), bom=False, h=0),
    dict(ref='H2', sym='Mechanical:MountingHole', value='M3', fp='MountingHole:MountingHole_3.2mm_M3_DIN965',
         mfr='', mpn='', pins={}, pos=(HOLES[1][0], HOLES[1][1], 0), bom=False, h=0),
    # --- test points -------------------------------------------------------------------------------
    dict(ref='TP1', sym='Connector:TestPoint', value='3V3', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': '+3V3'}, pos=(91.0, 115.2, 0), bom=False, h=0),
    dict(ref='TP2', sym='Connector:TestPoint', value='GND', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'GND'}, pos=(95.0, 115.2, 0), bom=False, h=0),
    dict(ref='TP3', sym='Connector:TestPoint', value='RX', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'RXD_TTL'}, pos=(127.2, 121.2, 0), bom=False, h=0),
    dict(ref='TP4', sym='Connector:TestPoint', value='TX', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'TXD_TTL'}, pos=(127.2, 124.4, 0), bom=False, h=0),
    dict(ref='TP5', sym='Connector:TestPoint', value='ENABLE', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'MEP_ENABLE'}, pos=(130.8, 123.0, 0), bom=False, h=0),
]

# Parts on the back (flipped left-right about their position): the tall bulk capacitor and the
# charge-pump capacitors under the transceiver, as on the original.
BACK = {'C1', 'C9', 'C10', 'C11', 'C12'}
_default_h = {C0603: H['C0603'], R0603: H['R0603'], C0805: H['C0805'], C1206: H['C1206'], C1210: H['C1210']}
for _p in PARTS:
    _p['side'] = 'B' if _p['ref'] in BACK else 'F'
    if 'h' not in _p:
        _p['h'] = _default_h.get(_p['fp'], None)
    if _p['ref'] == 'C1':
        _p['h'] = 5.4
    if _p['ref'] == 'C2':
        _p['h'] = H['C1206']
    if _p['h'] is None:
        raise SystemExit('design.py: no height for %s' % _p['ref'])

# Nets routed with wide tracks.
POWER_NETS = {'VIN', 'MEP_PWR', 'VBUS', '+3V3', 'BUCK_SW', 'VCC_232', 'GND'}
