#!/usr/bin/env python
"""Side-by-side sheets of a style network's outputs, and the README's style grid.

``python scripts/contact_sheet.py sheets --model saved_models/styles/styles.keras --output out/sheets``
writes, for every style of the network that a peer has published an output for in
``<assets>/reference_outputs/``, one image per (photo, style): the photo, the painting,
the peer's output and ours, each scaled to the same height.

``python scripts/contact_sheet.py grid --model ... --photos chicago tubingen --styles candy mosaic
--output docs/styles_grid.jpg`` writes a compact grid: one row per photo, the photo first,
then one column per style, wrapped into blocks of ``--columns`` styles.

``python scripts/contact_sheet.py optimization --output out/opt_sheets`` runs the
optimization defaults (``scripts/stylize.py`` with the SqueezeNet weights) on the
review pairs and writes photo | painting | output sheets.

``python scripts/contact_sheet.py compare --models a.keras b.keras --labels pixel perceptual --style mosaic
--photos chicago tubingen amber --output out/compare.jpg`` writes one sheet with a row per photo:
photo | painting | each network's output, for networks trained on the same style.

The assets folder is ``--assets`` (default ``$NST_TF_ASSETS`` or ``../shared/assets``
from the current folder).  Exit status: 0 done, 2 bad input.
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from PIL import Image, ImageDraw  # noqa: E402

# Peers name some styles differently from the style images' files.
STYLE_ALIASES = {"muse": "la_muse", "scream": "the_scream", "la_muse_eccv": "la_muse"}
OPTIMIZATION_PAIRS = (("tubingen", "starry_night"), ("golden_gate", "the_scream"),
                      ("brad_pitt", "picasso_selfport1907"))
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def peer_outputs(assets):
    """``[(photo, style, peer, path)]`` of the published peer outputs under `assets`."""
    found = []
    root = pathlib.Path(assets) / "reference_outputs"
    for path in sorted(root.rglob("*.jpg")):
        match = re.match(r"^(amber|chicago|hoovertowernight)[_-](.+)$", path.stem)
        if match:
            style = STYLE_ALIASES.get(match.group(2), match.group(2))
            found.append((match.group(1), style, "-".join(path.relative_to(root).parts[:-1]), path))
    return found


def _height(image, height):
    image = image.convert("RGB")
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.LANCZOS)


def _labelled_row(panels, labels, height):
    panels = [_height(panel, height) for panel in panels]
    gap = 6
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    sheet = Image.new("RGB", (width, height + 18), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for panel, label in zip(panels, labels):
        sheet.paste(panel, (x, 18))
        draw.text((x + 4, 3), label, fill="black")
        x += panel.width + gap
    return sheet


def _stylize(model, photo_path, style, size):
    from nst_tf import images, stylizer

    photo = images.load_image(photo_path, max_size=size)
    weights = model.style_weights(style) if model.style_names else None
    return Image.fromarray(images.to_uint8(stylizer.stylize_image(model, photo, style=weights)[0]))


def run_sheets(args):
    from nst_tf import stylizer

    model = stylizer.load_transformer(args.model)
    names = model.style_names or [pathlib.Path(args.model).stem]
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    assets = pathlib.Path(args.assets)
    written = 0
    for photo, style, peer, path in peer_outputs(assets):
        if style not in names:
            print(f"skip {path.name}: the network has no style {style!r}")
            continue
        photo_path = assets / "images" / "content" / f"{photo}.jpg"
        peer_image = Image.open(path)
        ours = _stylize(model, photo_path, style, max(peer_image.size))
        painting = Image.open(assets / "images" / "style" / f"{style}.jpg")
        sheet = _labelled_row([Image.open(photo_path), painting, peer_image, ours],
                              ["photo", f"painting: {style}", f"peer: {peer}", "nst_tf"], args.height)
        target = output / f"{photo}_{style}_{peer}.jpg"
        sheet.save(target, quality=90)
        written += 1
        print(f"wrote {target}")
    return 0 if written else 2


def _fit(image, width, height):
    """`image` scaled to fit a `width` x `height` cell, centred on white."""
    image = image.convert("RGB")
    scale = min(width / image.width, height / image.height)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
    cell = Image.new("RGB", (width, height), "white")
    cell.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return cell


def run_grid(args):
    from nst_tf import images, stylizer
    from nst_tf.config import PHOTO_STYLE

    model = stylizer.load_transformer(args.model)
    assets = pathlib.Path(args.assets)
    styles = args.styles or [name for name in model.style_names if name != PHOTO_STYLE]
    unknown = [name for name in styles if name not in model.style_names]
    if unknown:
        print(f"error: unknown style {unknown[0]!r}; the network has: {', '.join(model.style_names)}. "
              f"Received: styles={styles}", file=sys.stderr)
        return 2
    height, width, label, gap = args.cell, round(args.cell * 1.5), 14, 2
    cells = {}  # (photo, style or None) -> cell image
    for photo in args.photos:
        image = images.load_image(assets / "images" / "content" / f"{photo}.jpg", max_size=args.size)
        cells[photo, None] = _fit(Image.fromarray(images.to_uint8(image[0])), width, height)
        for style in styles:
            result = stylizer.stylize_image(model, image, style=model.style_weights(style))
            cells[photo, style] = _fit(Image.fromarray(images.to_uint8(result[0])), width, height)
    blocks = [styles[i:i + args.columns] for i in range(0, len(styles), args.columns)]
    block_height = label + len(args.photos) * (height + gap)
    grid = Image.new("RGB", ((args.columns + 1) * (width + gap), len(blocks) * block_height), "white")
    draw = ImageDraw.Draw(grid)
    for b, block in enumerate(blocks):
        top = b * block_height
        draw.text((2, top + 1), "photo", fill="black")
        for c, style in enumerate(block, start=1):
            draw.text((c * (width + gap) + 2, top + 1), style, fill="black")
        for r, photo in enumerate(args.photos):
            y = top + label + r * (height + gap)
            for c, style in enumerate([None] + block):
                grid.paste(cells[photo, style], (c * (width + gap), y))
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    grid.save(output, quality=args.quality, optimize=True)
    print(f"wrote {output} ({output.stat().st_size // 1024} KiB, {grid.width}x{grid.height})")
    return 0


def run_optimization(args):
    assets = pathlib.Path(args.assets)
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    weights = assets / "weights" / "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"
    for photo, style in OPTIMIZATION_PAIRS:
        photo_path = assets / "images" / "content" / f"{photo}.jpg"
        style_path = assets / "images" / "style" / f"{style}.jpg"
        with tempfile.TemporaryDirectory() as temp:
            result = pathlib.Path(temp) / "out.png"
            command = [sys.executable, str(REPOSITORY / "scripts" / "stylize.py"), "--content", str(photo_path),
                       "--style", str(style_path), "--output", str(result), "--backbone", "squeezenet1_1",
                       "--weights", str(weights), "--image-size", str(args.size), "--iterations",
                       str(args.iterations), "--no-progress"]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            sheet = _labelled_row([Image.open(photo_path), Image.open(style_path), Image.open(result)],
                                  ["photo", f"painting: {style}", "squeezenet1_1 defaults"], args.height)
        target = output / f"{photo}_{style}.jpg"
        sheet.save(target, quality=90)
        print(f"wrote {target}")
    return 0


def run_compare(args):
    from nst_tf import stylizer

    labels = args.labels or [pathlib.Path(path).stem for path in args.models]
    if len(labels) != len(args.models):
        print(f"error: give one --labels entry per --models entry ({len(args.models)}). Received: labels={labels}",
              file=sys.stderr)
        return 2
    models = [stylizer.load_transformer(path) for path in args.models]
    assets = pathlib.Path(args.assets)
    painting = Image.open(assets / "images" / "style" / f"{args.style}.jpg")
    rows = []
    for photo in args.photos:
        photo_path = assets / "images" / "content" / f"{photo}.jpg"
        outputs = [_stylize(model, photo_path, args.style, args.size) for model in models]
        rows.append(_labelled_row([Image.open(photo_path), painting, *outputs],
                                  ["photo", f"painting: {args.style}", *labels], args.height))
    sheet = Image.new("RGB", (max(row.width for row in rows), sum(row.height for row in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(output, quality=90)
    print(f"wrote {output} ({sheet.width}x{sheet.height})")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", default=os.environ.get("NST_TF_ASSETS", "../shared/assets"),
                        help="the shared assets folder (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    sheets = commands.add_parser("sheets", help="photo | painting | peer | ours, per published peer output")
    sheets.add_argument("--model", required=True, help=".keras style network")
    sheets.add_argument("--output", required=True, help="folder for the sheets")
    sheets.add_argument("--height", type=int, default=320, help="panel height, px (%(default)s)")
    grid = commands.add_parser("grid", help="rows of photos, columns of styles (the README figure)")
    grid.add_argument("--model", required=True, help=".keras multi-style network")
    grid.add_argument("--photos", nargs="+", default=["chicago", "tubingen"], help="content photo names")
    grid.add_argument("--styles", nargs="+", help="style names (default: all but 'photo')")
    grid.add_argument("--output", required=True, help="JPEG file")
    grid.add_argument("--size", type=int, default=512, help="longest side stylized, px (%(default)s)")
    grid.add_argument("--cell", type=int, default=100, help="cell height in the grid, px (%(default)s)")
    grid.add_argument("--columns", type=int, default=6, help="styles per row block (%(default)s)")
    grid.add_argument("--quality", type=int, default=82, help="JPEG quality (%(default)s)")
    optimization = commands.add_parser("optimization", help="photo | painting | output of the optimization defaults")
    optimization.add_argument("--output", required=True, help="folder for the sheets")
    optimization.add_argument("--size", type=int, default=256, help="image size, px (%(default)s)")
    optimization.add_argument("--iterations", type=int, default=300, help="Adam iterations (%(default)s)")
    optimization.add_argument("--height", type=int, default=320, help="panel height, px (%(default)s)")
    compare = commands.add_parser("compare", help="photo | painting | each network, one row per photo")
    compare.add_argument("--models", nargs="+", required=True, help=".keras single-style networks of one style")
    compare.add_argument("--labels", nargs="+", help="one label per network (default: the file names)")
    compare.add_argument("--style", required=True, help="the networks' style image name, e.g. mosaic")
    compare.add_argument("--photos", nargs="+", default=["chicago", "tubingen", "amber"],
                         help="content photo names (%(default)s)")
    compare.add_argument("--output", required=True, help="JPEG file")
    compare.add_argument("--size", type=int, default=512, help="longest side stylized, px (%(default)s)")
    compare.add_argument("--height", type=int, default=256, help="panel height, px (%(default)s)")
    from nst_tf.cli import add_verbose_argument

    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    if not pathlib.Path(args.assets).is_dir():
        print(f"error: assets folder not found; pass --assets or set NST_TF_ASSETS. Received: assets='{args.assets}'",
              file=sys.stderr)
        return 2
    from nst_tf.cli import import_tensorflow
    from nst_tf.errors import NstError

    if args.command != "optimization":  # That one runs scripts/stylize.py in subprocesses.
        import_tensorflow(args.verbose)
    try:
        return {"sheets": run_sheets, "grid": run_grid, "optimization": run_optimization,
                "compare": run_compare}[args.command](args)
    except NstError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
