# Proves the core test conventions on both interpreters (pytest and the MicroPython runner).
from support import raises, unhex, run, load_json


def test_unhex_ignores_whitespace():
    assert unhex('00 11\n22\tff') == b'\x00\x11\x22\xff'
    assert unhex('') == b''
    assert unhex('DEADbeef') == b'\xde\xad\xbe\xef'


def test_unhex_rejects_bad_input():
    raises(ValueError, unhex, 'abc')
    raises(ValueError, unhex, 'zz')


def test_raises_returns_the_exception():
    e = raises(KeyError, {}.__getitem__, 'k')
    assert isinstance(e, KeyError)
    e = raises(ValueError, _checked, 1, limit=0)
    assert isinstance(e, ValueError) and e.args[0] == 'over 0'


def _checked(x, limit=10):
    # MicroPython builtins take no keyword arguments; a Python function does.
    if x > limit:
        raise ValueError('over %d' % limit)
    return x


def test_raises_fails_when_nothing_raised():
    e = raises(AssertionError, raises, ValueError, int, '5')
    assert 'ValueError' in str(e)


def test_raises_lets_other_errors_through():
    e = raises(KeyError, raises, ValueError, {}.__getitem__, 'k')
    assert isinstance(e, KeyError)


async def _add(a, b):
    return a + b


async def _nominal():
    x = await _add(1, 2)
    return x * 10


class _Yield:
    # An awaitable that yields a non-None value, like a real future would.
    def __iter__(self):
        yield 'real'

    __await__ = __iter__


async def _awaits_real():
    await _Yield()


def test_run_drives_nominal_coroutines():
    assert run(_nominal()) == 30
    assert run(_add(2, 3)) == 5


def test_run_refuses_real_awaits():
    raises(RuntimeError, run, _awaits_real())


def test_load_json_reads_data_files():
    vec = load_json('mep-digest.json')
    assert len(vec['frames']) > 0


async def test_async_tests_are_awaited():
    assert await _add(20, 22) == 42
