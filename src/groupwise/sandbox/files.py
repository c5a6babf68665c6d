"""Host-side file work for the sandbox's fallback work dir: writing a sample's files, removing any tree."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from pathlib import PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def safe_name(name: str) -> str:
    """A file name relative to the work dir, or ValueError when it would escape it."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(p in ("..", ".") for p in parts):
        raise ValueError(f"sandbox file name escapes the work dir: {name!r}")
    return "/".join(parts)


def as_bytes(content: str | bytes) -> bytes:
    """File content as bytes; a lone surrogate is written as is (the program then fails on it, not us)."""
    return content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content


def write_files(workdir: str, files: Mapping[str, str | bytes]) -> None:
    """Write ``files`` (relative names) below ``workdir``."""
    for name, content in files.items():
        path = os.path.join(workdir, safe_name(name))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(as_bytes(content))


def remove_tree(root: str) -> bool:
    """Remove ``root`` and everything below it, however deep (no recursion: one open dir at a time, by
    name relative to it, so no path grows past PATH_MAX). Never raises; True when it is gone."""
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    stack: list[tuple[str, list[str]]] = []  # (name of the current dir in its parent, subdirs still to do)
    try:
        pending = _clear_files(fd)
        while True:
            if pending:
                name = pending.pop()
                try:
                    child = _open_dir(fd, name)
                except OSError:
                    continue
                stack.append((name, pending))
                os.close(fd)
                fd, pending = child, _clear_files(child)
                continue
            if not stack:
                break
            name, pending = stack.pop()
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=fd)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(OSError):
        os.rmdir(root)
    return not os.path.lexists(root)


def _open_dir(parent: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:  # a dir the program made unreadable (we are not root): make it ours again
        os.chmod(name, stat.S_IRWXU, dir_fd=parent, follow_symlinks=False)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)


def _clear_files(fd: int) -> list[str]:
    """Unlink every non-dir entry of the open dir ``fd``; return the names of its subdirs."""
    dirs = []
    try:
        entries = list(os.scandir(fd))
    except OSError:
        return []
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
        except OSError:
            continue
    return dirs
