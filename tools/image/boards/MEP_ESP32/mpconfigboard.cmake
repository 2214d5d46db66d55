# MicroPython board definition for the MEP firmware on an ESP32-WROOM-32 (4 MB flash, no
# PSRAM): ESP32_GENERIC's settings, the app frozen in (firmware/manifest.py) and the OTA
# partition table of tools/image (two app slots). Built by tools/image/build.sh, which sets
# MEP_SDKCONFIG_PARTITIONS (the table's absolute path, as an sdkconfig fragment).
set(IDF_TARGET esp32)
if(NOT DEFINED ENV{MEP_SDKCONFIG_PARTITIONS})
    message(FATAL_ERROR "build this board with tools/image/build.sh")
endif()
set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    ${SDKCONFIG_IDF_VERSION_SPECIFIC}
    boards/sdkconfig.ble
    $ENV{MEP_SDKCONFIG_PARTITIONS}
)
set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/../../../../firmware/manifest.py)
