#!/usr/bin/env python
"""Install detectron2 0.6 as pure Python from the registry's ``pb1-detectron2==0.6`` sdist.

Why this exists: detectron2 is not on the package registry under its own name, and the
``pb1-detectron2`` sdist ships the official v0.6 Python sources *without* the C++/CUDA
sources, so ``pip install pb1-detectron2`` fails while compiling. We download the sdist
(checking its sha256), build a wheel named ``detectron2`` that holds only the Python
package, and install it with pip, so ``pip show detectron2`` reports it and
``pip uninstall detectron2`` removes it cleanly. The missing compiled ops are filled at
run time by ``clump_d2.compat``.

A detectron2 that is already installed (for example a user's compiled build) is left alone
unless ``--force`` is given.

Usage: python scripts/install_detectron2.py [--cache DIR] [--force]
"""
import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"

# A minimal setup.py for the pure-Python wheel: no ext_modules, the distribution is named
# "detectron2" so that pip and users find it under its usual name.
PURE_SETUP_PY = """
from setuptools import find_packages, setup

setup(
    name="detectron2",
    version="{version}",
    description="detectron2 {version} (pure Python build from the pb1-detectron2 sdist; "
    "compiled ops provided by clump_d2.compat)",
    license="Apache-2.0",
    packages=find_packages(include=("detectron2", "detectron2.*")),
    package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
    python_requires=">=3.7",
)
"""


def _index_simple_url() -> str:
    """The simple-index URL pip itself is configured with (pip's default when unset)."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
        capture_output=True,
        text=True,
    )
    if out.returncode == 0 and out.stdout.strip():
        return out.stdout.strip()
    from pip._internal.models.index import PyPI

    return PyPI.simple_url


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(cache_dir: Path) -> Path:
    """Download the sdist into ``cache_dir`` (once) and verify its sha256.

    ``pip download`` cannot be used: it prepares the sdist's metadata, which imports torch
    in an isolated build environment and then rejects the sdist's direct-URL extra.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / SDIST_FILE
    if target.exists() and _sha256(target) == SDIST_SHA256:
        return target
    url = _index_simple_url().rstrip("/") + f"/{SDIST_NAME}/"
    request = urllib.request.Request(
        url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        index = json.load(response)
    links = [f for f in index["files"] if f["filename"] == SDIST_FILE]
    if not links:
        raise SystemExit(f"{SDIST_FILE} is not listed at {url}")
    tmp = target.with_suffix(".part")
    with urllib.request.urlopen(links[0]["url"], timeout=300) as response, open(tmp, "wb") as f:
        shutil.copyfileobj(response, f)
    digest = _sha256(tmp)
    if digest != SDIST_SHA256:
        tmp.unlink()
        raise SystemExit(f"sha256 mismatch for {SDIST_FILE}: got {digest}, expected {SDIST_SHA256}")
    tmp.replace(target)
    return target


def build_and_install(sdist: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with tarfile.open(sdist) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.name.startswith(f"{SDIST_NAME}-{SDIST_VERSION}/detectron2/")
                or m.name == f"{SDIST_NAME}-{SDIST_VERSION}/LICENSE"
            ]
            tar.extractall(tmp, members=members, filter="data")
        src = tmp / f"{SDIST_NAME}-{SDIST_VERSION}"
        (src / "setup.py").write_text(PURE_SETUP_PY.format(version=SDIST_VERSION))
        wheel_dir = tmp / "wheels"
        pip = [sys.executable, "-m", "pip"]
        subprocess.run(
            pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheel_dir), str(src)],
            check=True,
        )
        wheels = sorted(wheel_dir.glob("detectron2-*.whl"))
        subprocess.run(pip + ["install", "--no-deps", "--force-reinstall", str(wheels[0])], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cache",
        default=os.environ.get("CLUMP_D2_CACHE", str(Path.home() / ".cache" / "clump_d2")),
        help="where the downloaded sdist is kept (default: ~/.cache/clump_d2)",
    )
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    args = parser.parse_args()
    if not args.force and importlib.util.find_spec("detectron2") is not None:
        print("detectron2 is already installed; leaving it unchanged (use --force to replace)")
        return
    build_and_install(fetch_sdist(Path(args.cache)))
    print("installed detectron2 0.6 (pure Python)")


if __name__ == "__main__":
    main()
