# Where readings go: the RAM ring (live charts) and the history aggregates on flash.
from storage.ring import Ring
from storage.history import History

# history.py's files: history.state, history.minute.N, .hour.N, .day.N (an old history.bin is
# converted once)
HISTORY_FILE = 'history.bin'
# what the ring keeps besides time: the fields /api/recent serves (12 bytes a slot)
RING_FIELDS = ('p_in', 'p_out')


def join(data_dir, name):
    """'/' + name on the device ('' or '/'), data_dir/name on the PC."""
    if not data_dir:
        return '/' + name
    return data_dir + name if data_dir.endswith('/') else data_dir + '/' + name


class Store:
    def __init__(self, data_dir, ring_capacity=900, history_sizes=None, ring_fields=RING_FIELDS,
                 cfg=None):
        """`ring_fields`: the reading fields the ring keeps (None: all of ring.FIELDS).
        `cfg`: settings whose 'timezone' cuts the history's days (None: UTC days)."""
        self.ring = Ring(ring_capacity, ring_fields)
        self.history = History(join(data_dir, HISTORY_FILE), history_sizes, cfg)

    def load(self):
        """Reload the saved history (never raises). Returns a warning text or None."""
        return self.history.load()

    def add(self, reading):
        """Record one reading. Returns False when the history dropped it (clock policy);
        the ring keeps every reading."""
        self.ring.push(reading)
        return self.history.add(reading)

    def energy_since(self, t):
        """Wh imported from unix time t (within the last 24 h) up to now, from the minute
        history (the reading being added included)."""
        total = 0
        for row in self.history.rows('minute', t):
            total += row[4]
        return total

    def maybe_save(self, now):
        return self.history.maybe_save(now)

    async def maybe_save_async(self, now):
        return await self.history.maybe_save_async(now)

    def save(self):
        self.history.save()

    async def save_async(self):
        """save() yielding to the event loop between chunks."""
        await self.history.save_async()

    @property
    def warning(self):
        return self.history.warning
