"""`make install` on a machine with nothing but python3: get uv, install the lock, compile bytecode.

Standard library only, so Debian's and Ubuntu's system ``python3`` runs it (no pip, no venv module,
no ``--user`` install: PEP 668 refuses those). Steps, each saying what it does while it does it:

1. **uv**, pinned (``UV_VERSION``): the one on PATH if it is that version; else its wheel from the
   package index (PyPI, or ``UV_DEFAULT_INDEX``/``UV_INDEX_URL``/``PIP_INDEX_URL``), checked
   against the SHA-256 pinned here, unpacked to ``.tools/uv-<version>/uv``. Nothing is written
   outside the project.
2. ``uv sync --frozen``: the locked environment in ``.venv`` (uv finds a Python >= 3.11 on PATH).
3. Bytecode for every installed module, with a running count (a flow run is a fresh interpreter:
   without ``.pyc`` files each one recompiles thousands of modules).

    python3 infra/bootstrap.py            # what `make install` runs
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from infra.progress import fail, heartbeat, run_streamed, say  # noqa: E402

UV_VERSION = "0.13.9"  # also the Dockerfile's ARG UV_VERSION (a test keeps them equal)
#: SHA-256 of the uv wheels we accept, from the index's own listing on the day the version was pinned.
UV_WHEELS = {
    ("Linux", "x86_64", "glibc"): (
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19"),
    ("Linux", "x86_64", "musl"): (
        "uv-0.13.9-py3-none-musllinux_1_1_x86_64.whl",
        "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25"),
    ("Linux", "aarch64", "glibc"): (
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe"),
    ("Linux", "aarch64", "musl"): (
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe"),
    ("Darwin", "x86_64", ""): (
        "uv-0.13.9-py3-none-macosx_10_12_x86_64.whl",
        "c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5"),
    ("Darwin", "arm64", ""): (
        "uv-0.13.9-py3-none-macosx_11_0_arm64.whl",
        "66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63"),
}
TOOLS = ROOT / ".tools"
VENV = ROOT / ".venv"
INSTALL_HINT = "install uv yourself (https://docs.astral.sh/uv/) and run again with UV=/path/to/uv make install"


# --- 1. uv ------------------------------------------------------------------------------------------
def _version_of(uv: str) -> str | None:
    try:
        out = subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return None
    match = re.search(r"uv (\d+\.\d+\.\d+)", out)
    return match.group(1) if match else None


def _platform_key() -> tuple[str, str, str]:
    system, machine = platform.system(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "arm64" if system == "Darwin" else "aarch64"}.get(machine, machine)
    libc = ""
    if system == "Linux":
        libc = "glibc" if platform.libc_ver()[0] == "glibc" else "musl"
    return system, machine, libc


def _index_url() -> str:
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return "https://pypi.org/simple"


def _open(url: str, accept: str = "*/*"):
    request = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "trip-duration-bootstrap"})
    try:
        return urllib.request.urlopen(request, timeout=60)  # noqa: S310 - the package index
    except urllib.error.URLError as err:
        if isinstance(err.reason, ssl.SSLCertVerificationError):
            fail(f"could not verify {url}'s TLS certificate ({err.reason.verify_message}): this Python has no "
                 "CA certificates. Debian/Ubuntu: sudo apt-get install -y ca-certificates (or set SSL_CERT_FILE "
                 "to your CA bundle), then run make again")
        fail(f"could not reach {url}: {err.reason}. Check the network or set UV_DEFAULT_INDEX to a PyPI "
             f"mirror; or {INSTALL_HINT}")


def _wheel_url(filename: str) -> tuple[str, str | None]:
    """Where the index serves ``filename``, and the SHA-256 it states (PEP 691 JSON, else PEP 503 HTML)."""
    index = _index_url()
    with _open(f"{index}/uv/", "application/vnd.pypi.simple.v1+json, text/html;q=0.1") as response:
        body = response.read().decode()
        kind = response.headers.get("Content-Type", "")
    if "json" in kind:
        for entry in json.loads(body)["files"]:
            if entry["filename"] == filename:
                return urllib.request.urljoin(f"{index}/uv/", entry["url"]), entry["hashes"].get("sha256")
    else:
        for href in re.findall(r'href="([^"]+)"', body):
            if href.split("#")[0].endswith("/" + filename) or href.split("#")[0] == filename:
                digest = re.search(r"sha256=([0-9a-f]{64})", href)
                return urllib.request.urljoin(f"{index}/uv/", href.split("#")[0]), digest and digest.group(1)
    fail(f"the index {index} has no {filename}; set UV_DEFAULT_INDEX to one that mirrors PyPI, or {INSTALL_HINT}")
    raise AssertionError  # unreachable


def _download(url: str, size_hint: str) -> bytes:
    chunks, got = [], 0
    with _open(url) as response, heartbeat(f"downloading uv {UV_VERSION} ({size_hint})") as touch:
        total = int(response.headers.get("Content-Length") or 0)
        next_report = 0.25
        while chunk := response.read(1 << 16):
            chunks.append(chunk)
            got += len(chunk)
            if total and got / total >= next_report:
                say(f"  uv {UV_VERSION}: {got / 2**20:.1f} of {total / 2**20:.1f} MiB")
                touch()
                next_report += 0.25
    return b"".join(chunks)


def ensure_uv() -> str:
    """The path of a uv of version UV_VERSION, fetched into .tools/ when none is at hand."""
    if os.environ.get("UV"):
        return os.environ["UV"]  # the user's choice, as is
    local = TOOLS / f"uv-{UV_VERSION}" / "uv"
    for candidate in (str(local), shutil.which("uv")):
        if candidate and _version_of(candidate) == UV_VERSION:
            return candidate
    key = _platform_key()
    if key not in UV_WHEELS:
        fail(f"no pinned uv wheel for {'/'.join(k for k in key if k)}: {INSTALL_HINT}")
    filename, pinned = UV_WHEELS[key]
    say(f"getting uv {UV_VERSION} (the installer this project pins) from {_index_url()} ...")
    url, stated = _wheel_url(filename)
    if stated and stated != pinned:
        fail(f"the index states SHA-256 {stated} for {filename}, not the pinned {pinned}: refusing it")
    wheel = _download(url, "~17 MiB")
    digest = hashlib.sha256(wheel).hexdigest()
    if digest != pinned:
        fail(f"{filename} downloaded with SHA-256 {digest}, expected {pinned}: refusing it (retry, or {INSTALL_HINT})")
    local.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=local.parent) as tmp, zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        member = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
        staged = Path(tmp) / "uv"
        staged.write_bytes(archive.read(member))
        staged.chmod(staged.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(staged, local)  # never a half-written uv at the path we look for
    say(f"  uv {UV_VERSION} -> {local.relative_to(ROOT)} (SHA-256 verified)")
    return str(local)


# --- 2. the locked environment ----------------------------------------------------------------------
def sync(uv: str) -> None:
    say("installing the locked environment into .venv (uv sync --frozen) ...")
    started = time.monotonic()
    env = {**os.environ, "UV_NO_PROGRESS": "1"}  # uv's own bars need a terminal; its lines are enough
    code, output = run_streamed([uv, "sync", "--frozen"], "installing packages", cwd=ROOT, env=env,
                                show=lambda line: None if re.match(r"\s*[+~-] ", line) else line)  # no line per package
    if code != 0:
        hint = ""
        if "No interpreter found" in output or "requires-python" in output.lower():
            hint = ("\nThis project needs Python >= 3.11 on PATH (Debian 12 and Ubuntu 24.04 have it as python3; "
                    "Ubuntu 22.04: sudo apt-get install -y python3.11).")
        fail(f"uv sync failed (exit {code}); its output is above.{hint}")
    # The same uv, next to the project's commands (`make test` runs checkov through `uv tool run`).
    link = VENV / "bin" / "uv"
    if not link.exists():
        link.symlink_to(Path(uv).resolve())
    say(f"  environment ready ({time.monotonic() - started:.0f} s)")


# --- 3. bytecode ------------------------------------------------------------------------------------
def compile_bytecode() -> None:
    """Compile every installed module in the venv's own interpreter, reporting the count as it goes."""
    python = VENV / "bin" / "python"
    say("compiling bytecode for the installed packages ...")
    started = time.monotonic()
    code, output = run_streamed([str(python), str(Path(__file__).resolve()), "--compile-site-packages"],
                                "compiling bytecode", cwd=ROOT)
    if code != 0:
        fail(f"compiling bytecode failed (exit {code}); its output is above")
    say(f"  bytecode ready ({time.monotonic() - started:.0f} s)")


