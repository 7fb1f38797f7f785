"""Tables, targets and the ratio plot, from the records ``benchmarks.run`` collects."""

from benchmarks.methods import METHODS
from benchmarks.workloads import WORKLOADS

SPEED_TARGET = 1.1
COMPILE_TARGET_S = 0.020
WARM_CACHE_TARGET_S = 0.002
SLOWER_PEERS = ("autograd", "torch", "jax")
COLORS = {
    "primal": "#9e9e9e",
    "adcompiler": "#d62728",
    "autograd": "#2ca02c",
    "jax": "#1f77b4",
    "jax_jit": "#9467bd",
    "torch": "#ff7f0e",
}


def index(records):
    """``{(workload, size): {method: record}}`` for the timing records."""
    rows = {}
    for record in records:
        if record.get("mode", "time") == "time":
            rows.setdefault((record["workload"], record["size"]), {})[record["method"]] = record
    return rows


def compile_index(records):
    return {(r["workload"], r["size"]): r for r in records if r.get("mode") == "compile"}


CLOCK = "cpu"  # which clock the tables use: "cpu" (process CPU time) or "wall"


def median(record):
    if record and record.get("status") == "ok" and "timing" in record:
        return record["timing"][CLOCK]["median_s"]
    return None


def format_seconds(seconds):
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "~0 (within noise)"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_bytes(count):
    if count is None:
        return "-"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            value = count / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{count} B"


def row_label(workload, size):
    labels = getattr(WORKLOADS[workload], "SIZE_LABELS", {})
    return f"{workload} {size} ({labels.get(size, '')})"


class Notes:
    """Statuses other than ok, numbered once and shown below the tables."""

    def __init__(self):
        self.numbers: dict[str, int] = {}

    def cell(self, record, text):
        if record is None:
            return "-"
        status = record.get("status", "")
        if status == "ok" and record.get("failed_rounds"):
            failures = record["failed_rounds"]
            note = f"{len(failures)} round(s) failed, the others give the number: {failures[0]}"
            return f"{text} [{self.numbers.setdefault(note, len(self.numbers) + 1)}]"
        if status == "ok":
            return text
        number = self.numbers.setdefault(status, len(self.numbers) + 1)
        return f"{status.split(':', 1)[0]} [{number}]"

    def render(self):
        return "\n".join(f"{n}. {status}" for status, n in self.numbers.items())


NOTES = Notes()


def _cell_or_status(record, text):
    return NOTES.cell(record, text)


