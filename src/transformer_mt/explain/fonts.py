"""Find a font that has the glyphs of the tokens, so Chinese pieces do not render as boxes.

matplotlib's default DejaVu Sans has no CJK glyphs. We look, in order, at the fonts fontconfig
lists for Chinese/Japanese/Korean (`fc-list :lang=zh`), at the fonts matplotlib already knows,
and at the usual system font folders; the first whose character map covers every character of
the tokens is registered with matplotlib and used as the fallback after DejaVu Sans.
On Debian/Ubuntu: ``apt-get install fonts-wqy-microhei`` (or ``fonts-noto-cjk``).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

DEFAULT_FAMILY = "DejaVu Sans"
FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))
FONT_SUFFIXES = (".ttf", ".ttc", ".otf")
INSTALL_HINT = "install a CJK font, e.g. `apt-get install fonts-wqy-microhei` (Debian/Ubuntu)"


@dataclass(frozen=True)
class FontChoice:
    """Font families for matplotlib (tried in order per glyph) and the file that has the
    tokens' glyphs; `missing` lists the characters no font found has."""

    families: tuple[str, ...]
    path: str | None
    missing: str


@lru_cache(maxsize=256)
def charmap(path: str) -> frozenset[int]:
    """Code points the font file (first face of a collection) maps to glyphs."""
    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def _candidates() -> list[str]:
    """Font files to try, most likely CJK-capable first."""
    paths: list[str] = []
    if shutil.which("fc-list"):
        for lang in ("zh", "ja", "ko"):
            listing = subprocess.run(
                ["fc-list", f":lang={lang}", "file"], capture_output=True, text=True, check=False
            ).stdout
            paths += [line.split(":")[0].strip() for line in listing.splitlines() if line.strip()]
    paths += [entry.fname for entry in font_manager.fontManager.ttflist]
    for folder in FONT_DIRS:
        if Path(folder).is_dir():
            paths += sorted(str(p) for p in Path(folder).rglob("*") if p.suffix in FONT_SUFFIXES)
    return list(dict.fromkeys(paths))


def needed_characters(texts: list[str]) -> str:
    """The distinct non-ASCII, non-space characters of `texts`, in order."""
    return "".join(dict.fromkeys(c for t in texts for c in t if ord(c) > 127 and not c.isspace()))


def font_for(texts: list[str]) -> FontChoice:
    """Families that render every character of `texts` (DejaVu Sans first; a font covering the
    rest, registered with matplotlib, second)."""
    needed = needed_characters(texts)
    default = font_manager.findfont(DEFAULT_FAMILY)
    todo = {ord(c) for c in needed} - charmap(default)
    if not todo:
        return FontChoice((DEFAULT_FAMILY,), default, "")
    best, best_missing = None, todo
    for path in _candidates():
        missing = todo - charmap(path)
        if len(missing) < len(best_missing):
            best, best_missing = path, missing
        if not missing:
            break
    if best is None:
        return FontChoice((DEFAULT_FAMILY,), default, "".join(chr(c) for c in sorted(todo)))
    font_manager.fontManager.addfont(best)
    family = font_manager.FontProperties(fname=best).get_name()
    missing = "".join(chr(c) for c in sorted(best_missing))
    return FontChoice((DEFAULT_FAMILY, family), best, missing)
