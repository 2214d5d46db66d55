// MEP firmware image for the ESP32-WROOM-32 (ESP32_GENERIC with the app frozen in)
#define MICROPY_HW_BOARD_NAME "MEP module (ESP32, app frozen in)"
#define MICROPY_HW_MCU_NAME "ESP32"
