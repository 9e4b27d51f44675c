"""Build of the one native part: the exchange-log writer's record encoder (everything else is in
pyproject.toml). Optional: without a C compiler or OpenSSL's headers the install goes on and the
writer uses the Python encoder (``zistboom.exchange_log.record``), which defines the format."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("zistboom.exchange_log._fastrecord", ["src/zistboom/exchange_log/_fastrecord.c"],
                             libraries=["crypto"], optional=True)])
