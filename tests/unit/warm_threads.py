"""A module that starts a thread on import: the warm-start server must refuse to fork after it."""

import threading
import time

threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
