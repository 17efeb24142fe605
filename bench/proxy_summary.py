"""Summary of bench/proxy.sh: medians per mode and path, and the ratios
against the targets.

Input lines: round mode path requests errors rps p50_ms p99_ms client_us
nginx_us proxy_us ("-" when there is no proxy) resumed_pct.
Usage: python3 bench/proxy_summary.py RESULTS
"""

import statistics
import sys

MODES = ("keep-alive", "new-conn")
PATHS = ("direct", "hudsucker", "ours", "ours-unix", "squid", "mitmdump")
COLS = ("rps", "p50", "p99", "client", "nginx", "proxy", "resumed")


def load(path):
    runs = {}
    for line in open(path):
        f = line.split()
        if len(f) != 12:
            continue
        rnd, mode, name = int(f[0]), f[1], f[2]
        vals = [float(v) if v != "-" else float("nan") for v in f[5:]]
        runs.setdefault((mode, name), []).append((rnd, int(f[4]), dict(zip(COLS, vals))))
    return runs


def median(runs, key):
    return statistics.median(r[2][key] for r in runs)


def main():
    runs = load(sys.argv[1])
    med = {k: {c: median(v, c) for c in COLS} for k, v in runs.items()}
    err = {k: sum(r[1] for r in v) for k, v in runs.items()}

    print("| mode | path | req/s | p50 ms | p99 ms | client µs | nginx µs | proxy µs | errors "
          "| resumed % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode in MODES:
        for name in PATHS:
            m = med.get((mode, name))
            if not m:
                continue
            proxy = "–" if m["proxy"] != m["proxy"] else f"{m['proxy']:,.0f}"
            print(f"| {mode} | {name} | {m['rps']:,.0f} | {m['p50']:.2f} | {m['p99']:.2f} | "
                  f"{m['client']:,.0f} | {m['nginx']:,.0f} | {proxy} | {err[(mode, name)]} "
                  f"| {m['resumed']:.0f} |")

    print("==> ratios of the medians, and of each round's pair")
    for mode in MODES:
        ours = med.get((mode, "ours"))
        if not ours:
            continue

        def check(label, other, col, want, higher):
            o = med.get((mode, other))
            if not o or not o[col]:
                return
            # ours-unix is compared with ours, the rest ours with them.
            ratio = (lambda a, b: b / a) if other == "ours-unix" else (lambda a, b: a / b)
            r = ratio(ours[col], o[col])
            theirs = {x[0]: x[2][col] for x in runs[(mode, other)]}
            per_round = [ratio(mine[col], theirs[rnd]) for rnd, _, mine in runs[(mode, "ours")]
                         if theirs.get(rnd)]
            ok = (lambda x: x >= want) if higher else (lambda x: x <= want)
            sign = ">=" if higher else "<="
            print(f"{mode:10} {label:30} {r:6.2f}x  (target {sign} {want}: "
                  f"{'met' if ok(r) else 'NOT met'}; per round: median "
                  f"{statistics.median(per_round):.2f}x, met in "
                  f"{sum(map(ok, per_round))} of {len(per_round)})")

        check("ours/hudsucker req/s", "hudsucker", "rps", 1.0, True)
        check("ours/hudsucker proxy CPU/req", "hudsucker", "proxy", 1.0, False)
        check("ours/squid req/s", "squid", "rps", 1.2, True)
        check("ours/mitmdump req/s", "mitmdump", "rps", 30, True)
        check("ours-unix/ours proxy CPU/req", "ours-unix", "proxy", 1.05, False)
        d = med.get((mode, "direct"))
        if d and d["rps"]:
            print(f"{mode:10} {'ours/direct req/s (reference)':30} {ours['rps'] / d['rps']:6.2f}x")


if __name__ == "__main__":
    main()
