# RAM ring buffer of recent readings for live charts. Pre-allocated: one array per kept
# field, nothing allocated per push except the conversions of the reading's own values.
#
# Stored as scaled integers (exact for what the API shows: whole W, 0.1 V, 0.01 A, mHz):
#   time         'I' UTC unix seconds
#   p_in, p_out  'I' W
#   p_*_l1..l3   'H' W, saturating at 65534 W per phase
#   u_l1..l3     'H' 0.1 V
#   i_l1..l3     'H' 0.01 A, saturating at 655.34 A
#   freq         'H' mHz
# The all-ones value of each array marks a missing value (None in the output).
# `fields` keeps only some of them (time is always kept): 12 bytes a slot for time, p_in
# and p_out (what the dashboard charts) instead of 38 for all.
from array import array

# (field, typecode, scale: stored = round(value * scale))
LAYOUT = (
    ('time', 'I', 1), ('p_in', 'I', 1), ('p_out', 'I', 1),
    ('p_in_l1', 'H', 1), ('p_in_l2', 'H', 1), ('p_in_l3', 'H', 1),
    ('p_out_l1', 'H', 1), ('p_out_l2', 'H', 1), ('p_out_l3', 'H', 1),
    ('u_l1', 'H', 10), ('u_l2', 'H', 10), ('u_l3', 'H', 10),
    ('i_l1', 'H', 100), ('i_l2', 'H', 100), ('i_l3', 'H', 100),
    ('freq', 'H', 1000),
)
FIELDS = tuple(f[0] for f in LAYOUT)
_NONE = {'I': 0xFFFFFFFF, 'H': 0xFFFF}


class Ring:
    def __init__(self, capacity=900, fields=None):
        """`fields`: the fields to keep (default: all of FIELDS); time is always kept."""
        if capacity < 1:
            raise ValueError('ring capacity must be at least 1')
        self.capacity = capacity
        self._cols = []
        for name, tc, scale in LAYOUT:
            if fields is None or name == 'time' or name in fields:
                a = array(tc, bytearray(capacity * (4 if tc == 'I' else 2)))
                self._cols.append((name, a, scale, _NONE[tc]))
        self.fields = tuple(c[0] for c in self._cols)
        self._next = 0  # slot written by the next push
        self._n = 0

    def __len__(self):
        return self._n

    def nbytes(self):
        """RAM held by the arrays."""
        n = 0
        for c in self._cols:
            n += len(c[1]) * memoryview(c[1]).itemsize
        return n

    def bytes_per_slot(self):
        return self.nbytes() // self.capacity

    def clear(self):
        self._next = self._n = 0

    def push(self, reading):
        i = self._next
        for name, a, scale, none in self._cols:
            v = reading.get(name)
            if v is None:
                a[i] = none
            else:
                v = round(v * scale) if scale != 1 else round(v)
                a[i] = 0 if v < 0 else none - 1 if v >= none else v
        self._next = i + 1 if i + 1 < self.capacity else 0
        if self._n < self.capacity:
            self._n += 1

    def _slot(self, k):
        """Slot of the k-th oldest entry."""
        s = self._next - self._n + k
        return s + self.capacity if s < 0 else s

    def _value(self, col, s):
        name, a, scale, none = col
        v = a[s]
        if v == none:
            return None
        return v if scale == 1 else v / scale

    def latest(self):
        """The newest entry as a reading dict (SI units), or None when empty."""
        if not self._n:
            return None
        s = self._slot(self._n - 1)
        r = {}
        for c in self._cols:
            v = self._value(c, s)
            if v is not None:
                r[c[0]] = v
        return r

    def stream(self, t=0, fields=None):
        """The entries with time > t (all for t=0; incremental chart polling), oldest first,
        as (name, values) pairs: 'time' and the kept fields of `fields` (all when None), values
        an iterator reading the arrays as it goes, so no list of a whole column is built (on
        the device a long list is one block the fragmented heap may not have). Which slots
        are read is fixed when the first pair is taken; a reading pushed into a full ring
        meanwhile overwrites the oldest of them."""
        a = self._cols[0][1]
        first = self._n
        while first > 0 and a[self._slot(first - 1)] > t:
            first -= 1
        s0 = self._slot(first) if first < self._n else 0
        m = self._n - first
        cap = self.capacity
        for c in self._cols:
            if fields is None or c[0] == 'time' or c[0] in fields:
                yield c[0], (self._value(c, (s0 + j) % cap) for j in range(m))
