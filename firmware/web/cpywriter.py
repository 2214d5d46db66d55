# CPython's asyncio StreamWriter with the awrite()/aclose() of MicroPython's Stream, which
# web/conn.py and Microdot write with. Never loaded on MicroPython.


class Writer:
    def __init__(self, w):
        self.w = w

    def get_extra_info(self, name):
        return self.w.get_extra_info(name)

    async def awrite(self, b):
        self.w.write(b)
        await self.w.drain()

    async def aclose(self):
        self.w.close()
        await self.w.wait_closed()
