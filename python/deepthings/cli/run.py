"""`deepthings run CFG [WEIGHTS] --image IMG`: one forward pass on this device.

Prints the output shape, statistics and the time taken; --out saves the output as .npy.
Without WEIGHTS use --random-weights SEED; without --image the input is deterministic noise.
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `run` subcommand."""
    p = subparsers.add_parser(
        "run",
        help="run a Darknet network on one image on this device (timing + output stats)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("cfg", metavar="CFG", help="Darknet .cfg file")
    p.add_argument("weights", metavar="WEIGHTS", nargs="?", default=None, help=".weights file")
    p.add_argument("--image", metavar="IMG", default=None,
                   help="input image (default: uniform noise from --seed)")
    p.add_argument("--engine", choices=["native", "reference"], default="native",
                   help="native C++ engine (default) or the NumPy reference")
    p.add_argument("--random-weights", type=int, metavar="SEED", default=None,
                   help="use deterministic random weights instead of a weights file")
    p.add_argument("--letterbox", action="store_true", help="letterbox the image (keep aspect)")
    p.add_argument("--end", type=int, default=None, metavar="L",
                   help="stop after layer L-1 (default: the whole network)")
    p.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run N times and report the best and median time (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise input (default 0)")
    p.add_argument("--out", metavar="FILE.npy", default=None, help="save the output array")
    p.set_defaults(func=run_run)


def run_run(args: argparse.Namespace) -> int:
    """Load, run once (or --repeat times), print shape/stats/time; exit code 0."""
    import numpy as np

    from deepthings.darknet import load_darknet
    from deepthings.engine.preprocess import preprocess
    from deepthings.errors import WeightsError

    if args.weights is None and args.random_weights is None:
        raise WeightsError(f"{args.cfg}: give a WEIGHTS file or --random-weights SEED")
    if args.weights is not None and args.random_weights is not None:
        raise WeightsError("give either WEIGHTS or --random-weights, not both")
    if args.repeat < 1:
        raise ValueError("--repeat must be >= 1")
    t0 = time.perf_counter()
    net = load_darknet(args.cfg, args.weights, random_seed=args.random_weights, upto=args.end)
    load_s = time.perf_counter() - t0
    c, h, w = net.input_shape
    if args.image is not None:
        x = preprocess(args.image, (w, h), letterbox=args.letterbox)
        if c != 3:
            raise WeightsError(f"{args.cfg}: network takes {c} channels; images give 3")
        src = args.image
    else:
        x = np.random.default_rng(args.seed).random((c, h, w), dtype=np.float32)
        src = f"noise (seed {args.seed})"
    times = []
    out = None
    for _ in range(args.repeat):
        t1 = time.perf_counter()
        out = net.forward(x, 0, args.end, engine=args.engine)
        times.append(time.perf_counter() - t1)
    assert isinstance(out, np.ndarray)
    end = len(net.layers) if args.end is None else args.end
    gflop = net.flops(0, end) / 1e9
    best = min(times)
    source = args.weights if args.weights is not None else f"random weights, seed {args.random_weights}"
    print(f"model:  {args.cfg} ({source})")
    print(f"input:  {src} -> {c}x{h}x{w}")
    print(f"layers: 0..{end - 1} of {len(net.layers)}, {gflop:.3f} GFLOP, engine {args.engine}")
    print(f"output: layer {end - 1} [{net.layers[end - 1].type}] shape {out.shape}")
    print(
        f"stats:  min {out.min():.6g}  max {out.max():.6g}  mean {out.mean():.6g}  "
        f"std {out.std():.6g}"
    )
    med = sorted(times)[len(times) // 2]
    print(
        f"time:   load {load_s * 1e3:.1f} ms, forward best {best * 1e3:.2f} ms, median "
        f"{med * 1e3:.2f} ms over {len(times)} run(s), {gflop / best:.2f} GFLOP/s"
    )
    if args.out:
        np.save(args.out, out)
        print(f"saved:  {args.out}")
    return 0
