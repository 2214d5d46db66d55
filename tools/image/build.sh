#!/bin/sh
# Build the MEP firmware image: MicroPython 1.29 with the app frozen in, its version stamped
# (release.py), and the OTA partition table (two app slots and the filesystem), for the
# ESP32-WROOM-32 and the ESP32-C3:
#
#   tools/image/build.sh esp32|esp32c3 [MICROPYTHON_DIR]
#
# Needs ESP-IDF (the version MicroPython 1.29's ports/esp32/README.md names) set up in this
# shell (`. $IDF_PATH/export.sh`), or run inside Espressif's container, e.g.
#   docker run --rm -v $PWD:/mep -w /mep espressif/idf:$IDF_TAG tools/image/build.sh esp32
# (IDF_TAG: the ESP-IDF release MicroPython 1.29's ports/esp32/README.md names)
# and the project set up (./dev setup: microdot in .venv). MICROPYTHON_DIR defaults to
# build/micropython (cloned at v1.29.0 when missing). Writes build/image/<chip>/:
#   firmware.bin     bootloader, partition table and the app, for tools/flash.py
#                    --write-micropython (a first flash by cable)
#   micropython.bin  the app image alone, for `tools/flash.py image` (the signed update file)
#   partitions.csv, release.py, image.json (chip, board, version, sizes)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CHIP=${1:-}
case "$CHIP" in
    esp32) BOARD=MEP_ESP32 ;;
    esp32c3) BOARD=MEP_ESP32_C3 ;;
    *) echo "usage: tools/image/build.sh esp32|esp32c3 [MICROPYTHON_DIR]" >&2; exit 2 ;;
esac
if ! command -v idf.py >/dev/null 2>&1 || [ -z "${IDF_PATH:-}" ]; then
    cat >&2 <<MSG
build.sh: ESP-IDF is not set up in this shell (no idf.py, IDF_PATH unset), so the image
cannot be built here. Install ESP-IDF as MicroPython 1.29's ports/esp32/README.md says and
run '. \$IDF_PATH/export.sh' first, or run this inside Espressif's container (IDF_TAG: the ESP-IDF
release named there):
  docker run --rm -v "$ROOT":/mep -w /mep espressif/idf:\$IDF_TAG tools/image/build.sh $CHIP
MSG
    exit 3
fi
MP=${2:-$ROOT/build/micropython}
PY=${MEP_VENV:-$ROOT/.venv}/bin/python
[ -x "$PY" ] || PY=python3
if [ ! -d "$MP/ports/esp32" ]; then
    git clone --depth 1 --branch v1.29.0 https://github.com/micropython/micropython "$MP"
fi
OUT=$ROOT/build/image/$CHIP
mkdir -p "$OUT"
VERSION=$(cd "$ROOT" && "$PY" -c 'from tools.image import stamp; print(stamp.version())')
printf "VERSION = '%s'\n" "$VERSION" > "$OUT/release.py"
cp "$ROOT/tools/image/partitions-mep-4MiB-ota.csv" "$OUT/partitions.csv"
printf 'CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME="%s"\n' \
    "$OUT/partitions.csv" > "$OUT/sdkconfig.partitions"
export MEP_SDKCONFIG_PARTITIONS="$OUT/sdkconfig.partitions"
export MEP_RELEASE_PY="$OUT/release.py"       # firmware/manifest.py freezes it
export MEP_VENV="${MEP_VENV:-$ROOT/.venv}"
make -C "$MP/mpy-cross"
make -C "$MP/ports/esp32" submodules BOARD_DIR="$ROOT/tools/image/boards/$BOARD"
make -C "$MP/ports/esp32" BOARD_DIR="$ROOT/tools/image/boards/$BOARD" \
    BUILD="$OUT/build"
cp "$OUT/build/firmware.bin" "$OUT/build/micropython.bin" "$OUT/"
"$PY" -m tools.image.stamp --describe "$OUT" "$CHIP" "$BOARD" "$VERSION"
