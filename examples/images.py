"""Recognise the situation in images: python examples/images.py BUNDLE IMAGE_OR_FOLDER [OUT_FOLDER]"""

import sys
from pathlib import Path

import cv2

from mipd_edge import MipdEdgeError, Predictor
from mipd_edge.deploy.draw import draw_situation

bundle, source = sys.argv[1], Path(sys.argv[2])
out = Path(sys.argv[3]) if len(sys.argv) > 3 else None
predictor = Predictor(bundle)  # backend="auto": the fastest installed backend
paths = sorted(source.glob("*.jpg")) if source.is_dir() else [source]
for path in paths:
    try:
        situation = predictor(path)  # a path, a BGR array or a PIL image
    except MipdEdgeError as error:  # a broken file is reported, the loop goes on
        print(f"{path}: {error}")
        continue
    print(f"{path.name}: {situation.verb} ({situation.score:.2f})")
    for role, value in situation.roles.items():
        print(f"    {role:12s} {value.label:12s} box={value.box}")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / path.name), draw_situation(cv2.imread(str(path)), situation))
print(f"{predictor.backend}, last call: {predictor.timings}")
