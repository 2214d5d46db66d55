# Run by test_tls.py on the MicroPython unix port (MICROPYPATH: firmware/ and micropython-lib's
# umqtt): the firmware's own MQTT publisher or mail client against a TLS server, one JSON line
# out. argv: 'mqtt'|'mail', a file holding the JSON config (the unix port from PyPI dies on
# an argument of a certificate's length).
#   mqtt: {'ok', 'connected', 'published', 'last_error', 'tls', 'heap_tls', 'lag_ms'}
#   mail: {'ok', 'error', 'lag_ms'}
#   serve: the publisher runs for cfg['serve_ms'] with commands on, then {'ok', 'stats', 'commands'}
# heap_tls: GC heap the connected publisher holds more than before its first connection (on the
# unix port mbedTLS allocates from the GC heap); lag_ms: the longest the event loop was held
# while connecting (a 5 ms ticker's worst gap).
import gc
import json
import sys
import time

import asyncio

mode = sys.argv[1]
with open(sys.argv[2]) as _f:
    cfg = json.load(_f)
lag = [0]


async def ticker():
    while True:
        t0 = time.ticks_ms()
        await asyncio.sleep_ms(5)
        lag[0] = max(lag[0], time.ticks_diff(time.ticks_ms(), t0) - 5)


async def mqtt():
    from net.mqtt import Mqtt
    m = Mqtt(cfg, lambda: None, log=lambda s: None)
    gc.collect()
    free0 = gc.mem_free()
    task = asyncio.create_task(m.run())
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 8000:
        st = m.stats()
        if st['connected'] or st['last_error']:
            break
        await asyncio.sleep_ms(20)
    heap = None
    if m.stats()['connected']:
        gc.collect()
        heap = free0 - gc.mem_free()
        m.publish_alarm({'probe': 1})
        while m.stats()['published'] < 1 and time.ticks_diff(time.ticks_ms(), t0) < 8000:
            await asyncio.sleep_ms(20)
    st = m.stats()
    m.stop()
    await task
    return {'ok': True, 'connected': st['connected'], 'published': st['published'],
            'last_error': st['last_error'], 'tls': st['tls'], 'heap_tls': heap}


async def serve():
    from net.mqtt import Mqtt
    got = []
    m = Mqtt(cfg, lambda: None, log=lambda s: None, on_command=got.append)
    task = asyncio.create_task(m.run())
    await asyncio.sleep_ms(cfg['serve_ms'])
    st = m.stats()
    m.stop()
    await task
    return {'ok': True, 'stats': st, 'commands': len(got)}


async def mail():
    from net import smtp
    try:
        await smtp.send_mail(cfg, 'probe', 'over TLS', 5000)
        return {'ok': True, 'error': None}
    except Exception as e:
        return {'ok': False, 'error': '%s: %s' % (type(e).__name__, e)}


async def main():
    t = asyncio.create_task(ticker())
    out = await {'mqtt': mqtt, 'serve': serve, 'mail': mail}[mode]()
    t.cancel()
    out['lag_ms'] = lag[0]
    print(json.dumps(out))


asyncio.run(main())
