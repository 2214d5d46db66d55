# machine.Timer of the virtual board (tools/vboard.py), loaded when the board first uses it:
# the callback is called from a thread (an ESP32 calls it from its scheduler) after `period`
# ms times SCALE (the vboard's --timer-scale); deinit() or a reset ends it.
import _thread
import time


class Timer:
    ONE_SHOT, PERIODIC = 0, 1

    def __init__(self, id=-1, **kw):
        self.run = 0
        if kw:
            self.init(**kw)

    def init(self, mode=1, period=-1, callback=None):
        self.run += 1
        run = self.run

        def go():
            while True:
                time.sleep_ms(max(1, int(period * SCALE)))  # noqa: F821 (given by vboard.py)
                if self.run != run:
                    return
                if callback:
                    callback(self)
                if mode == 0:
                    return
        _thread.start_new_thread(go, ())

    def deinit(self):
        self.run += 1
