# Runs after boot.py, as source: start the app unless safe mode was chosen.
from system import safemode

if safemode.active is None:  # boot.py failed or was skipped: decide here
    safemode.device_boot()
if safemode.active:
    print('safe mode (%s): app not started. Fix things on the REPL, then machine.reset()'
          % safemode.reason)
else:
    from storage.fs import Fs
    safemode.start_app(Fs('/'))
    del safemode, Fs
    import app
    app.device_main()
