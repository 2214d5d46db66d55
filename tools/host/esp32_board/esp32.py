# The virtual board's `esp32` module (host only, never flashed): only what the firmware's
# image updates use, esp32.Partition on the emulated flash (esp32_flash.py). tools/vboard.py
# puts this folder on the board's sys.path when it runs with --ota-flash, and tells it the
# flash file and the slot its bootloader started (MEP_OTA_FLASH, MEP_OTA_RUNNING). Anywhere
# else (this folder on a PC's sys.path) the import fails, as on a PC.
import os

_flash = os.getenv('MEP_OTA_FLASH')
if not _flash:
    raise ImportError('no emulated ESP32 flash (tools/vboard.py --ota-flash)')

from esp32_flash import Flash, Partition  # noqa: E402

Partition.flash = Flash(_flash)
Partition.running = os.getenv('MEP_OTA_RUNNING')
