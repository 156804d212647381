"""Wall time and validation loss of the nanoGPT CPU recipe against nanoGPT's own on this machine kind
(`bash ../shared/nanogpt/pair.sh` runs both side by side)."""

from __future__ import annotations

import argparse

# nanoGPT's own train.py on this kind of machine (2-core CPU): README CPU recipe, 2000 iterations.
NANOGPT_SECONDS, NANOGPT_VAL_LOSS = 102.8, 1.886


def bench_nanogpt(suite: str) -> None:
    """The nanoGPT CPU recipe through `optbench train`, against nanoGPT's own figures on this machine kind."""
    from bench.runfile import load_run_config
    from bench.train import train

    record = train(load_run_config(suite, None))
    print(
        f"{suite}: {record.steps} steps, validation loss {record.final_val_loss:.4f} "
        f"({record.final_val_loss - NANOGPT_VAL_LOSS:+.4f} vs nanoGPT's {NANOGPT_VAL_LOSS}, target within 0.03)"
    )
    share = record.wall_time / NANOGPT_SECONDS
    print(f"wall {record.wall_time:.1f} s = {share:.0%} of nanoGPT's {NANOGPT_SECONDS} s ({1 / share:.2f}x faster)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", default="suites/nanogpt_cpu.toml")
    args = parser.parse_args(argv)
    bench_nanogpt(args.suite)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
