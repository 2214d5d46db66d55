# The device itself: settings (config, config_schema, passwords), the task supervisor and
# watchdog (supervisor), over-the-air updates (ota, imgota, signed, hmac_sha256), safe mode
# (safemode) and time zones (tz).
