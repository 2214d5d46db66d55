# MicroPython's name of CPython's socket module (micropython-lib's umqtt.simple imports it).
from socket import *  # noqa: F401,F403
