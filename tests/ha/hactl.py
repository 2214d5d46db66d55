"""Talks to a running Home Assistant for tests/host/test_ha_real.py. Runs in the Home
Assistant virtualenv (.venv-ha: aiohttp is there); prints one JSON document.

    hactl.py onboard URL                      -> {"token": ...}  (first user, fresh config)
    hactl.py token URL                        -> {"token": ...}  (log in again, same user)
    hactl.py mqtt URL TOKEN HOST PORT         -> the finished config flow of the MQTT entry
    hactl.py ws URL TOKEN MSGS.json           -> [result of each websocket command]
    hactl.py watch URL TOKEN OUT.jsonl        -> (runs until killed) every state change of a
                                                 sensor.* entity as one JSON line:
                                                 {"t": unix, "e": id, "old": .., "new": ..};
                                                 {"t": .., "ws": "down"/"up"} on reconnects
"""
import asyncio
import json
import sys
import time

import aiohttp

CLIENT_ID = 'http://127.0.0.1/'
USER, PASSWORD = 'mep-test', 'mep-test-password-1'


async def _token_from_code(s, url, code):
    async with s.post(url + '/auth/token', data={'grant_type': 'authorization_code',
                                                 'code': code, 'client_id': CLIENT_ID}) as r:
        r.raise_for_status()
        return (await r.json())['access_token']


async def onboard(url):
    async with aiohttp.ClientSession() as s:
        async with s.post(url + '/api/onboarding/users', json={
                'client_id': CLIENT_ID, 'name': 'MEP test', 'username': USER,
                'password': PASSWORD, 'language': 'en'}) as r:
            r.raise_for_status()
            code = (await r.json())['auth_code']
        return {'token': await _token_from_code(s, url, code)}


async def login(url):
    async with aiohttp.ClientSession() as s:
        async with s.post(url + '/auth/login_flow', json={
                'client_id': CLIENT_ID, 'handler': ['homeassistant', None],
                'redirect_uri': CLIENT_ID}) as r:
            r.raise_for_status()
            flow = await r.json()
        async with s.post(url + '/auth/login_flow/' + flow['flow_id'], json={
                'client_id': CLIENT_ID, 'username': USER, 'password': PASSWORD}) as r:
            r.raise_for_status()
            res = await r.json()
        return {'token': await _token_from_code(s, url, res['result'])}


async def mqtt_entry(url, token, host, port):
    h = {'Authorization': 'Bearer ' + token}
    async with aiohttp.ClientSession(headers=h) as s:
        async with s.post(url + '/api/config/config_entries/flow',
                          json={'handler': 'mqtt', 'show_advanced_options': False}) as r:
            r.raise_for_status()
            flow = await r.json()
        if flow.get('type') == 'create_entry':
            return flow
        async with s.post(url + '/api/config/config_entries/flow/' + flow['flow_id'],
                          json={'broker': host, 'port': int(port)}) as r:
            r.raise_for_status()
            return await r.json()


async def _ws_open(s, url, token):
    ws = await s.ws_connect(url + '/api/websocket', heartbeat=20)
    msg = await ws.receive_json()
    assert msg['type'] == 'auth_required', msg
    await ws.send_json({'type': 'auth', 'access_token': token})
    msg = await ws.receive_json()
    if msg['type'] != 'auth_ok':
        raise RuntimeError('websocket auth failed: %r' % msg)
    return ws


async def ws_commands(url, token, msgs):
    out = []
    async with aiohttp.ClientSession() as s:
        ws = await _ws_open(s, url, token)
        for i, m in enumerate(msgs, 1):
            await ws.send_json(dict(m, id=i))
            while True:
                r = await ws.receive_json()
                if r.get('id') == i and r.get('type') == 'result':
                    break
            out.append(r)
        await ws.close()
    return out


async def watch(url, token, path):
    with open(path, 'a', buffering=1) as f:
        while True:
            try:
                async with aiohttp.ClientSession() as s:
                    ws = await _ws_open(s, url, token)
                    await ws.send_json({'id': 1, 'type': 'subscribe_events',
                                        'event_type': 'state_changed'})
                    f.write(json.dumps({'t': time.time(), 'ws': 'up'}) + '\n')
                    async for m in ws:
                        if m.type != aiohttp.WSMsgType.TEXT:
                            break
                        d = json.loads(m.data)
                        if d.get('type') != 'event':
                            continue
                        ev = d['event']['data']
                        eid = ev.get('entity_id') or ''
                        if not eid.startswith('sensor.'):
                            continue
                        old = (ev.get('old_state') or {}).get('state')
                        new = (ev.get('new_state') or {}).get('state')
                        f.write(json.dumps({'t': time.time(), 'e': eid, 'old': old,
                                            'new': new}) + '\n')
            except (aiohttp.ClientError, OSError, RuntimeError, asyncio.TimeoutError):
                pass
            f.write(json.dumps({'t': time.time(), 'ws': 'down'}) + '\n')
            await asyncio.sleep(1)


def main(argv):
    cmd = argv[1]
    if cmd == 'onboard':
        res = asyncio.run(onboard(argv[2]))
    elif cmd == 'token':
        res = asyncio.run(login(argv[2]))
    elif cmd == 'mqtt':
        res = asyncio.run(mqtt_entry(argv[2], argv[3], argv[4], argv[5]))
    elif cmd == 'ws':
        with open(argv[4]) as f:
            msgs = json.load(f)
        res = asyncio.run(ws_commands(argv[2], argv[3], msgs))
    elif cmd == 'watch':
        asyncio.run(watch(argv[2], argv[3], argv[4]))
        return
    else:
        raise SystemExit('unknown command %r' % cmd)
    print(json.dumps(res))


if __name__ == '__main__':
    main(sys.argv)
