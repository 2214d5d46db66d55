# Runs first at every start, as source; never replaced by an update (only tools/flash.py
# writes it). Applies a pending OTA update (or rolls one back that failed or did not prove
# itself) and decides safe mode; see system/safemode.py. Never lets an error here stop the
# REPL.
try:
    from system import safemode
    safemode.device_boot()
except Exception as e:
    print('boot.py:', repr(e))
