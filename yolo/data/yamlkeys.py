"""A user's YAML (a run config, a data YAML) read once, with a key given twice in one mapping refused: PyYAML
keeps the last one without a word, so a run trained 2 epochs where the first line said 1, and an error about a
value named the line of the other one."""

from __future__ import annotations

import yaml

from yolo.errors import InputError


def load_yaml(text: str, source: str) -> tuple[object, yaml.Node | None]:
    """``text`` parsed once -> (its data, as ``yaml.safe_load`` gives it; its node tree, as ``yaml.compose``
    gives it, for the lines of keys), a repeated key refused (:func:`refuse_repeated_keys`); invalid YAML raises
    ``yaml.YAMLError`` for the caller to word."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    refuse_repeated_keys(root, source)
    return data, root


def refuse_repeated_keys(root: yaml.Node | None, source: str) -> None:
    """``InputError`` at the line of the first repeat (in file order) of a key that a mapping of the composed
    ``root`` (``yaml.compose``) gives twice, naming both lines; nothing for ``None`` (an empty file)."""
    repeats = []  # (line of the repeat, key, line of the first)
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in seen:
                        repeats.append((line, key.value, seen[key.value]))
                    seen.setdefault(key.value, line)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    if repeats:
        line, key, first = min(repeats)
        raise InputError(f"{key!r} is given twice in one mapping (lines {first} and {line}), and only the last "
                         "would count; keep one", source, line)
