"""What yolo-sfn wrote in a user's folder, so a rerun replaces exactly that and nothing else;
and how a user's file names are shown (``shown``: any name printable, one line).

``DIR/.yolo-sfn-outputs.json`` records, per command, the files (relative to ``DIR``) that
command wrote there: ``{"run": ["summary.json", "results/<id>.json", ...], "detect": [...]}``
(a plain list is an older ``run`` record). A command may write a file only where nothing is,
or where it (or another yolo-sfn command) wrote before; any other existing file, an input
image above all, is never replaced: the writer picks another name (``dog-2.jpg``) or stops.
The record is saved before the files are written (every name about to be written) and again
after (what was written), so a run that dies halfway still leaves a record of its files.
"""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

from yolo_sfn.errors import InputFileError

RECORD = ".yolo-sfn-outputs.json"
NAME_MAX_BYTES = 255  # a file name's limit on ext4, APFS, NTFS (in its own units), ...


# control characters, undecodable bytes (surrogateescape), non-characters, line/paragraph
# separators (str.splitlines() splits at U+2028: a one-URI-per-line manifest would too)
_UNSAFE_CATEGORIES = ("Cc", "Cs", "Cn", "Zl", "Zp")


def unsafe_char(ch: str) -> bool:
    """A character a terminal, an S3 key or an XML listing cannot carry as it is."""
    return unicodedata.category(ch) in _UNSAFE_CATEGORIES


_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown(text: str | os.PathLike) -> str:
    """``text`` printable on any terminal, on one line: control characters, undecodable
    bytes and bidi overrides escaped (``a\\nb.jpg``, ``\\xff.jpg``, ``\\u202e``)."""
    out = []
    for ch in os.fsdecode(text):
        if not unsafe_char(ch) and ch not in _BIDI_CONTROLS:
            out.append(ch)
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ascii(ch)[1:-1])
    return "".join(out)


def _load(folder: Path) -> dict[str, list[str]]:
    try:
        doc = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if isinstance(doc, list):  # the record before there was more than one writer: `run`
        doc = {"run": [*doc, "function-logs.jsonl"]}  # wrote its logs too, unrecorded
    if not isinstance(doc, dict):
        return {}
    return {k: [str(n) for n in v if _relative(str(n))] for k, v in doc.items()
            if isinstance(v, list)}


def _relative(name: str) -> bool:
    p = Path(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts


def _in_layout(name: str, layout: tuple[str, ...]) -> bool:
    folder, _, rest = name.rpartition("/")
    return name in layout or (bool(folder) and "/" not in rest and f"{folder}/" in layout)


def fit_name(stem: str, suffix: str) -> str:
    """``stem + suffix`` cut (at the end of the stem) to fit a file name's 255 bytes."""
    budget = NAME_MAX_BYTES - len(os.fsencode(suffix))
    while len(os.fsencode(stem)) > budget:
        stem = stem[:-1]
    return stem + suffix


class OutputRecord:
    """The files ``command`` (``"run"`` | ``"detect"``) wrote in ``folder``."""

    def __init__(self, folder: Path, command: str) -> None:
        self.folder = Path(folder)
        self.command = command
        self._doc = _load(self.folder)
        self.previous: list[str] = list(self._doc.get(command, []))
        self.names: list[str] = []  # this time's files, relative to the folder

    def _rel(self, path: Path) -> str:
        return Path(path).relative_to(self.folder).as_posix()

    def ours(self, path: Path) -> bool:
        """Written by a yolo-sfn command (by the record), so it may be replaced."""
        rel = self._rel(path)
        return rel in self.names or any(rel in names for names in self._doc.values())

    def free(self, path: Path) -> bool:
        """Nothing is at ``path``, or what is there is ours."""
        return not (path.exists() or path.is_symlink()) or self.ours(path)

    def recorded_paths(self) -> set[Path]:
        """Every file the record lists (any command), resolved."""
        return {(self.folder / n).resolve() for names in self._doc.values() for n in names}

    def clear_previous(self, keep: set[Path], layout: tuple[str, ...]) -> list[str]:
        """Remove this command's previously recorded files, except ``keep`` (inputs, resolved)
        and names outside ``layout`` (what the command writes: ``"summary.json"``, or
        ``"results/"`` for any file directly in that folder; a hand-edited record cannot make
        it delete anything else). -> the names that could not be removed (still recorded)."""
        left = []
        for name in self.previous:
            old = self.folder / name
            if (not _in_layout(name, layout) or old.is_symlink() or not old.is_file()
                    or old.resolve() in keep):
                continue
            try:
                old.unlink()
            except OSError:
                left.append(name)
        self.previous = left
        self.save()
        return left

    def claim(self, path: Path) -> None:
        rel = self._rel(path)
        if rel not in self.names:
            self.names.append(rel)

    def save(self) -> None:
        """Write the record (atomically): other commands' entries, then this one's."""
        doc = dict(self._doc)
        doc[self.command] = sorted(set(self.previous) | set(self.names))
        tmp = self.folder / (RECORD + ".tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
            os.replace(tmp, self.folder / RECORD)
        except OSError as e:
            raise InputFileError(f"{self.folder / RECORD}: cannot write the record of this "
                                 f"run's files ({e.strerror or e})") from None

    def pick(self, folder: Path, stem: str, suffix: str, taken: set[Path],
             avoid: set[Path]) -> Path:
        """A free name in ``folder``: ``stem.suffix``, else ``stem-2.suffix``, ... never one in
        ``taken`` (this run's), ``avoid`` (inputs, resolved) or a file that is not ours."""
        n = 1
        while True:
            name = fit_name(stem, (f"-{n}" if n > 1 else "") + suffix)
            path = folder / name
            if path not in taken and path.resolve() not in avoid and self.free(path):
                taken.add(path)
                return path
            n += 1
