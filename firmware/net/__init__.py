# Network clients: the MQTT publisher (mqtt) with its topics and payloads (ha) and Home
# Assistant discovery (ha_discovery), mail (smtp), and the non-blocking TCP connect (tcp).
