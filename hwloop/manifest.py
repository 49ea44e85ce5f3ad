"""What ``hwloop generate`` writes next to the Verilog: ``manifest.json`` and a FuseSoC core.

The output folder is built in a temporary sibling folder and renamed into place, so a failed
generation never leaves a half-written folder behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hwloop import __version__
from hwloop.errors import InputError
from hwloop.paths import check_folder_path, staging_dir


def component_ports(component: Any) -> list[dict[str, Any]]:
    """The Verilog ports of an Amaranth ``wiring.Component`` as its top module:
    ``[{"name", "direction", "width"}, ...]``, clk and rst (its sync domain's) first."""
    from amaranth.lib.wiring import Flow

    # only its signature is read: tell Amaranth this instance is not meant to be elaborated
    # (otherwise it warns UnusedElaboratable when the object is collected)
    component._MustUse__silence = True
    result = [{"name": "clk", "direction": "input", "width": 1},
              {"name": "rst", "direction": "input", "width": 1}]
    for name, member in component.signature.members.items():
        width = member.shape if isinstance(member.shape, int) else member.shape.width
        result.append({"name": name, "direction": "input" if member.flow == Flow.In
                       else "output", "width": width})
    return result


def manifest(*, generator: str, name: str, params: dict[str, Any], ports: list[dict[str, Any]],
             verilog: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest of one generated design: parameters, ports and the Verilog's content hash."""
    from hwloop.toolchain import _package_version

    data: dict[str, Any] = {
        "generator": generator,
        "name": name,
        "top": name,
        "verilog": f"{name}.v",
        "params": params,
        "ports": ports,
        "files": [{"path": f"{name}.v", "type": "verilogSource",
                   "sha256": hashlib.sha256(verilog.encode()).hexdigest()}],
        "content_hash": hashlib.sha256(verilog.encode()).hexdigest()[:16],
        "hwloop_version": __version__,
        "amaranth_version": _package_version("amaranth") or "unknown",
    }
    if extra:
        data.update(extra)
    return data


def fusesoc_core(*, generator: str, name: str, description: str) -> str:
    """A FuseSoC CAPI2 core file for ``<name>.v`` (top ``name``), with a Verilator lint target."""
    return "\n".join([
        "CAPI=2:",
        f"name: hwloop:{generator}:{name}:{__version__}",
        f"description: {json.dumps(description)}",
        "",
        "filesets:",
        "  rtl:",
        "    files:",
        f"      - {name}.v",
        "    file_type: verilogSource",
        "",
        "targets:",
        "  default:",
        "    filesets: [rtl]",
        f"    toplevel: {name}",
        "  lint:",
        "    default_tool: verilator",
        "    filesets: [rtl]",
        "    tools:",
        "      verilator:",
        "        mode: lint-only",
        "        verilator_options: [-Wno-fatal]",
        f"    toplevel: {name}",
        "",
    ])


MANIFEST = "manifest.json"


def same_file(a: str | Path, b: str | Path) -> bool:
    """``a`` and ``b`` name one file (through links, ``..``, or a hard link): writing the
    output ``a`` would replace the input ``b``."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare the names
        return os.path.realpath(a) == os.path.realpath(b)  # (resolve() raises on a loop)


def has_manifest(folder: Path) -> bool:
    """``folder`` is an earlier output of ``hwloop generate``: its manifest and the files that
    names, nothing else (a file the user added would be deleted with the folder)."""
    try:
        data = json.loads((folder / MANIFEST).read_text())
        names = {p.name for p in folder.iterdir()}
    except (OSError, ValueError):
        return False
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str):
        return False
    files = data.get("files")
    listed = {f.get("path") for f in files if isinstance(f, dict)} \
        if isinstance(files, list) else set()
    return names <= {MANIFEST, f"{name}.v", f"{name}.core", *listed}


def write_folder_atomically(out: Path, fill: Callable[[Path], None], *,
                            overwrite: bool = True,
                            is_earlier_output: Callable[[Path], bool] = has_manifest,
                            kind: str = f"an hwloop output folder (a {MANIFEST} and the files it "
                                        f"lists alone)") -> None:
    """Make ``out`` by ``fill(tmp)`` on a temporary sibling folder, then rename it into place.

    If ``fill`` raises, ``out`` is untouched (an existing folder stays as it was). An existing
    folder is replaced only if it is empty or an earlier output (``is_earlier_output``; ``kind``
    names such a folder in the error): replacing means deleting, and ``-o`` may name a folder
    of the user's by mistake.
    """
    out = Path(out)
    # else mkdir says "File exists" of a file above it that it would not replace; and a link to
    # nothing: its target's folder would be made, and the rename onto the link fail
    check_folder_path(out, name=f"output {str(out)!r}")
    resolved = out.resolve()
    parent = resolved.parent
    if out.exists():
        if not overwrite:
            raise InputError(f"output folder {str(out)!r} already exists")
        if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
            raise InputError(f"output folder {str(out)!r} is the current folder or holds it: "
                             "name a folder for the output alone")
        try:
            empty = not any(resolved.iterdir())
        except OSError as exc:  # a folder that cannot be listed (chmod 000)
            raise InputError(f"output folder {str(out)!r}: cannot read it: "
                             f"{exc.strerror or exc}") from None
        if not empty and not is_earlier_output(resolved):
            raise InputError(f"output folder {str(out)!r} exists and is not {kind}: it would "
                             f"be replaced as a whole")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create {str(parent)!r}: {exc.strerror or exc}") from None
    # a process killed mid-write leaves its staging folder: the next one removes it
    tmp, release = staging_dir(parent, out.name)
    try:
        fill(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            try:
                os.rename(out, old / "x")
                try:
                    os.rename(tmp, out)
                except BaseException:
                    os.rename(old / "x", out)  # the previous output stays
                    raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        release()


def write_design(out: Path, *, generator: str, name: str, params: dict[str, Any],
                 ports: list[dict[str, Any]], verilog: str, description: str,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``out/<name>.v``, ``out/manifest.json``, ``out/<name>.core``; return the manifest
    (``extra``: the generator's own fields)."""
    data = manifest(generator=generator, name=name, params=params, ports=ports, verilog=verilog,
                    extra=extra)

    def fill(folder: Path) -> None:
        (folder / f"{name}.v").write_text(verilog)
        (folder / MANIFEST).write_text(json.dumps(data, indent=2) + "\n")
        (folder / f"{name}.core").write_text(
            fusesoc_core(generator=generator, name=name, description=description))

    write_folder_atomically(out, fill)
    return data
