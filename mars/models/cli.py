"""mars model: build models locally.

example:
  mars model tiny --out outputs/tiny_qwen3_vl --arch qwen3_vl

tiny writes a random-init Qwen2.5-VL or Qwen3-VL of a few hundred thousand parameters, with a locally trained
tokenizer and the processor, as a Hugging Face directory. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time


def _parser() -> argparse.ArgumentParser:
    from mars.models.tiny import ARCHS

    parser = argparse.ArgumentParser(
        prog="mars model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    tiny = sub.add_parser("tiny", help="build the tiny random-init model (no download)")
    tiny.add_argument("--out", required=True, help="directory to write (must be empty or absent)")
    tiny.add_argument("--arch", default="qwen2_5_vl", choices=ARCHS)
    tiny.add_argument("--seed", type=int, default=0, help="weight initialisation seed (same seed, same weights)")
    tiny.add_argument("--corpus", nargs="*", default=[], metavar="FILE", help="extra text files for the tokenizer")
    tiny.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    tiny.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from mars.models.tiny import BUILD_INFO_FILE, build_tiny_model

    start = time.perf_counter()
    try:
        out = build_tiny_model(
            args.out,
            arch=args.arch,
            seed=args.seed,
            corpus_files=args.corpus,
            dtype=args.dtype,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as exc:
        print(f"mars model tiny: {exc}", file=sys.stderr)
        return 2
    import json

    info = json.loads((out / BUILD_INFO_FILE).read_text())
    print(
        f"wrote {args.arch} ({info['parameters']:,} parameters, vocab {info['sizes']['vocab_size']}, seed {args.seed}) "
        f"to {out} in {time.perf_counter() - start:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
