"""Cheap checks of an artifact file before its bytes reach a native library.

Native runtimes do not all fail gracefully on foreign bytes: ExecuTorch 1.5 aborts the process when
it logs a non-UTF-8 program identifier. So every runtime checks the file exists and carries its
format's magic bytes first, and turns whatever the library raises into a one-line ArtifactError.
"""

from __future__ import annotations

from pathlib import Path

from app.errors import ArtifactError


def read_head(path: Path, kind: str, n: int = 64) -> bytes:
    """The first n bytes of an existing, non-empty file; ArtifactError naming the file otherwise."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"missing file {path} ({kind} model)")
    if not path.is_file():
        raise ArtifactError(f"{path} is not a file ({kind} model expected)")
    try:
        with open(path, "rb") as f:
            head = f.read(n)
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise ArtifactError(f"{path} is empty ({kind} model expected)")
    return head


def check_tflite(path: Path) -> None:
    """A .tflite flatbuffer has the file identifier TFL3 at bytes 4..8."""
    head = read_head(path, "tflite")
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ArtifactError(f"{path} is not a .tflite model (no TFL3 flatbuffer identifier at bytes 4-8)")


EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


def edgetpu_compiled(path: Path) -> bool:
    """True when the .tflite file holds the Edge TPU custom op (edgetpu_compiler output)."""
    return EDGETPU_CUSTOM_OP.encode() in Path(path).read_bytes()


def check_cpu_tflite(path: Path) -> None:
    """A .tflite the CPU can run: refuses a compiled Edge TPU model in one line (LiteRT would otherwise
    print several lines about an unresolved custom op before failing)."""
    check_tflite(path)
    if edgetpu_compiled(path):
        raise ArtifactError(
            f"{path} is compiled for the Edge TPU ({EDGETPU_CUSTOM_OP}): the CPU cannot run it; "
            "use runtime type 'edgetpu' (falls back to the CPU artifact) or the model's 'tflite' artifact"
        )


def check_pte(path: Path) -> None:
    """An ExecuTorch program has the identifier ET<2 digits> at bytes 4..8."""
    head = read_head(path, "ExecuTorch .pte")
    ident = head[4:8]
    if len(head) < 8 or ident[:2] != b"ET" or not ident[2:].isdigit():
        raise ArtifactError(f"{path} is not an ExecuTorch .pte program (no ETnn identifier at bytes 4-8)")


def check_zip(path: Path, kind: str) -> None:
    """TorchScript / lite-interpreter files are zip archives."""
    head = read_head(path, kind)
    if head[:4] != b"PK\x03\x04":
        raise ArtifactError(f"{path} is not a {kind} file (not a zip archive)")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception message, shortened."""
    text = str(exc).strip() or type(exc).__name__
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    return line if len(line) <= limit else line[: limit - 3] + "..."
