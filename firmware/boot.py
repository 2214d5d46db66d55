# Runs first at every start, as source. Applies a pending OTA update (or rolls a crashing one
# back) and decides safe mode; see system/safemode.py. Never lets an error here stop the REPL.
try:
    from system import safemode
    safemode.device_boot()
except Exception as e:
    print('boot.py:', repr(e))
