# Where data is kept: the RAM ring of recent readings (ring), the history aggregates on flash
# (history, history_load), both behind store; atomic file replacement (atomic) and the
# filesystem operations of OTA and safe mode (fs).
