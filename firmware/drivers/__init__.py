# The hardware side: the MEP link's asyncio driver (link), the board profiles (boards), the
# ESP32's UART, pins and watchdog (esp32) and WiFi with the clock (wifi).
