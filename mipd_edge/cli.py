"""The ``mipd-edge`` command. Each sub-command is a thin layer over one library call."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from .errors import MipdEdgeError

log = logging.getLogger("mipd_edge")


def cmd_data_synth(args: argparse.Namespace) -> None:
    from .data.synthsitu import generate

    manifest = generate(args.out, seed=args.seed, train=args.train, dev=args.dev, test=args.test,
                        image_size=args.image_size, workers=args.workers)
    print(f"SynthSitu written to {args.out}: {manifest['train']} train / {manifest['dev']} dev / "
          f"{manifest['test']} test images, {manifest['verbs']} verbs, {manifest['nouns']} nouns, "
          f"{manifest['seconds']:.1f} s")


def cmd_data_split(args: argparse.Namespace) -> None:
    from .data.split import build_split, write_split
    from .data.swig import read_annotations, read_space

    space = read_space(args.space)
    train = read_annotations(args.train, space)
    with_images = sorted({a.verb for a in train.values()})
    split = build_split(with_images, args.unseen_frac, args.rare_frac, args.rare_images, args.seed)
    never = sorted(set(space.frames) - set(with_images))
    if never:
        log.info("%d verbs of the space have no training image; they are unseen", len(never))
        split["unseen"] = sorted(split["unseen"] + never)
    write_split(args.out, split)
    print(f"split written to {args.out}: {len(split['seen'])} seen, {len(split['rare'])} rare "
          f"(at most {args.rare_images} images each), {len(split['unseen'])} unseen verbs")


def cmd_eval(args: argparse.Namespace) -> None:
    from .data.swig import read_annotations, read_space
    from .files import read_json, write_json
    from .metrics import evaluate, format_table

    space = read_space(args.space)
    annotations = read_annotations(args.annotations, space)
    predictions = read_json(args.predictions, "predictions file")
    if not isinstance(predictions, dict):
        raise MipdEdgeError(f"{args.predictions}: predictions are an object keyed by image name")
    metrics = evaluate(annotations, space, predictions, args.splits)
    print(format_table(metrics))
    if args.out:
        write_json(args.out, metrics)
        print(f"metrics written to {args.out}")


def cmd_quickstart(args: argparse.Namespace) -> None:
    from .quickstart import run

    run(Path(args.workdir), fast=args.fast, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mipd-edge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Callable, help: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    data = sub.add_parser("data", help="datasets: SynthSitu generation, open-vocabulary splits")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = command("synth", cmd_data_synth, "generate the SynthSitu dataset in SWiG format", data_sub)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", type=int, default=4800)
    p.add_argument("--dev", type=int, default=480)
    p.add_argument("--test", type=int, default=960)
    p.add_argument("--image-size", type=int, default=192, help="long side in pixels")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")

    p = command("split", cmd_data_split, "build an open-vocabulary (seen / rare / unseen) verb split", data_sub)
    p.add_argument("--space", required=True)
    p.add_argument("--train", required=True, help="training annotations (SWiG train.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--unseen-frac", type=float, default=0.2)
    p.add_argument("--rare-frac", type=float, default=0.2)
    p.add_argument("--rare-images", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)

    p = command("eval", cmd_eval, "score predictions with the GSR metrics")
    p.add_argument("--annotations", required=True)
    p.add_argument("--space", required=True)
    p.add_argument("--predictions", required=True)
    p.add_argument("--splits", default=None, help="splits.json, for seen / rare / unseen sections")
    p.add_argument("--out", default=None, help="write the metrics JSON here")

    p = command("quickstart", cmd_quickstart, "run the whole SDK end to end on SynthSitu")
    p.add_argument("--workdir", default="runs/quickstart")
    p.add_argument("--fast", action="store_true", help="a small run for a first look")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        args.fn(args)
    except MipdEdgeError as exc:
        print(f"mipd-edge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
