"""``yolo cfgs``: the built-in model cfgs, run YAMLs, dataset YAMLs and names files, usable by name anywhere."""

from __future__ import annotations

from yolo.errors import InputError
from yolo.resources import KINDS, builtin, builtin_root, builtins, listing
from yolo.utils.text import count


def add_parser(sub) -> None:
    p = sub.add_parser("cfgs", help="list the built-in cfgs, run YAMLs, dataset YAMLs and names files",
                       description="The files that travel with the package. Any of them can be named where a "
                                   "file is expected (--cfg yolov3-tiny.cfg, --data coco.yaml, --names coco.names, "
                                   "model:/data: in run YAMLs), from any folder; an existing local file of that "
                                   "name wins. Kinds: model (darknet cfg), run (yolo train YAML), data (dataset "
                                   "YAML), names (class names).")
    p.add_argument("--kind", choices=tuple(KINDS), help="only this kind")
    p.add_argument("--show", metavar="NAME", help="print that built-in's text (to copy and edit: "
                                                  "yolo cfgs --show yolov3-tiny.cfg > my.cfg)")
    p.add_argument("--json", action="store_true", help="one JSON list of {name, kind, path, description}")
    p.set_defaults(run=_run_cfgs)


def _run_cfgs(args) -> int:
    import json

    if args.show:
        print(_text_of(args.show, args.kind), end="")
        return 0
    found = builtins(args.kind)
    if args.json:
        print(json.dumps([{"name": b.name, "kind": b.kind, "path": str(b.path), "description": b.description()}
                          for b in found], indent=1))
        return 0
    if not found:
        raise InputError("this install has no built-in files")
    width = max(len(b.name) for b in found)
    for b in found:
        print(f"{b.kind:<6} {b.name:<{width}}  {b.description()}".rstrip())
    print(f"({count(len(found), 'file')} in {builtin_root()})")
    return 0


def _text_of(name: str, kind: str | None) -> str:
    kinds = [kind] if kind else [k for k in KINDS if builtin(name, k) is not None]
    if not kinds or builtin(name, kinds[0]) is None:
        raise InputError(f"not a built-in name ({'; '.join(listing(k) for k in ([kind] if kind else KINDS))})",
                         name)
    if len(kinds) > 1:
        raise InputError(f"names a built-in of several kinds ({', '.join(kinds)}); add --kind", name)
    return builtin(name, kinds[0]).read_text(encoding="utf-8")
