"""Makes cmyk.jpg: a 16×16 CMYK JPEG (Adobe APP14, as Photoshop writes them) with four 8×8 quadrants —
cyan (top left), magenta (top right), yellow (bottom left), black (bottom right) — for the io tests.
Run with any Python that has Pillow: `python make_cmyk.py` (writes next to this script)."""

from pathlib import Path

from PIL import Image

QUADRANTS = {
    (0, 0): (255, 0, 0, 0),  # cyan
    (1, 0): (0, 255, 0, 0),  # magenta
    (0, 1): (0, 0, 255, 0),  # yellow
    (1, 1): (0, 0, 0, 255),  # black
}

img = Image.new("CMYK", (16, 16))
for (qx, qy), cmyk in QUADRANTS.items():
    for y in range(8):
        for x in range(8):
            img.putpixel((qx * 8 + x, qy * 8 + y), cmyk)
img.save(Path(__file__).with_name("cmyk.jpg"), quality=100, subsampling=0)
