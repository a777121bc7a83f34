"""`make demo`: every mock provider on 127.0.0.1 (ports from 9100) and a gateway config that routes
to them, so the gateway can be tried without provider keys. Writes the config and an env file,
then serves until interrupted."""

import os
import signal
import sys
import threading

import yaml

sys.path.insert(0, os.path.dirname(__file__))

from conftest import MASTER_KEY, gateway_config, gateway_env  # noqa: E402
from mocks import all_mock_classes  # noqa: E402


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "build"
    os.makedirs(out_dir, exist_ok=True)
    mocks = {}
    for i, cls in enumerate(all_mock_classes()):
        mocks[cls.name] = cls().start(port=9100 + i)
    config = gateway_config(mocks)
    config["model_list"] = [m for m in config["model_list"] if m["model_name"] != "dead-end"]
    with open(os.path.join(out_dir, "demo.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    with open(os.path.join(out_dir, "demo.env"), "w") as f:
        for k, v in gateway_env(mocks).items():
            f.write(f"export {k}={v}\n")
    for m in mocks.values():
        print(f"mock {m.name:10s} {m.base_url}", flush=True)
    print(f"gateway key: {MASTER_KEY}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
