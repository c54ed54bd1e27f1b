"""The ratios as a PNG: fusekit's speedup over each peer per workload, with the
interval from the interquartile ranges (stats.compare), log scale, 1x marked."""
from __future__ import annotations

COLORS = {"torch": "tab:blue", "compile": "tab:orange", "deepspeed": "tab:green", "bitsandbytes": "tab:purple",
          "apex": "tab:red"}


def label(row: dict, comp: dict, what: str = "") -> str:
    case = row["case"] + what
    case = case if len(case) <= 44 else case[:43] + "…"
    wl = f" [{row['workload']}]" if row.get("workload") and row["suite"] in ("optim", "clip", "lowp") else ""
    return f"{row['suite']}: {case}{wl} vs {comp['vs']}"


def plot(rows: list[dict], path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # e2e rows add their optimizer phase: what the kernels save inside a real step
    items = [(row, c, what) for row in rows
             for key, what in (("comparisons", ""), ("opt_comparisons", ": optimizer step")) for c in row.get(key, [])]
    if not items:
        raise ValueError("plot: no comparisons to draw")
    fig, ax = plt.subplots(figsize=(11, 1.4 + 0.24 * len(items)))
    for y, (row, c, _) in enumerate(items):
        if y and row["suite"] != items[y - 1][0]["suite"]:
            ax.axhline(y - 0.5, color="gray", lw=0.5)
        color = COLORS.get(c.get("peer"), "tab:gray")
        ax.errorbar(c["speedup"], y, xerr=[[c["speedup"] - c["lo"]], [c["hi"] - c["speedup"]]], fmt="o",
                    color=color, mfc="white" if c["flag"] else color, capsize=2, ms=5)
        if c["flag"]:
            ax.annotate(c["flag"], (c["hi"], y), xytext=(4, -3), textcoords="offset points", fontsize=8)
    ax.set_yticks(range(len(items)), [label(r, c, w) for r, c, w in items], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("fusekit speedup = peer median / fusekit median; bars: interquartile interval; hollow: flagged "
                  "(~ either side of 1, ? size uncertain, L machine busy)", fontsize=8)
    handles = [plt.Line2D([], [], marker="o", ls="", color=col, label=p) for p, col in COLORS.items()
               if any(c.get("peer") == p for _, c, _ in items)]
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
