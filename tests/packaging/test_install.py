"""Packaging as a new user meets it: build the sdist, install it alone, use the SDK.

`python -m build` makes the sdist and then a wheel *from that sdist*, so a file
missing from the sdist fails here. The plain package (no extras) is installed
from the sdist into a fresh venv, passes packaging/smoke.py, has none of the
optional extras, and checks a label against a real store started from this
venv (the `[server]` side lives in another environment, as in production).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.fixtures.store_server import StoreServerProcess

ROOT = Path(__file__).resolve().parents[2]
PIP_TIMEOUT = 900  # seconds: the isolated builds fetch setuptools and cffi, then compile C

pytestmark = pytest.mark.slow


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = PIP_TIMEOUT) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
    return out


@pytest.fixture(scope="module")
def plain_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only `pip install enforce_sdk-*.tar.gz` (no extras)."""
    where = tmp_path_factory.mktemp("venv") / "plain"
    venv.create(where, with_pip=True)
    (sdist,) = dist.glob("enforce_sdk-*.tar.gz")
    _run(where / "bin" / "python", "-m", "pip", "install", "--quiet", sdist)
    return where / "bin" / "python"


def test_the_sdist_carries_the_native_sources(dist: Path) -> None:
    (sdist,) = dist.glob("enforce_sdk-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"native/build_native.py", "native/enforce_native.c", "native/enforce_native.h",
            "native/gate.c", "native/pdq.c", "setup.py", "pyproject.toml", "src/enforce_sdk/py.typed"} <= names


def test_the_wheel_is_tagged_abi3(dist: Path) -> None:
    (wheel,) = dist.glob("enforce_sdk-*.whl")
    assert wheel.name.endswith("-cp311-abi3-linux_x86_64.whl") or "-cp311-abi3-" in wheel.name
    with zipfile.ZipFile(wheel) as zf:
        native = [n for n in zf.namelist() if n.startswith("enforce_sdk/native/_enforce_native")]
    assert native and all(n.endswith(".abi3.so") for n in native), native


def test_the_wheel_built_from_the_sdist_ships_the_console_templates(dist: Path) -> None:
    """The reviewer console renders package data: a wheel without it serves no pages."""
    (wheel,) = dist.glob("enforce_sdk-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    console = "enforce_sdk/store/console/"
    assert {console + "templates/base.html", console + "templates/entity.html",
            console + "templates/queue.html", console + "static/console.css"} <= names


def test_the_plain_install_passes_the_smoke_check(plain_venv: Path) -> None:
    out = _run(plain_venv, ROOT / "packaging" / "smoke.py", cwd=plain_venv.parent)
    assert "smoke check passed" in out


def test_the_plain_install_has_no_optional_extra(plain_venv: Path) -> None:
    probe = ("import importlib.util as u; print(' '.join(m for m in ('kazoo', 'click', 'tqdm', "
             "'starlette', 'uvicorn', 'redis', 'cachetools', 'PIL') if u.find_spec(m)))")
    assert _run(plain_venv, "-c", probe).split() == []
    # ... and says what to install when an extra is asked for
    done = subprocess.run([plain_venv, "-c", "import enforce_sdk; enforce_sdk.ZooKeeperConfigSource"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "enforce-sdk[zookeeper]" in done.stderr
    cli = plain_venv.parent / "enforce-sdk"
    done = subprocess.run([cli, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "enforce-sdk[cli]" in done.stderr


def test_the_plain_sdk_checks_against_a_store_from_another_venv(
    plain_venv: Path, store_server: StoreServerProcess
) -> None:
    label = {"entity": "pin:77", "source": {"system": "review_tool", "type": "human",
                                             "name": "r1"},
             "enforcement": "block", "reason": "spam", "created_at": "2026-01-01T00:00:00Z"}
    written = httpx.post(f"{store_server.url}/v1/labels", json={"schema": 1, "labels": [label]},
                         headers=store_server.headers("writer"), timeout=10)
    assert written.status_code == 200, written.text
    script = (
        "import sys\n"
        "from enforce_sdk import EnforcementClient\n"
        "config = {'version': 1, 'surfaces': {'home_feed': {}}}\n"
        "with EnforcementClient(sys.argv[1], config, token=sys.argv[2]) as c:\n"
        "    for d in c.check_many(['pin:77', 'pin:78'], 'home_feed'):\n"
        "        print(d.entity, d.enforcement.name.lower(), d.visible, d.degraded)\n"
        "print('store' in sys.modules or 'enforce_sdk.store' in sys.modules)\n"
    )
    out = _run(plain_venv, "-c", script, store_server.url, store_server.tokens["reader"],
               timeout=120).splitlines()
    assert out == ["pin:77 block False False", "pin:78 allow True False", "False"]


def test_the_cli_extra_alone_runs_the_command_line(plain_venv: Path, tmp_path: Path) -> None:
    """Last in this module: it adds click and tqdm to the shared plain venv."""
    _run(plain_venv, "-m", "pip", "install", "--quiet", "click>=8.1", "tqdm>=4.66")
    cli = plain_venv.parent / "enforce-sdk"
    assert "labels" in _run(cli, "--help")
    doc = tmp_path / "enforce.json"
    doc.write_text('{"version": 3, "surfaces": {"home_feed": {}}}')
    assert "version 3" in _run(cli, "config", "validate", doc)  # offline: no kazoo needed
    done = subprocess.run([cli, "config", "get", "--hosts", "127.0.0.1:9"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "enforce-sdk[zookeeper]" in done.stderr, done.stderr
