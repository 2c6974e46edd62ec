"""The peers' installation: python-socketio in a venv and Node's socket.io with npm, from the
registries into a cache directory outside the repository, again only when their sources change."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEER_SOURCES = ROOT / "bench" / "peers"
PY_PEER_REQUIREMENTS = ("python-socketio>=5.11,<6", "uvicorn[standard]>=0.30", "redis>=5")


def peer_python(peers_dir: Path) -> Path:
    return peers_dir / "python" / "bin" / "python"


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def install_peers(kinds: list[str], peers_dir: Path) -> None:
    """Install what the peers need from the registries, once per change of their sources."""
    if "node" in kinds:
        target = peers_dir / "node"
        target.mkdir(parents=True, exist_ok=True)
        sources = [PEER_SOURCES / "package.json", PEER_SOURCES / "node_server.js"]
        stamp = _digest(*(path.read_bytes() for path in sources))
        for path in sources:
            shutil.copyfile(path, target / path.name)
        if _stamp(target) != stamp or not (target / "node_modules").is_dir():
            print(f"installing socket.io into {target} (npm) ...", flush=True)
            _run(["npm", "install", "--no-audit", "--no-fund", "--omit=dev"], target, 600)
            (target / ".stamp").write_text(stamp)
    if "socketio" in kinds:
        target = peers_dir / "python"
        stamp = _digest(*(r.encode() for r in PY_PEER_REQUIREMENTS))
        if _stamp(target) != stamp or not peer_python(peers_dir).exists():
            print(f"installing python-socketio into {target} (pip) ...", flush=True)
            base = Path(getattr(sys, "_base_executable", sys.executable))
            _run([str(base), "-m", "venv", "--clear", str(target)], peers_dir, 300)
            pip = [str(peer_python(peers_dir)), "-m", "pip", "install", "--quiet"]
            _run([*pip, "--disable-pip-version-check", *PY_PEER_REQUIREMENTS], peers_dir, 600)
            (target / ".stamp").write_text(stamp)


def _stamp(target: Path) -> str:
    try:
        return (target / ".stamp").read_text()
    except OSError:
        return ""


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def peer_versions(kinds: list[str], peers_dir: Path) -> str:
    found: list[str] = []
    if "node" in kinds:
        for name in ("socket.io", "@socket.io/redis-adapter", "redis"):
            meta = peers_dir / "node" / "node_modules" / name / "package.json"
            with contextlib.suppress(OSError, ValueError):
                found.append(f"{name} {json.loads(meta.read_text())['version']}")
        node = subprocess.run(["node", "--version"], capture_output=True, text=True)
        found.append(f"node {node.stdout.strip()}")
    if "socketio" in kinds:
        code = "import importlib.metadata as m; print(m.version('python-socketio'), end=' ')\n"
        code += "print(m.version('uvicorn'))"
        out = subprocess.run(
            [str(peer_python(peers_dir)), "-c", code], capture_output=True, text=True
        )
        with contextlib.suppress(ValueError):
            sio, uvi = out.stdout.split()
            found.append(f"python-socketio {sio} (uvicorn {uvi})")
    return ", ".join(found)
