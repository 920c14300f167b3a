"""Container images built offline from busybox-static, for the Apptainer tests and the container benchmark.

No registry is reachable from the test machines, so the images are made here: a root directory with busybox and
its applet links, turned into a SIF with `apptainer build`, and the same tree packed as a `docker save` archive so
that `docker-archive://` exercises the worker's real pull path (apptainer converts it to a SIF, as with docker://).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

MARKER = "this file is inside the tqhpc test image"
APPLETS = ("sh", "cat", "echo", "ls", "pwd", "test", "true", "false", "sleep", "env", "id", "wc", "printf")


def busybox_root(directory: Path) -> Path:
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox is not installed (scripts/install_apptainer.sh installs busybox-static)")
    root = directory / "busybox-root"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        link = root / "bin" / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
    (root / "marker.txt").write_text(MARKER + "\n")
    for name in ("tmp", "etc", "proc", "dev", "sys"):
        (root / name).mkdir(exist_ok=True)
    return root


def build_sif(directory: Path, apptainer: str = "apptainer") -> Path:
    root = busybox_root(directory)
    image = directory / "busybox.sif"
    subprocess.run([apptainer, "--quiet", "build", "--force", str(image), f"{root}/"], check=True, capture_output=True)
    return image


def build_docker_archive(directory: Path) -> Path:
    """A `docker save` style tar (manifest, config, one layer) of the busybox tree."""
    root = busybox_root(directory)
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer_tar:
        layer_tar.add(root, arcname=".")
    layer = layer_buffer.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
            "config": {"Cmd": ["/bin/sh"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["tqhpc/busybox:test"], "Layers": ["layer.tar"]}])
    archive = directory / "busybox-docker.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("layer.tar", layer), (config_name, config), ("manifest.json", manifest.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive
