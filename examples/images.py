"""Recognise the situation in images and save annotated copies:

    python examples/images.py BUNDLE IMAGE_OR_FOLDER [--out FOLDER]
"""

import argparse
from pathlib import Path

from mipd_edge import MipdEdgeError, Predictor
from mipd_edge.deploy.image import IMAGE_SUFFIXES, load_image

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("bundle", help="a bundle folder (mipd-edge export / quantize)")
parser.add_argument("source", type=Path, help=f"an image, or a folder of {' / '.join(sorted(IMAGE_SUFFIXES))} images")
parser.add_argument("--out", type=Path, default=None, help="a folder for annotated copies")
args = parser.parse_args()

predictor = Predictor(args.bundle)  # backend="auto": the fastest installed backend
paths = sorted(p for p in args.source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
    if args.source.is_dir() else [args.source]
for path in paths:
    try:
        image = load_image(path)  # bounded and checked: a broken file is a MipdEdgeError
        situation = predictor(image)  # a path, a BGR array or a PIL image
    except MipdEdgeError as error:  # reported, and the loop goes on
        print(f"{path}: {error}")
        continue
    print(f"{path.name}: {situation.verb} ({situation.score:.2f})")
    for role, value in situation.roles.items():
        print(f"    {role:12s} {value.label:12s} box={value.box}")
    if args.out:
        situation.save(args.out / path.name, image)  # the image with the situation drawn on it
print(f"{predictor.backend}, last call: {predictor.timings}")
