"""Words for the lines the toolkit prints (stdlib only)."""

from __future__ import annotations

HARD_CH = {"epoch", "stomach", "monarch"}  # "ch" said as "k": plural in -s


def plural(noun: str) -> str:
    """English plural of a lowercase noun the toolkit counts: ``box`` -> ``boxes``, ``class`` -> ``classes``,
    ``entry`` -> ``entries``, ``image`` -> ``images``, ``epoch`` -> ``epochs`` (a hard "ch")."""
    if noun in HARD_CH:
        return noun + "s"
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + "s"


def count(n: int, noun: str, many: str | None = None) -> str:
    """``n`` and the noun in its number: ``count(1, "image")`` -> ``"1 image"``, ``count(0, "box")`` ->
    ``"0 boxes"``; ``many``: the plural where the last word is not the counted one (``"unreadable file"``
    works; so does ``count(2, "detection", "detections")``)."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {many or plural(noun)}"