def _compile_one(paths: list[str]) -> int:
    import importlib.util
    import py_compile

    done = 0
    for path in paths:
        target = importlib.util.cache_from_source(path)
        try:
            if os.stat(target).st_mtime >= os.stat(path).st_mtime:
                continue  # already compiled (a rerun, or uv did it)
        except OSError:
            pass
        try:
            py_compile.compile(path, cfile=target, doraise=True, quiet=2)
            done += 1
        except (py_compile.PyCompileError, OSError, ValueError):
            pass  # test data and templates that are not Python: nothing imports them
    return done


def _compile_site_packages() -> int:
    import sysconfig
    from concurrent.futures import ProcessPoolExecutor, as_completed

    site = Path(sysconfig.get_paths()["purelib"])
    files = sorted(str(p) for p in site.rglob("*.py"))
    batches = [files[i:i + 100] for i in range(0, len(files), 100)]
    compiled, seen, last = 0, 0, 0.0
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        futures = {pool.submit(_compile_one, batch): len(batch) for batch in batches}
        for future in as_completed(futures):
            compiled += future.result()
            seen += futures[future]
            if time.monotonic() - last > 3 or seen == len(files):
                print(f"{seen:,} of {len(files):,} modules checked, {compiled:,} compiled "
                      f"({100 * seen // max(len(files), 1)}%)", flush=True)
                last = time.monotonic()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--compile-site-packages"]:
        return _compile_site_packages()
    if args:
        fail(f"unknown arguments {args}: run `python3 infra/bootstrap.py` with none")
    uv = ensure_uv()
    sync(uv)
    compile_bytecode()
    (VENV / ".synced").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
