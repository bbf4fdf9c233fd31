"""Client of the ADAGE Dask example: waits for every worker, sums the squares of 0..n-1 on the
cluster, checks the result, prints it and reports ``result=...`` to $ADAGE_REPORT."""

from __future__ import annotations

import argparse
import os

from distributed import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    workers = int(os.environ.get("DASK_WORKERS", "1"))
    with Client(os.environ["DASK_SCHEDULER_ADDRESS"], timeout=args.timeout) as client:
        client.wait_for_workers(workers, timeout=args.timeout)
        squares = client.map(lambda x: x * x, range(args.n))
        total = client.submit(sum, squares).result()
        used = len({w for ws in client.who_has(squares).values() for w in ws})
    expected = (args.n - 1) * args.n * (2 * args.n - 1) // 6
    print(f"sum of squares below {args.n} = {total} (on {used} of {workers} workers)")
    if report := os.environ.get("ADAGE_REPORT"):
        with open(report, "a", encoding="utf-8") as out:
            out.write(f"result={total}\n")
    raise SystemExit(0 if total == expected else 1)


if __name__ == "__main__":
    main()
