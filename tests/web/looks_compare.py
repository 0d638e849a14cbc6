"""How two screenshots of a page are compared: the share of pixels that changed noticeably, and the size."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageChops

#: a pixel has changed when one of its colour channels moved by more than this (of 255): antialiasing and
#: subpixel text rendering move edges by less, a different colour or a moved glyph by more
CHANNEL = 48
#: the share of a page's pixels that may change before the page counts as changed. Measured on the console's
#: pages: run to run, at most 0.023% moved (ages of different widths under their masks); two red buttons
#: drawn blue moved 0.36% (1280 px) and 0.65% (390 px); the phone layout's stacked tables broken, 2% to 45%
TOLERANCE = 0.001


@dataclass(frozen=True)
class Verdict:
    changed: int
    pixels: int
    expected_size: tuple[int, int]
    actual_size: tuple[int, int]

    @property
    def share(self) -> float:
        return self.changed / max(self.pixels, 1)

    @property
    def same(self) -> bool:
        return self.expected_size == self.actual_size and self.share <= TOLERANCE

    def describe(self) -> str:
        size = "" if self.expected_size == self.actual_size else \
            f"size {self.actual_size[0]}×{self.actual_size[1]} instead of {self.expected_size[0]}×{self.expected_size[1]}; "
        return f"{size}{self.changed:,} of {self.pixels:,} pixels changed ({self.share:.3%})"


def _changed_mask(expected: Image.Image, actual: Image.Image) -> Image.Image:
    """White where a pixel of the overlapping area changed by more than CHANNEL in some channel."""
    width, height = min(expected.width, actual.width), min(expected.height, actual.height)
    a = expected.convert("RGB").crop((0, 0, width, height))
    b = actual.convert("RGB").crop((0, 0, width, height))
    red, green, blue = ImageChops.difference(a, b).split()
    strongest = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    return strongest.point(lambda v: 255 if v > CHANNEL else 0)


def compare(expected: Image.Image, actual: Image.Image) -> Verdict:
    """Pixels of the larger of the two that changed; rows or columns only one image has count as changed."""
    mask = _changed_mask(expected, actual)
    changed = mask.histogram()[255]
    pixels = max(expected.width, actual.width) * max(expected.height, actual.height)
    changed += pixels - mask.width * mask.height
    return Verdict(changed, pixels, expected.size, actual.size)


def diff_image(expected: Image.Image, actual: Image.Image) -> Image.Image:
    """The actual page, faded, with what changed in red: for a person to see at once what moved."""
    mask = _changed_mask(expected, actual)
    base = actual.convert("RGB").crop((0, 0, mask.width, mask.height))
    faded = Image.blend(base, Image.new("RGB", base.size, "white"), 0.7)
    faded.paste(Image.new("RGB", base.size, (220, 0, 0)), mask=mask)
    return faded
