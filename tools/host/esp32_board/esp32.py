# The virtual board's `esp32` module (host only, never flashed): only what the firmware's
# image updates use, esp32.Partition on the emulated flash (esp32_flash.py). tools/vboard.py
# puts this folder on the board's sys.path when it runs with --ota-flash, and tells it the
# flash file and the slot its bootloader started (MEP_OTA_FLASH, MEP_OTA_RUNNING).
import os
from esp32_flash import Flash, Partition

Partition.flash = Flash(os.getenv('MEP_OTA_FLASH'))
Partition.running = os.getenv('MEP_OTA_RUNNING')
