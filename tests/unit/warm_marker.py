"""Preloaded by the warm-start server in tests: records which process imported it."""

import os

IMPORTED_IN_PID = os.getpid()
