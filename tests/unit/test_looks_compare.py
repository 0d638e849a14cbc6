"""The screenshot comparison: antialiasing noise passes, a moved or broken block of the page does not."""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from tests.web.looks_compare import CHANNEL, TOLERANCE, compare, diff_image


def page(shift: int = 0, colour=(11, 92, 173), height: int = 1200) -> Image.Image:
    """A made-up page: a header bar, rows of 'text' blocks and a button."""
    image = Image.new("RGB", (390, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 390, 50), fill=(243, 245, 248))
    for row in range(20):
        y = 80 + row * 50 + shift
        draw.rectangle((12, y, 200 + (row * 37) % 150, y + 14), fill=(29, 36, 48))
    draw.rectangle((12, 1100 + shift, 140, 1136 + shift), fill=colour)
    return image


def test_the_same_page_is_the_same():
    assert compare(page(), page()).same


def test_antialiasing_noise_on_glyph_edges_is_tolerated():
    noisy = page()
    rng = random.Random(3)
    pixels = noisy.load()
    for _ in range(int(390 * 1200 * TOLERANCE * 3)):  # many pixels, each moved less than CHANNEL
        x, y = rng.randrange(390), rng.randrange(1200)
        r, g, b = pixels[x, y]
        pixels[x, y] = (max(r - CHANNEL + 5, 0), g, b)
    for _ in range(int(390 * 1200 * TOLERANCE / 2)):  # and a few that moved a lot
        x, y = rng.randrange(390), rng.randrange(1200)
        pixels[x, y] = (255 - pixels[x, y][0], 0, 0)
    assert compare(page(), noisy).same


def test_a_block_moved_down_a_few_pixels_is_a_change():
    verdict = compare(page(), page(shift=4))
    assert not verdict.same and verdict.share > 10 * TOLERANCE


def test_a_button_of_another_colour_is_a_change():
    verdict = compare(page(), page(colour=(163, 22, 26)))
    assert not verdict.same


def test_a_longer_page_is_a_change_whatever_its_pixels():
    verdict = compare(page(), page(height=1210))
    assert not verdict.same and "size 390×1210 instead of 390×1200" in verdict.describe()


def test_the_diff_image_marks_what_changed_in_red():
    marked = diff_image(page(), page(colour=(163, 22, 26)))
    assert marked.getpixel((50, 1120)) == (220, 0, 0)
    assert marked.getpixel((300, 600)) != (220, 0, 0)
