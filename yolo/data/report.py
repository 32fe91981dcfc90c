"""What a dataset reader found and dropped (``DatasetReport``), and the label-statistics picture."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from yolo.errors import MATPLOTLIB_MISSING, InputError, on_command_line, warn
from yolo.utils.text import count

MAX_PROBLEMS = 1000  # problems kept as text; the total is always counted


# what a dropped row's kind (``bad_row``'s first argument) says after its count: "2 with a bad class"
ROW_PROBLEMS = {"class": "with a bad class", "columns": "without 5 columns", "non-numeric": "with a non-number",
                "outside": "centred outside the image", "size": "of a bad size", "image": "of an unknown image"}


@dataclass
class DatasetReport:
    """Counts of one split's reading, plus the first ``MAX_PROBLEMS`` problems as ``"file:line: message"``.

    ``images`` counts usable images (corrupt or missing ones are dropped and counted in ``corrupt``). Every label
    file is found, ``missing`` (no file: the image is counted as background, and named in ``no_label_files``,
    all of them, and in the problems) or ``empty`` (a file without rows: a negative image). ``bad_rows``
    counts dropped rows by kind; ``clipped`` counts boxes cut to the image. ``repeated`` counts the listings of
    an image that the split already listed (each is kept, as darknet's list files oversample that way, and
    each is named among the problems: in a val split it counts the image's boxes twice).
    """

    split: str = ""
    source: str = ""
    names: list[str] = field(default_factory=list)
    images: int = 0
    corrupt: int = 0
    labels_found: int = 0
    labels_missing: int = 0
    labels_empty: int = 0
    no_label_files: list[str] = field(default_factory=list)  # images without a label file, every one
    bad_rows: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    repeated: int = 0  # listings of an image already listed in this split (kept: each is one more sample)
    shared_labels: int = 0  # images whose label file another image of the split reads too (a.jpg and a.png)
    clipped: int = 0
    crowd: int = 0
    instances: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    notes: list[str] = field(default_factory=list)

    def problem(self, message: str, path: str | Path, line: int | str | None = None) -> None:
        """Record one problem as ``path:line: message`` (``path: message`` without a line; a ``line`` that
        is text, such as ``annotation id 7``, gives ``path: annotation id 7: message``)."""
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            where = f"{path}:{line}" if isinstance(line, int) else f"{path}: {line}" if line else f"{path}"
            self.problems.append(f"{where}: {message}")

    @property
    def unreadable_label_files(self) -> int:
        """Label files that could not be read (``bad_rows["unreadable"]``): each dropped its image, no row."""
        return self.bad_rows.get("unreadable", 0)

    @property
    def rows_dropped(self) -> tuple[int, str]:
        """(label rows dropped, their kinds as ``class 2, size 1``): ``bad_rows`` without unreadable files."""
        kinds = {k: v for k, v in sorted(self.bad_rows.items()) if k != "unreadable"}
        return sum(kinds.values()), ", ".join(f"{v} {ROW_PROBLEMS.get(k, k)}" for k, v in kinds.items())

    def no_label_file(self, image: str | Path) -> None:
        """Count and name an image whose label file does not exist: it is used as a background image."""
        self.labels_missing += 1
        self.no_label_files.append(str(image))
        self.problem("no label file (counted as background)", image)

    def shared_label_file(self, image: str | Path, other: str | Path, label_file: str | Path) -> None:
        """Count and name an image whose label file ``other`` (another image, same name up to the extension) reads
        too: both get its boxes, as darknet and ultralytics read them, which is right for at most one."""
        self.shared_labels += 1
        self.problem(f"reads the label file {label_file} of {other} too (same name, other extension): both get its "
                     "boxes", image)

    def bad_row(self, kind: str, message: str, path: str | Path, line: int | str | None = None) -> None:
        """Count a dropped row of ``kind`` and record where and why."""
        self.bad_rows[kind] = self.bad_rows.get(kind, 0) + 1
        self.problem(f"{message} (row dropped)", path, line)

    def count_instances(self, labels: list[np.ndarray]) -> None:
        """Set ``instances`` from ``labels`` (each ``[N, 5]``, class first)."""
        counts = np.zeros(len(self.names), dtype=np.int64)
        for lab in labels:
            if len(lab):
                counts += np.bincount(lab[:, 0].astype(np.int64), minlength=len(self.names))[:len(self.names)]
        self.instances = counts.tolist()

    def format(self, max_problems: int = 10) -> str:
        """A compact summary: counts on a few lines, then at most ``max_problems`` problems."""
        total, used = sum(self.instances), sum(c > 0 for c in self.instances)
        lines = [f"{self.split or 'split'} ({self.source}): {count(self.images, 'image')}, {count(total, 'box')} "
                 f"in {used} of {count(len(self.names), 'class')}; labels {self.labels_found} found, "
                 f"{self.labels_missing} missing, {self.labels_empty} empty"
                 + (f", {self.unreadable_label_files} unreadable (their images dropped)"
                    if self.unreadable_label_files else "")
                 + f"; {self.corrupt} corrupt or missing images dropped"]
        dropped, kinds = self.rows_dropped
        if dropped or self.duplicates or self.clipped or self.crowd:
            lines.append(f"  rows dropped: {dropped}{f' ({kinds})' if kinds else ''}; duplicates dropped: "
                         f"{self.duplicates}; boxes clipped: {self.clipped}; crowd boxes: {self.crowd}")
        if self.repeated:
            lines.append(f"  images listed more than once: {count(self.repeated, 'extra listing')} (kept: each is one "
                         "more sample; each is named among the problems)")
        if self.shared_labels:
            lines.append(f"  images reading another image's label file: {self.shared_labels} (same name, other "
                         "extension: both get its boxes; each is named among the problems)")
        if self.labels_missing:
            lines.append(f"  images without a label file: {self.labels_missing} (counted as background; each is "
                         "named among the problems, and all of them in --json's no_label_files)")
        empty = [n for n, c in zip(self.names, self.instances) if c == 0]
        if empty and total:
            lines.append(f"  classes without boxes: {_short_list(empty, 8)}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  {p}" for p in self.problems[:max_problems]]
        if self.problem_count > max_problems:
            lines.append(f"  ... and {self.problem_count - max_problems} more")
        return "\n".join(lines)

    def dropped_warning(self) -> str | None:
        """One line for the commands that use a split without listing its problems (train, val, anchors): what
        was dropped or read for two images, or None when nothing was (rows and images dropped, and boxes given to
        an image they may not belong to, change what is trained and scored)."""
        unreadable = self.unreadable_label_files
        rows, kinds = self.rows_dropped
        boxes = sum(self.instances)
        # no label files for most images, or no box at all: the usual sign of labels that are not where the
        # images say (images/ -> labels/, .txt), which would train and score on background only
        unlabelled = self.images and (boxes == 0 or 2 * self.labels_missing > self.images)
        if not rows and not self.corrupt and not unlabelled and not self.duplicates and not unreadable and \
                not self.shared_labels:
            return None
        parts = ([f"{count(rows, 'label row')} dropped ({kinds})"] if rows else []) + \
            ([f"{count(self.duplicates, 'duplicate row')} dropped"] if self.duplicates else []) + \
            ([f"{count(self.corrupt, 'corrupt or missing image')} dropped"] if self.corrupt else []) + \
            ([f"{count(unreadable, 'image')} dropped for an unreadable label file"] if unreadable else []) + \
            ([f"{count(self.shared_labels, 'image')} reading another image's label file (same name, other "
              "extension)"] if self.shared_labels else [])
        if unlabelled:
            what = "no boxes at all" if boxes == 0 else f"only {count(boxes, 'box')}"
            if self.labels_missing:
                what += (f": {self.labels_missing} of {count(self.images, 'image')} have no label file (each "
                         "image's labels are read from its path with images/ -> labels/ and .txt, or beside it)")
            elif not rows:
                what += ": every label file is empty"
            parts.insert(0, what)
        names = "`yolo data check`" if on_command_line() else "the split's `.report.format()`"
        return f"{self.split or 'split'} split ({self.source}): {'; '.join(parts)}; {names} names them"

    def warn_dropped(self) -> None:
        """:meth:`dropped_warning` as a ``YoloWarning`` when there is one."""
        line = self.dropped_warning()
        if line:
            warn(line)

    def to_dict(self) -> dict:
        """Plain types only (JSON and the label cache)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DatasetReport:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _short_list(items: list[str], n: int) -> str:
    return ", ".join(items[:n]) + (f" ... and {len(items) - n} more" if len(items) > n else "")


def plot_labels(index, path: str | Path) -> Path:
    """Write a PNG of ``index``'s (a ``DatasetIndex``) labels: instances per class, box centres, box sizes.

    Centres and sizes are 2-D histograms of the normalized ``[N, 5]`` rows (class, cx, cy, w, h). Without
    matplotlib, an ``InputError`` naming ``path``.
    """
    from yolo.utils.plots import have_matplotlib

    if not have_matplotlib():
        raise InputError(MATPLOTLIB_MISSING.format(what="labels picture"), str(path))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from yolo.utils.checkpoint import atomic_write

    rows = np.concatenate([lab for lab in index.labels if len(lab)] or [np.zeros((0, 5), np.float32)])
    counts = np.bincount(rows[:, 0].astype(np.int64), minlength=len(index.names))[:len(index.names)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].bar(range(len(counts)), counts, color="tab:blue")
    axes[0].set(title=f"instances per class ({len(rows)} boxes)", xlabel="class", ylabel="boxes")
    if len(index.names) <= 30:
        axes[0].set_xticks(range(len(index.names)), index.names, rotation=90, fontsize=7)
    axes[1].hist2d(rows[:, 1], rows[:, 2], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[1].set(title="box centres", xlabel="cx", ylabel="cy", xlim=(0, 1), ylim=(1, 0))
    axes[2].hist2d(rows[:, 3], rows[:, 4], bins=50, range=[[0, 1], [0, 1]], cmap="Blues")
    axes[2].set(title="box sizes", xlabel="w", ylabel="h", xlim=(0, 1), ylim=(0, 1))
    fig.suptitle(index.source or "labels")
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)
    return path
