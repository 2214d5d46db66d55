# Board profiles: the pins and capabilities of each supported board.
# Pure data: nothing here opens hardware. The config names a profile by its key.
#
# Fields:
#   name            human name shown in the UI
#   chip            'esp32', 'esp32c3', 'esp32s3' or 'host'
#   uart            hardware UART id used for the MEP (None on the host)
#   rx, tx          GPIOs of the MEP serial line (RX = meter -> module)
#   enable          GPIO driving MEP ENABLE through an RS-232 driver output
#   enable_active   level written to the ENABLE GPIO to enable the MEP (0: the driver inverts)
#   driver_supply   GPIO powering the RS-232 transceiver (None when it is always powered)
#   led             status LED GPIO (None when absent); led_active: level that lights it
#   boot_button     GPIO of the BOOT button, doubles as the safe-mode pin held at boot
#   safe_active     level of boot_button that requests safe mode

PROFILES = {
    'dabbler': {
        'name': 'dabbler.dk MEP module rev 1.10/2.00 (ESP32-WROOM-32)',
        'chip': 'esp32',
        'uart': 2, 'rx': 16, 'tx': 17,
        'enable': 5, 'enable_active': 0,
        'driver_supply': 32,
        'led': None, 'led_active': 1,
        'boot_button': 0, 'safe_active': 0,
    },
    'ustepper': {
        'name': 'uStepper MEP module (ESP32-C3-MINI-1)',
        'chip': 'esp32c3',
        'uart': 1, 'rx': 6, 'tx': 7,
        'enable': 5, 'enable_active': 0,
        'driver_supply': None,
        'led': None, 'led_active': 1,
        'boot_button': 9, 'safe_active': 0,
    },
    # This project's own MEP drawer PCB, rev C (hardware/kicad): ESP32-S3-MINI-1-N4R2 (2 MB
    # quad PSRAM: the stock ESP32_GENERIC_S3 image runs the app as .mpy files). Checked
    # against the KiCad netlist by tests/host/test_board_netlist.py.
    'mepdrawer': {
        'name': 'Open MEP drawer PCB rev C (ESP32-S3-MINI-1, PSRAM)',
        'chip': 'esp32s3',
        'uart': 1, 'rx': 12, 'tx': 14,
        'enable': 13, 'enable_active': 0,
        # GPIO9 drives the ON input of a TPS22917 load switch feeding the MAX3232 VCC:
        # high = transceiver powered, low = off (a 3.3k pull-down keeps it off from power-on).
        # GPIO13 has a pull-up to that supply: ENABLE stays off until the firmware drives it low.
        'driver_supply': 9,
        'led': 16, 'led_active': 1,
        # GPIO0: the S3's download strap, pulled up, BOOT button to ground
        'boot_button': 0, 'safe_active': 0,
    },
    # The firmware running on a PC against the meter simulator (pseudo-terminal or TCP).
    'host': {
        'name': 'PC (meter simulator over TCP or a pseudo-terminal)',
        'chip': 'host',
        'uart': None, 'rx': None, 'tx': None,
        'enable': None, 'enable_active': 0,
        'driver_supply': None,
        'led': None, 'led_active': 1,
        'boot_button': None, 'safe_active': 0,
    },
}

DEFAULT = 'dabbler'


def get(key):
    try:
        return PROFILES[key]
    except KeyError:
        raise ValueError('unknown board profile %r; known: %s' % (key, ', '.join(sorted(PROFILES))))
