# CPython stand-in for MicroPython's `micropython` module (host tests only; never flashed).


def const(x):
    return x


def _passthrough(f):
    return f


native = _passthrough
viper = _passthrough
bytecode = _passthrough


def mem_info(*args):
    pass


def qstr_info(*args):
    pass


def opt_level(*args):
    return 0


def schedule(fn, arg):
    # On the board the call is deferred to the VM's next safe point; running it now is the
    # closest host equivalent for single-threaded tests.
    fn(arg)
    return True


def alloc_emergency_exception_buf(size):
    pass


def heap_lock():
    return 0


def heap_unlock():
    return 0


def kbd_intr(ch):
    pass
