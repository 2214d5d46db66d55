# Host stand-in for micropython-lib's umqtt package (only umqtt.simple is provided).
