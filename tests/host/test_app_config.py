# App.apply_config on the real App: all or nothing, and only what changed is redone.
from web_helpers import AppOnSim, MBK, SECRETS


async def test_apply_config_redoes_only_what_changed(tmp_path):
    sim = AppOnSim(str(tmp_path / 'data'))
    try:
        a = sim.app
        m, eng = a.mqtt, a.link.engine
        eng.ever_ok = True              # the key has worked: a save must not forget that
        m._reconf = False

        assert a.apply_config({'poll_bt28_ms': 2000}) == {}
        assert a.poller.bt28_ms == 2000
        assert not m._reconf, 'a meter setting reconnected MQTT'
        assert eng.ever_ok, 'a save without a new MBK reset the link key state'

        assert a.apply_config({'mqtt_port': 1884}) == {}
        assert m._reconf and a.config['mqtt_port'] == 1884
        m._reconf = False

        assert a.apply_config({'mqtt_port': 1884, 'mbk': MBK, 'hostname': 'mep-test'}) == {}
        assert not m._reconf and eng.ever_ok, 'values saved unchanged redid work'

        assert a.apply_config({'device_name': 'Main meter'}) == {}
        assert m._reconf, 'the Home Assistant device name needs a re-announce'
        m._reconf = False

        assert a.apply_config({'mbk': 'ABCDEFGHIJKLMNOPQRST'}) == {}
        assert eng.key == b'ABCDEFGHIJKLMNOP' and not eng.ever_ok and not m._reconf

        # all or nothing: a bad value refuses the clear of the same save too
        errs = a.apply_config({'mqtt_port': 0}, ['mqtt_password'])
        assert 'mqtt_port' in errs
        assert a.config['mqtt_password'] == SECRETS['mqtt_password'] and not m._reconf
        assert a.apply_config({}, ['mqtt_password']) == {}
        assert a.config['mqtt_password'] == '' and m._reconf
    finally:
        sim.stop()
