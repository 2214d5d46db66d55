# Host-side tools (meter simulator, flashing, runners). Never copied to the device.
