"""zistboom (زیست‌بوم): the software that runs a smart-government ecosystem.

Parts (one sub-package each): ``registry``, ``licensing``, ``gateway``, ``exchange_log``,
``monitoring``, ``nlp`` (Persian front door), ``dashboard``; ``text`` holds the Persian text
utilities every part shares, ``admin`` the admin HTTP API, ``demo`` the demo ecosystem.
"""

__version__ = "0.1.0"
