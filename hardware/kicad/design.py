"""The MEP drawer PCB, as data: parts, their pins' nets, footprints, part numbers and placement.

generate.py turns this into the KiCad schematic and board. Net names here are the schematic's
label names ('GND' and '+3V3' are power symbols). A pin mapped to None is marked no-connect.

GPIO plan (must match firmware/boards.py, profile 'mepdrawer'; checked by
tests/host/test_board_netlist.py against the exported netlist):
  IO6  <- MAX3232 R1OUT   MEP RX (meter TXD, connector pin 2)
  IO7  -> MAX3232 T2IN    MEP TX (to meter RXD, connector pin 5)
  IO5  -> MAX3232 T1IN    ENABLE, through T1OUT, diode D5 and R12 to connector pin 3 (GPIO low = enabled)
  IO4  -> TPS22917 ON     RS-232 transceiver supply switch (GPIO high = transceiver powered)
  IO10 -> R10 -> LED D6   status LED, active high
  IO9  <- SW1 BOOT        active low (strapping pin; also the firmware's safe-mode button)
  IO18/IO19               USB D-/D+ (native USB serial/JTAG)
  IO2, IO8                strapping pins, pulled up (never used for I/O)
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


# ESP32-C3-MINI-1 pin numbers (module datasheet, "Pin Definitions")
ESP_PINS = {
    '3V3': '3', 'EN': '8', 'IO0': '12', 'IO1': '13', 'IO2': '5', 'IO3': '6', 'IO4': '18',
    'IO5': '19', 'IO6': '20', 'IO7': '21', 'IO8': '22', 'IO9': '23', 'IO10': '16',
    'IO18': '26', 'IO19': '27', 'RXD0': '30', 'TXD0': '31',
}
ESP_GND = ['1', '2', '11', '14'] + [str(n) for n in range(36, 54)]
ESP_NC = ['4', '7', '9', '10', '15', '17', '24', '25', '28', '29', '32', '33', '34', '35']

esp_nets = {
    '3V3': '+3V3', 'EN': 'ESP_EN', 'IO0': None, 'IO1': None, 'IO2': 'STRAP_IO2', 'IO3': None,
    'IO4': 'XCVR_ON', 'IO5': 'ENABLE_TTL', 'IO6': 'RXD_TTL', 'IO7': 'TXD_TTL',
    'IO8': 'STRAP_IO8', 'IO9': 'BOOT', 'IO10': 'LED', 'IO18': 'USB_DN', 'IO19': 'USB_DP',
    'RXD0': None, 'TXD0': None,
}
_u1_pins = {ESP_PINS[k]: v for k, v in esp_nets.items()}
_u1_pins.update({n: 'GND' for n in ESP_GND})

# Board: 58 x 26 mm, origin of the outline at (100, 100) (KiCad page coordinates, mm).
BOARD = (100.0, 100.0, 158.0, 126.0)
# The module's antenna (rotated to point at -x, the left end) needs a copper keep-out to the board edge.
ESP_AT = (111.5, 113.0, 90)
ANTENNA_KEEPOUT = (100.0, 100.0, 105.8, 126.0)

PARTS = [
    # --- MEP connector: pin-out, footprint (2x3 right-angle header), rotation and position from the
    # lower right-hand corner (21 mm, 6 mm) as the original module's J6; the pins lie over a
    # part-free lane towards the upper edge, where the meter's socket slides on.
    dict(ref='J1', sym='Connector_Generic:Conn_02x03_Odd_Even', value='MEP 2x3',
         fp='Connector_PinHeader_2.54mm:PinHeader_2x03_P2.54mm_Horizontal',
         mfr='Samtec', mpn='TSW-103-08-G-D-RA',
         pins={'1': 'GND', '2': 'MEP_RXD', '3': 'MEP_ENABLE', '4': 'MEP_PWR', '5': 'MEP_TXD', '6': None},
         pos=(137.0, 120.0, 90),
         desc='MEP: 1 GND (term. 19), 2 RXD in = meter TXD (16A), 3 ENABLE (18), 4 +24V (16), 5 TXD out = meter RXD (17), 6 NC'),
    # --- input protection and buck converter --------------------------------------------------
    dict(ref='D1', sym='Device:D_Schottky', value='B1100', fp='Diode_SMD:D_SMA',
         mfr='Diodes Incorporated', mpn='B1100-13-F', pins={'1': 'VIN', '2': 'MEP_PWR'},
         pos=(151.3, 123.9, 180), desc='reverse-polarity protection, 100 V'),
    dict(ref='D2', sym='Diode:SMAJ33A', value='SMAJ33A', fp='Diode_SMD:D_SMA',
         mfr='Littelfuse', mpn='SMAJ33A', pins={'1': 'VIN', '2': 'GND'},
         pos=(151.3, 120.2, 180), desc='TVS, 33 V stand-off'),
    dict(ref='D3', sym='Device:D_Schottky', value='PMEG6010CEH', fp='Diode_SMD:D_SOD-123F',
         mfr='Nexperia', mpn='PMEG6010CEH,115', pins={'1': 'VIN', '2': 'VBUS'},
         pos=(131.6, 101.6, 180), desc='USB VBUS into the buck; blocks back-feed into USB'),
    cap('C1', '33u 50V', 'Capacitor_SMD:CP_Elec_6.3x7.7', 'EEE-FK1H330P', 'VIN', 'GND',
        (153.9, 113.4, 90), 'bulk: WiFi bursts come from here', mfr='Panasonic', sym='Device:C_Polarized'),
    cap('C2', '2.2u 50V', C1206, 'GRM31CR71H225KA88L', 'VIN', 'GND', (148.6, 114.0, 90)),
    res('R1', '100k', 'RC0603FR-07100KL', 'VIN', 'BUCK_EN', (145.4, 112.6, 90)),
    dict(ref='U2', sym='Regulator_Switching:LMR16006YQ', value='LMR16006XDDCR',
         fp='Package_TO_SOT_SMD:SOT-23-6', mfr='Texas Instruments', mpn='LMR16006XDDCR',
         pins={'5': 'VIN', '4': 'BUCK_EN', '2': 'GND', '1': 'BUCK_CB', '6': 'BUCK_SW', '3': 'BUCK_FB'},
         pos=(147.6, 108.0, 0), desc='4-60 V in, 0.6 A, 0.7 MHz buck (X version: on-time stays above its minimum at 26 V in)'),
    c100n('C3', 'BUCK_CB', 'BUCK_SW', (145.6, 103.4, 90), 'bootstrap'),
    dict(ref='D4', sym='Device:D_Schottky', value='PMEG6010CEH', fp='Diode_SMD:D_SOD-123F',
         mfr='Nexperia', mpn='PMEG6010CEH,115', pins={'1': 'BUCK_SW', '2': 'GND'},
         pos=(147.6, 103.4, 90), desc='catch diode'),
    dict(ref='L1', sym='Device:L', value='22u', fp='Inductor_SMD:L_Bourns-SRN4018',
         mfr='Bourns', mpn='SRN4018-220M', pins={'1': 'BUCK_SW', '2': '+3V3'},
         pos=(152.6, 103.0, 0)),
    res('R2', '33.2k', 'RC0603FR-0733K2L', '+3V3', 'BUCK_FB', (156.6, 103.0, 90), 'Vout = 0.765 V x (1 + R2/R3)'),
    res('R3', '10k', 'RC0603FR-0710KL', 'BUCK_FB', 'GND', (156.6, 106.4, 90)),
    cap('C4', '22u', C1206, 'GRM31CR61A226KE19L', '+3V3', 'GND', (152.6, 106.9, 0)),
    cap('C5', '100u', C1210, 'GRM32ER60J107ME20L', '+3V3', 'GND', (145.9, 121.0, 90), '3V3 bulk'),
    # --- USB-C (native USB serial/JTAG) --------------------------------------------------------
    dict(ref='J2', sym='Connector:USB_C_Receptacle_USB2.0_16P', value='USB-C',
         fp='Connector_USB:USB_C_Receptacle_HRO_TYPE-C-31-M-12', mfr='Korean Hroparts Elec',
         mpn='TYPE-C-31-M-12',
         pins={'A1': 'GND', 'A12': 'GND', 'B1': 'GND', 'B12': 'GND', 'S1': 'GND',
               'A4': 'VBUS', 'A9': 'VBUS', 'B4': 'VBUS', 'B9': 'VBUS',
               'A5': 'CC1', 'B5': 'CC2', 'A6': 'USB_DP', 'B6': 'USB_DP', 'A7': 'USB_DN', 'B7': 'USB_DN',
               'A8': None, 'B8': None},
         pos=(123.55, 103.5, 180)),
    res('R4', '5.1k', 'RC0603FR-075K1L', 'CC1', 'GND', (130.4, 105.4, 0)),
    res('R5', '5.1k', 'RC0603FR-075K1L', 'CC2', 'GND', (130.4, 107.2, 0)),
    # --- ESP32-C3 ----------------------------------------------------------------------------------
    dict(ref='U1', sym='MEP:ESP32-C3-MINI-1', value='ESP32-C3-MINI-1-N4', fp='MEP:ESP32-C3-MINI-1',
         mfr='Espressif Systems', mpn='ESP32-C3-MINI-1-N4', pins=_u1_pins,
         pos=ESP_AT),
    cap('C7', '10u', C0805, 'GRM21BR61A106KE19L', '+3V3', 'GND', (109.4, 121.2, 0), 'module supply'),
    c100n('C8', '+3V3', 'GND', (109.4, 123.4, 0)),
    res('R6', '10k', 'RC0603FR-0710KL', '+3V3', 'ESP_EN', (113.4, 121.4, 90), 'EN RC delay'),
    cap('C6', '1u', C0603, 'GRM188R61E105KA12D', 'ESP_EN', 'GND', (115.4, 121.4, 90)),
    dict(ref='SW2', sym='Switch:SW_Push', value='RESET', fp='Button_Switch_SMD:SW_SPST_B3U-1000P',
         mfr='Omron', mpn='B3U-1000P', pins={'1': 'ESP_EN', '2': 'GND'}, pos=(115.0, 124.6, 0)),
    dict(ref='SW1', sym='Switch:SW_Push', value='BOOT', fp='Button_Switch_SMD:SW_SPST_B3U-1000P',
         mfr='Omron', mpn='B3U-1000P', pins={'1': 'BOOT', '2': 'GND'}, pos=(115.2, 103.0, 0),
         desc='BOOT / safe mode (IO9)'),
    res('R7', '10k', 'RC0603FR-0710KL', '+3V3', 'BOOT', (110.0, 105.4, 0)),
    res('R8', '10k', 'RC0603FR-0710KL', '+3V3', 'STRAP_IO8', (113.8, 105.4, 0)),
    res('R9', '10k', 'RC0603FR-0710KL', '+3V3', 'STRAP_IO2', (106.8, 122.2, 90)),
    res('R10', '1k', 'RC0603FR-071KL', 'LED', 'LED_A', (119.6, 114.4, 0)),
    dict(ref='D6', sym='Device:LED', value='green', fp='LED_SMD:LED_0603_1608Metric',
         mfr='Wurth Elektronik', mpn='150060GS75000', pins={'1': 'GND', '2': 'LED_A'},
         pos=(130.4, 109.3, 0), desc='status LED (IO10, active high)'),
    # --- RS-232 transceiver and its supply switch -------------------------------------------------
    dict(ref='U3', sym='Interface_UART:MAX3232', value='MAX3232E', fp='Package_SO:SOIC-16_3.9x9.9mm_P1.27mm',
         mfr='Analog Devices (Maxim)', mpn='MAX3232EESE+',
         pins={'16': 'VCC_232', '15': 'GND', '1': 'C1P', '3': 'C1N', '4': 'C2P', '5': 'C2N',
               '2': 'VP_232', '6': 'VN_232', '11': 'ENABLE_TTL', '14': 'ENABLE_232',
               '10': 'TXD_TTL', '7': 'MEP_TXD', '13': 'MEP_RXD', '12': 'RXD_TTL',
               '8': None, '9': None},
         pos=(126.5, 117.5, 90), desc='SOIC-16 only (counterfeit DIP parts failed in the field)'),
    c100n('C9', 'C1P', 'C1N', (123.3, 123.2, 0)),
    c100n('C10', 'C2P', 'C2N', (126.5, 124.8, 0)),
    c100n('C11', 'VP_232', 'GND', (123.3, 125.0, 0)),
    c100n('C12', 'VN_232', 'GND', (129.7, 123.2, 0)),
    c100n('C13', 'VCC_232', 'GND', (119.6, 117.0, 90)),
    dict(ref='U4', sym='Power_Management:TPS22917DBV', value='TPS22917', fp='Package_TO_SOT_SMD:SOT-23-6',
         mfr='Texas Instruments', mpn='TPS22917DBVR',
         pins={'1': '+3V3', '2': 'GND', '3': 'XCVR_ON', '4': None, '5': None, '6': 'VCC_232'},
         pos=(120.4, 111.4, 0), desc='RS-232 transceiver supply switch: IO4 high = on'),
    res('R11', '100k', 'RC0603FR-07100KL', 'XCVR_ON', 'GND', (124.6, 111.4, 90), 'transceiver off until firmware enables it'),
    dict(ref='D5', sym='Device:D', value='1N4148W', fp='Diode_SMD:D_SOD-123',
         mfr='Diodes Incorporated', mpn='1N4148W-7-F', pins={'1': 'ENABLE_D', '2': 'ENABLE_232'},
         pos=(129.8, 111.6, 180), desc='ENABLE: only the positive RS-232 level reaches the meter'),
    res('R12', '100', 'RC0603FR-07100RL', 'ENABLE_D', 'MEP_ENABLE', (133.0, 109.6, 90)),
    # --- test points -------------------------------------------------------------------------------
    dict(ref='TP1', sym='Connector:TestPoint', value='3V3', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': '+3V3'}, pos=(108.0, 103.0, 0), bom=False),
    dict(ref='TP2', sym='Connector:TestPoint', value='GND', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'GND'}, pos=(111.0, 103.0, 0), bom=False),
    dict(ref='TP3', sym='Connector:TestPoint', value='RX', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'RXD_TTL'}, pos=(119.2, 121.4, 0), bom=False),
    dict(ref='TP4', sym='Connector:TestPoint', value='TX', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'TXD_TTL'}, pos=(119.2, 124.6, 0), bom=False),
    dict(ref='TP5', sym='Connector:TestPoint', value='ENABLE', fp='TestPoint:TestPoint_Pad_D1.5mm',
         mfr='', mpn='', pins={'1': 'MEP_ENABLE'}, pos=(145.9, 124.6, 0), bom=False),
]

# Nets routed with wide tracks.
POWER_NETS = {'VIN', 'MEP_PWR', 'VBUS', '+3V3', 'BUCK_SW', 'VCC_232', 'GND'}
