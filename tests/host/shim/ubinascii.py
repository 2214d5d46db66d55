# MicroPython's name of CPython's binascii module (micropython-lib's umqtt.simple imports it).
from binascii import *  # noqa: F401,F403
