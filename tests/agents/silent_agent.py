"""Never connects to the bridge."""

import time

print("thinking forever", flush=True)
time.sleep(3600)
