"""Reading VLMEvalKit's benchmark TSVs: the one reader of the probe data and the evaluation tasks.

A header row, then one question per row, tab-separated, with ``index`` and ``image`` columns. An
image cell holds base64 or, for an image several questions share, the ``index`` of the row whose
image it reuses: VLMEvalKit (``ImageBaseDataset``) reads a cell of at most
:data:`IMAGE_REFERENCE_MAX_CHARS` characters as such a back-reference, and refuses a reference to a reference.

Cells are text, never missing values: pandas' defaults would turn an option ``None`` or ``NA`` into
NaN (docs/evaluation.md); only an empty cell is empty. Quoting is pandas'; a quote left open is an
error, not a cell that swallows the rest of the file. A row with fewer cells than the header has
empty trailing cells, as in pandas; one with more is an error.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

from plast_plugin.errors import PlastError

IMAGE_REFERENCE_MAX_CHARS = 64


def is_image_reference(cell: str) -> bool:
    """Whether a non-empty image cell is a back-reference (an index), not base64."""
    return len(cell.strip()) <= IMAGE_REFERENCE_MAX_CHARS


class ImageReferenceError(ValueError):
    """A back-reference that leads to no image; callers word it with their row location. `problem`:
    "not an index", "no such row", "empty image" or "a reference" (VLMEvalKit refuses chains too)."""

    def __init__(self, reference: str, problem: str):
        super().__init__(f"image refers to index {reference}: {problem}")
        self.reference = reference
        self.problem = problem


@dataclass
class VlmevalkitTsv:
    """One TSV read as text: ``rows[i][column]`` is a cell ("" when empty)."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]  # the file line each row starts on (the header is line 1)
    _by_text: dict[str, int] = field(init=False, repr=False)
    _by_number: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self):
        # VLMEvalKit compares index texts; a number written differently ("7.0" for 7) also finds its row.
        self._by_text, self._by_number = {}, {}
        for pos, row in enumerate(self.rows):
            text = row.get("index", "").strip()
            self._by_text.setdefault(text, pos)
            number = _as_int(text)
            if number is not None:
                self._by_number.setdefault(number, pos)

    def missing_columns(self, required) -> list[str]:
        return [column for column in required if column not in self.columns]

    def image_row(self, pos: int) -> int | None:
        """The row whose image cell holds row `pos`'s image: `pos`, the row its back-reference
        names, or None when the cell is empty. Raises :class:`ImageReferenceError`."""
        cell = self.rows[pos].get("image", "").strip()
        if not cell:
            return None
        if not is_image_reference(cell):
            return pos
        number = _as_int(cell)
        target = self._by_text.get(cell, None if number is None else self._by_number.get(number))
        if target is None:
            raise ImageReferenceError(cell, "no such row" if number is not None else "not an index")
        target_cell = self.rows[target].get("image", "").strip()
        if not target_cell:
            raise ImageReferenceError(cell, "empty image")
        if is_image_reference(target_cell):
            raise ImageReferenceError(cell, "a reference")
        return target


def _as_int(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def read_vlmevalkit_tsv(path) -> VlmevalkitTsv:
    """Read `path` as text cells; a file that cannot be read raises a PlastError naming file and line."""
    path = Path(path)
    csv.field_size_limit(sys.maxsize)  # base64 images are long cells
    try:
        # utf-8-sig: a byte-order mark (Excel's UTF-8) is not part of the first column's name
        handle = path.open(encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise PlastError(f"{path}: no such file") from None
    except OSError as err:
        raise PlastError(f"{path}: cannot be read ({err.strerror or err})") from None
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    with handle:
        reader = csv.reader(handle, delimiter="\t", strict=True)
        ended = 0  # the line the previous row ended on
        try:
            columns = next(reader, None)
            if columns is None:
                raise PlastError(f"{path}: empty file; a VLMEvalKit TSV starts with a header row (index, question, ...)")
            ended = reader.line_num
            for cells in reader:
                start, ended = ended + 1, reader.line_num
                if not cells:  # a blank line
                    continue
                if len(cells) > len(columns):
                    raise PlastError(
                        f"{path}:{start}: {len(cells)} cells, the header has {len(columns)}; a tab inside a "
                        f"cell must be quoted (\"a<TAB>b\"), or the row has a cell too many")
                rows.append(dict(zip(columns, cells + [""] * (len(columns) - len(cells)))))
                lines.append(start)
        except UnicodeDecodeError as err:
            raise PlastError(f"{path}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None
        except csv.Error as err:
            raise PlastError(f"{path}:{ended + 1}: not a readable TSV ({err}); a quote that opens a cell must "
                        f"close it, and a quote inside a quoted cell is written twice") from None
    return VlmevalkitTsv(path, columns, rows, lines)
