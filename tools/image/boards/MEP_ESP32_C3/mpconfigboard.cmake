# MicroPython board definition for the MEP firmware on an ESP32-C3 (uStepper module, 4 MB
# flash, no PSRAM): ESP32_GENERIC_C3's settings, the app frozen in (firmware/manifest.py)
# and the OTA partition table of tools/image (two app slots). Built by tools/image/build.sh,
# which sets MEP_SDKCONFIG_PARTITIONS (the table's absolute path, as an sdkconfig fragment).
if(NOT DEFINED ENV{MEP_SDKCONFIG_PARTITIONS})
    message(FATAL_ERROR "build this board with tools/image/build.sh")
endif()
include(boards/mpconfigboard_esp32c3_common.cmake)
list(APPEND SDKCONFIG_DEFAULTS $ENV{MEP_SDKCONFIG_PARTITIONS})
set(MICROPY_FROZEN_MANIFEST ${MICROPY_BOARD_DIR}/../../../../firmware/manifest.py)
