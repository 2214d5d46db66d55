# MicroPython's name of CPython's struct module (micropython-lib's umqtt.simple imports it).
from struct import *  # noqa: F401,F403
