"""Command-line clients from the npm registry for the real-client tests (Codex CLI, …): installed
once into a cache directory with ``npm install --prefix`` when missing, then run from there."""

import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("TOLLGATE_NPM_PREFIX") or Path.home() / ".cache" / "tollgate-tests" / "npm")


def npm_binary(package: str, binary: str) -> Path:
    """The path of ``binary`` from ``package``, installing the package into the cache first when
    it is not there. Fails (never skips) when npm is missing or the install fails."""
    path = CACHE / "node_modules" / ".bin" / binary
    if path.exists():
        return path
    npm = shutil.which("npm")
    assert npm, f"npm is needed to install {package} for this test (Node.js and npm are on the CI machine)"
    CACHE.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", package],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and path.exists(), f"npm install {package} failed:\n{done.stdout}\n{done.stderr}"
    return path