def _markdown(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def methods_present(rows):
    present = {method for methods in rows.values() for method in methods}
    return [method for method in METHODS if method in present]


def time_table(rows):
    methods = methods_present(rows)
    lines = []
    for (workload, size), by_method in rows.items():
        cells = [row_label(workload, size)]
        for method in methods:
            record = by_method.get(method)
            seconds = median(record)
            text = "-"
            if seconds is not None:
                spread = 100 * record["timing"][CLOCK]["iqr_s"] / seconds
                text = f"{format_seconds(seconds)} ±{spread:.0f}%"
            cells.append(_cell_or_status(record, text))
        lines.append(cells)
    return _markdown(["workload (median, ±IQR as % of median)", *methods], lines)


def ratio_table(rows, baseline):
    methods = [m for m in methods_present(rows) if m != baseline]
    lines = []
    for (workload, size), by_method in rows.items():
        base = median(by_method.get(baseline))
        cells = [row_label(workload, size)]
        for method in methods:
            record = by_method.get(method)
            seconds = median(record)
            text = f"{seconds / base:.2f}x" if seconds and base else "-"
            cells.append(_cell_or_status(record, text))
        lines.append(cells)
    return _markdown([f"workload (time / {baseline})", *methods], lines)


def memory_table(rows):
    methods = methods_present(rows)
    lines = []
    for (workload, size), by_method in rows.items():
        cells = [row_label(workload, size)]
        for method in methods:
            record = by_method.get(method)
            text = "-"
            if record and "memory" in record:
                text = (
                    f"{format_bytes(record['memory']['call_peak_bytes'])}"
                    f" / {format_bytes(record['process_peak_bytes'])}"
                )
            cells.append(_cell_or_status(record, text))
        lines.append(cells)
    return _markdown(["workload (per-call peak / process peak RSS)", *methods], lines)


def compile_table(rows, compiles):
    lines = []
    for (workload, size), by_method in rows.items():
        record = by_method.get("adcompiler")
        if record is None:
            continue
        if record.get("status") != "ok":
            lines.append([row_label(workload, size), _cell_or_status(record, "")] + ["-"] * 4)
            continue
        setup = record.get("setup", {})
        fresh = compiles.get((workload, size), {})
        first_call_extra = None
        if fresh.get("status") == "ok":
            first_call_extra = fresh["first_call_s"] - fresh["steady_call_s"]
        lines.append(
            [
                row_label(workload, size),
                format_seconds(setup.get("generate_first_s")),
                format_seconds(setup.get("generate_cached_s")),
                _cell_or_status(fresh, _fresh_words(fresh)),
                _cell_or_status(fresh, format_seconds(first_call_extra)),
                _cell_or_status(fresh, format_seconds(fresh.get("import_s"))),
            ]
        )
    header = [
        "workload",
        "first generation (cold)",
        "again, same process",
        "fresh process: value_and_grad() with the disk cache warm",
        "fresh process: first call's extra over a steady call",
        "import adcompiler",
    ]
    return _markdown(header, lines)


def _fresh_words(fresh):
    text = format_seconds(fresh.get("build_s"))
    if fresh.get("disk_cache_files_before") == 0:
        text += " (cache was empty)"
    return text


def targets(rows, compiles):
    """``[(target, met: bool | None, detail)]``; ``None`` when it could not be measured."""
    results = []
    slow, unmeasured = [], []
    beaten = {peer: [] for peer in SLOWER_PEERS}
    for (workload, size), by_method in rows.items():
        ours, hand = median(by_method.get("adcompiler")), median(by_method.get("hand"))
        label = f"{workload} {size}"
        if ours is None or hand is None:
            unmeasured.append(label)
            continue
        if ours > SPEED_TARGET * hand:
            slow.append(f"{label} {ours / hand:.2f}x")
        for peer in SLOWER_PEERS:
            theirs = median(by_method.get(peer))
            if theirs is not None and theirs <= ours:
                beaten[peer].append(f"{label} ({theirs / ours:.2f}x of ours)")

    def verdict(failures):
        if unmeasured and not failures:
            return None if len(unmeasured) == len(rows) else "partly"
        return not failures

    detail = "; ".join(slow + ([f"not measured: {', '.join(unmeasured)}"] if unmeasured else []))
    results.append((f"adcompiler within {SPEED_TARGET}x of hand-written", verdict(slow), detail))
    for peer in SLOWER_PEERS:
        failures = beaten[peer]
        detail = "; ".join(
            failures + ([f"not measured: {', '.join(unmeasured)}"] if unmeasured else [])
        )
        results.append((f"adcompiler faster than {peer}", verdict(failures), detail))
    mlp_setup = rows.get(("mlp", "small"), {}).get("adcompiler", {})
    first = mlp_setup.get("setup", {}).get("generate_first_s")
    results.append(_threshold("MLP gradient generated in < 20 ms", first, COMPILE_TARGET_S))
    fresh = compiles.get(("mlp", "small"), {}).get("build_s")
    results.append(
        _threshold("MLP gradient from warm disk cache in < 2 ms", fresh, WARM_CACHE_TARGET_S)
    )
    return results


def _threshold(name, seconds, limit):
    if seconds is None:
        return (name, None, "not measured")
    return (name, seconds < limit, format_seconds(seconds))


def targets_table(rows, compiles):
    words = {
        True: "met",
        False: "NOT met",
        None: "not measured",
        "partly": "met where measured",
    }
    lines = [[name, words[met], detail or ""] for name, met, detail in targets(rows, compiles)]
    return _markdown(["target", "result", "detail"], lines)


def full_report(records):
    NOTES.numbers.clear()
    rows, compiles = index(records), compile_index(records)
    sections = [
        ("Median time per call", time_table(rows)),
        ("Ratio to hand-written", ratio_table(rows, "hand")),
        ("Ratio to the primal", ratio_table(rows, "primal")),
        ("Memory", memory_table(rows)),
        ("adcompiler's own costs (generation time)", compile_table(rows, compiles)),
        ("Targets", targets_table(rows, compiles)),
    ]
    if NOTES.numbers:
        sections.append(("Notes (why a cell has no number)", NOTES.render()))
    return "\n\n".join(f"#### {title}\n\n{body}" for title, body in sections)


def plot_ratios(records, path):
    """Bars of time / hand-written per workload and method, on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = index(records)
    methods = [m for m in methods_present(rows) if m != "hand"]
    labels = [f"{w}\n{s}" for w, s in rows]
    figure, axes = plt.subplots(figsize=(max(8, 1.3 * len(labels)), 5))
    width = 0.8 / max(1, len(methods))
    for offset, method in enumerate(methods):
        xs, ys = [], []
        for position, by_method in enumerate(rows.values()):
            x = position + (offset - (len(methods) - 1) / 2) * width
            ours, hand = median(by_method.get(method)), median(by_method.get("hand"))
            if ours and hand:
                xs.append(x)
                ys.append(ours / hand)
            elif method == "adcompiler" and by_method.get(method):
                status = by_method[method].get("status", "").split(":", 1)[0]
                axes.text(x, 1.0, status, rotation=90, ha="center", va="bottom", fontsize=7)
        axes.bar(xs, ys, width=width, label=method, color=COLORS.get(method))
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.axhline(SPEED_TARGET, color="red", linestyle="--", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_xticks(range(len(labels)), labels, fontsize=8)
    axes.set_ylabel("time / hand-written (log scale)")
    axes.set_title("Value-and-gradient time relative to hand-written NumPy (lower is better)")
    handles = [Patch(color=COLORS.get(method), label=method) for method in methods]
    handles.append(Line2D([], [], color="red", linestyle="--", label="1.1x target"))
    axes.legend(handles=handles, fontsize=8, ncol=4)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
