"""Teach a deployed bundle a verb it has never seen, with a sentence and no retraining:

    python examples/custom_vocabulary.py BUNDLE IMAGE_OF_KICKING

The bundle's vocabulary is edited in memory (save it with predictor.vocabulary.save(...)).
New text is encoded by the bundle's ONNX text encoder (export --with-text-encoder) or,
where torch is installed, by sentence-transformers.
"""

import argparse

from mipd_edge import Predictor

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("bundle", help="a bundle folder (mipd-edge export / quantize)")
parser.add_argument("image", help="an image of someone kicking something")
args = parser.parse_args()

predictor = Predictor(args.bundle)
image = args.image
if "kicking" in predictor.vocabulary.frames:
    predictor.vocabulary.remove_verb("kicking")  # pretend the bundle never knew it
print("without 'kicking':", predictor(image))

predictor.vocabulary.add_verb(
    "kicking",
    definition="Someone stands upright with the arms down, touching an object on the ground at the feet. "
               "The object flies away from the person.",
    roles={"agent": "the person who is kicking", "item": "the object involved in kicking",
           "place": "where the kicking happens"})
situation = predictor(image)
print("with 'kicking':   ", situation)
print("top-5:", [(c.verb, round(c.score, 3)) for c in situation.candidates])
