"""What comes from a results tree, a file name or git is data, never control: the one reader of
such files and the one escaper of such text.

``read_bytes`` / ``read_json``: results directories are copied between machines and merged from
other people, so an entry may be a FIFO (``open`` would wait for a writer forever), a device or a
symlink to one (``/dev/zero`` has size 0 and never ends), or grow while it is read. The file is
opened without blocking, must be a regular file by ``fstat`` of the opened descriptor (what is
read, not what a name pointed to a moment earlier), and at most ``limit + 1`` bytes are read, so
the limit holds for the bytes actually read.

``visible``: text that goes to a terminal, a log or a page has its control and format characters
written out as escapes (``\\x1b``, ``\\u202e``): an escape sequence cannot retitle, clear or
recolour a terminal, and a bidirectional override cannot reorder the line or page around it.
"""
from __future__ import annotations

import json
import os
import stat
import sys

MAX_FILE_BYTES = 64 * 2**20  # a results file, benchmarks.json or machine.json: the bytes read
CHUNK = 1 << 20


class Unreadable(Exception):
    """A file that is not read; ``str(err)`` is one line saying why."""


def read_bytes(path: str | os.PathLike, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; raises Unreadable otherwise."""
    try:
        # checked before opening too: opening some devices already does something
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise Unreadable("not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise Unreadable(f"cannot be read ({err.strerror or type(err).__name__})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the stat
            raise Unreadable("not a regular file")
        parts, size = [], 0
        while size <= limit:
            part = os.read(fd, min(CHUNK, limit + 1 - size))
            if not part:
                break
            parts.append(part)
            size += len(part)
    except OSError as err:
        raise Unreadable(f"cannot be read ({err.strerror or type(err).__name__})") from None
    finally:
        os.close(fd)
    if size > limit:
        raise Unreadable(f"over the {_size(limit)} limit for a results file")
    return b"".join(parts)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def read_json(path: str | os.PathLike, limit: int = MAX_FILE_BYTES, api_version: int | None = None):
    """A JSON document read with ``read_bytes``. With ``api_version``, a document that states
    another format ``version`` (asv's results and benchmarks.json do) is Unreadable, as asv's own
    reader refuses it. NaN and Infinity are read as floats, as asv writes and reads them."""
    data = read_bytes(path, limit)
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable("not UTF-8 text") from None
    except RecursionError:
        raise Unreadable("not JSON (nested too deeply)") from None
    except ValueError as err:  # json.JSONDecodeError, and ints of more digits than Python reads
        raise Unreadable(f"not JSON ({str(err).splitlines()[0][:120]})") from None
    if api_version is not None and isinstance(doc, dict) and "version" in doc:
        version = doc["version"]
        if version != api_version or isinstance(version, bool):
            raise Unreadable(f"format version {visible(repr(version))[:40]}, not asv's "
                             f"{api_version} (`asv update` converts older files)")
    return doc


def visible(text) -> str:
    """``text`` with every character Python does not count as printable (control, format such as
    the bidirectional overrides, line and paragraph separators, surrogates of undecodable file
    names, unassigned) written as its escape; printable text is unchanged, so this is idempotent."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def say(*lines, file=None, flush: bool = False) -> None:
    """print() for the terminal: each argument one line, through ``visible`` (a line break that
    came with the data is shown as ``\\n``, not made)."""
    print("\n".join(visible(line) for line in lines), file=file or sys.stdout, flush=flush)


def log_text(text: str) -> str:
    """Text for a log file: its own line breaks kept, everything else through ``visible``."""
    return "\n".join(visible(line) for line in str(text).split("\n"))
