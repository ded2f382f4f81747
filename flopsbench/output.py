"""Writing an output file, or stdout, safely, whatever the path names.

A regular file, or a path where nothing is yet, is replaced in one step: the new content goes into
a temporary file beside it, is synced to disk, gets the old file's mode (and, for root, its owner;
a new file gets 0666 less the umask) and is renamed over it. A reader never sees half a file, a
failure (a full disk) leaves the old file as it was, and no temporary file stays behind. Anything
else a path can name is written through and never replaced: a device (``-o /dev/null``), a FIFO,
a symlink (``-o /dev/stdout``; the link stays, what it points to gets the content, as a shell's
``>`` would give it). Text is UTF-8 whatever the locale. A failure is an OSError naming the file.
Torch-free: the board runner uses it too."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MAX_SUFFIX = 1000  # create_new's tries: STEM-2 ... STEM-999


def reason(exc: OSError) -> str:
    """An OSError's reason alone ('No space left on device'), for a message that names the file itself."""
    return exc.strerror or str(exc)


def replaces(path: Path) -> bool:
    """Whether ``path`` is written by replacing it: it is a regular file, or nothing is there."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True


def encoded(text: str) -> bytes:
    # backslashreplace: a lone surrogate (not encodable) is the only thing that could fail, and views escape those
    return text.encode("utf-8", "backslashreplace")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` into ``path`` by the module's rules."""
    data = encoded(text)
    if not replaces(path):
        with open(path, "wb") as through:  # follows a symlink; a device or FIFO gets the bytes
            through.write(data)
        return
    with staged(path) as tmp:
        tmp.write_bytes(data)


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temporary file for ``path``'s new content (for writers that take a file name, such as
    ``torch.onnx.export``). When the block ends without an error, it becomes ``path`` by the
    module's rules (renamed over a regular file, copied into anything else); either way it is gone
    afterwards, so a failed write leaves ``path`` as it was."""
    replace = replaces(path)
    if replace:
        path.parent.mkdir(parents=True, exist_ok=True)
    # beside the target, so that the rename stays on one file system; elsewhere never in /dev
    fd, name = tempfile.mkstemp(dir=path.parent if replace else None, prefix=f".{path.name[:40]}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if replace:
            _replace(tmp, path)
        else:
            with open(tmp, "rb") as source, open(path, "wb") as through:
                shutil.copyfileobj(source, through)
    finally:
        tmp.unlink(missing_ok=True)  # after the rename, nothing is there


def _replace(tmp: Path, path: Path) -> None:
    """Put the finished ``tmp`` in place of ``path`` (a regular file, or nothing) with its mode."""
    try:
        old = os.stat(path)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()  # mkstemp's 0600 would make every report private
    else:
        mode = stat.S_IMODE(old.st_mode)
        if os.geteuid() == 0:  # root rewriting a user's file leaves it theirs
            os.chown(tmp, old.st_uid, old.st_gid)
    os.chmod(tmp, mode)
    with open(tmp, "rb") as written:
        os.fsync(written.fileno())  # on disk before the rename: after a crash, the old file or the whole new one
    os.replace(tmp, path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def create_new(path: Path, text: str) -> Path:
    """Create a file that did not exist, holding ``text``: ``path``, or if that name is taken,
    ``STEM-2.SUFFIX``, ``STEM-3.SUFFIX``... With O_EXCL, two processes that pick one name never
    share it: one gets it, the other the next. Returns the path created; a failed write removes it."""
    for number in range(1, MAX_SUFFIX):
        candidate = path if number == 1 else path.with_name(f"{path.stem}-{number}{path.suffix}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            with open(fd, "wb") as created:
                created.write(encoded(text))
                created.flush()
                os.fsync(created.fileno())
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise FileExistsError(errno.EEXIST, f"{path.name} and {MAX_SUFFIX - 2} numbered names after it are taken",
                          str(path))


def write_stdout(text: str) -> None:
    """``text`` on stdout in UTF-8, whatever the locale, as the files are, and flushed now, so that
    a failure shows here: BrokenPipeError when the reader is gone, another OSError otherwise
    (EBADF when stdout was closed before the process started)."""
    stream = sys.stdout
    if stream is None:  # Python's stdout when fd 1 was closed
        raise OSError(errno.EBADF, "it is closed")
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text-only stream put in its place: its own encoding
        stream.write(text)
        stream.flush()
        return
    stream.flush()
    binary.write(encoded(text))
    binary.flush()


def discard_stdout() -> None:
    """After stdout failed: point fd 1 at /dev/null, so that the flush at exit of what is still
    buffered neither fails again nor prints 'Exception ignored' (Python's note on SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # closed, or a stream with no descriptor
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
