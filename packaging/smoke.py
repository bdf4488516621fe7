"""Smoke check of an installed enforce-sdk (plain install, no extras): run by CI on the sdist
and by cibuildwheel on each wheel.

It imports the facade, runs the native hash and bloom filter, and decides a page
through EnforcementClient with an in-process label reader, so no store is needed.
It also says which optional extras the plain install must not have pulled in.
"""

from __future__ import annotations

import sys


def main() -> int:
    import enforce_sdk
    from enforce_sdk import BloomFilter, Decision, EnforcementClient, signature

    assert signature("pin:1") == signature("pin:1") and signature("pin:1") != signature("pin:2")
    bloom = BloomFilter.for_capacity(1000, 0.01)
    bloom.add("pin:1")
    assert bloom.contains("pin:1")
    # PDQ from a numpy array needs no extra (Pillow only decodes files)
    import numpy as np

    from enforce_sdk import image_signature

    ramp = np.add.outer(np.arange(64) * 3, np.arange(64)).astype(np.uint8)
    sig = image_signature(ramp)
    assert len(sig.hash) == 64 and 0 <= sig.quality <= 100, sig
    assert image_signature(np.ascontiguousarray(ramp[:, ::-1])).distance(sig) > 0, sig

    class Reader:
        def get_many(self, keys: list[str]) -> dict[str, list[object]]:
            return {}

        def close(self) -> None:
            pass

    config = {"version": 1, "surfaces": {"home_feed": {}}}
    with EnforcementClient("http://unused", config, store=Reader()) as client:  # type: ignore[arg-type]
        decisions = client.check_many(["pin:1", "pin:2"], "home_feed")
    assert all(isinstance(d, Decision) and d.visible for d in decisions), decisions
    loaded = sorted(m for m in ("kazoo", "starlette", "uvicorn", "redis", "enforce_sdk.store")
                    if m in sys.modules)
    assert not loaded, f"a plain `import enforce_sdk` loaded {loaded}"
    print(f"enforce-sdk {enforce_sdk.__version__} smoke check passed "
          f"(native {enforce_sdk.native.binding.__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
