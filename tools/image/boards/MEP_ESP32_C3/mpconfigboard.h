// MEP firmware image for the ESP32-C3 (ESP32_GENERIC_C3's settings, the app frozen in)
#define MICROPY_HW_BOARD_NAME "MEP module (ESP32-C3, app frozen in)"
#define MICROPY_HW_MCU_NAME "ESP32C3"

#define MICROPY_HW_ENABLE_SDCARD (0)
#define MICROPY_PY_MACHINE_I2S (0)
// the REPL on the UART too, for modules with a USB-UART chip (as ESP32_GENERIC_C3)
#define MICROPY_HW_ENABLE_UART_REPL (1)
