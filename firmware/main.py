# Runs after boot.py, as source. Never replaced by an update (only tools/flash.py writes it):
# it starts the app under a watchdog and survives whatever the app does. Every start is
# counted and the watchdog armed before the app is imported (system/safemode.py); an app
# that raises, or ends, is recorded as a failed start and the board reset; one that hangs is
# reset by the watchdog. After 3 failed starts boot.py rolls an update on trial back, else
# enters safe mode. Ctrl-C leaves the REPL (until the watchdog resets the board).
import machine
try:
    from system import safemode
    go = safemode.before_app()
except Exception as e:      # the start-up code itself failed: run the app all the same
    print('main.py:', repr(e))
    go = True
    try:
        machine.WDT(timeout=30000)
    except Exception:
        pass
safemode = None
if go:
    why = 'the app ended'
    try:
        import app
        app.device_main()
    except KeyboardInterrupt:
        why = None
        print('app stopped (Ctrl-C): REPL; the watchdog resets the board within 30 s')
    except SystemExit:      # machine.reset() on a virtual board
        raise
    except BaseException as e:
        import sys
        sys.print_exception(e)
        why = repr(e)
    if why:
        try:
            from system import safemode
            safemode.failed(why)
        except BaseException:
            pass
        print('restarting in 3 s (Ctrl-C for the REPL)')
        import time
        time.sleep(3)
        machine.reset()
