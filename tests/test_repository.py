"""The repository itself: what git tracks stays light, its docs' links lead somewhere, and importing normlab
leaves matplotlib alone."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000
# Figures and HTML reports are drawn again from each run's data (`normlab report`), so results/ keeps the
# data alone: configs, metrics, results, confusion matrices, weights and report.md. The whole tracked tree
# must also stay copyable to a GPU machine for speed checks, which takes at most 64 MiB; results/ is nearly
# all of it (weights: 0.2 MB a run), so it gets 64 MB and the rest of the tree what is left; and it keeps
# weights only where a figure needs them (scripts/prune_weights.py).
RESULTS_LIMIT = 64 * MB
TREE_LIMIT = 64 * 2**20
FILE_LIMIT = 2 * MB


def tracked_sizes() -> dict[str, int]:
    """Size in the working tree of every file git tracks (files deleted from the working tree left out)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("not a git checkout")
    sizes = {}
    for name in proc.stdout.decode().split("\0"):
        path = ROOT / name
        if name and os.path.lexists(path):
            sizes[name] = os.lstat(path).st_size
    return sizes


def test_no_tracked_file_is_over_2_mb():
    big = {name: size for name, size in tracked_sizes().items() if size > FILE_LIMIT}
    assert not big, f"tracked files over {FILE_LIMIT:,} bytes: {big}"


def test_tracked_tree_fits_a_64_mib_copy():
    total = sum(tracked_sizes().values())
    assert total <= TREE_LIMIT, f"git tracks {total:,} bytes, over the {TREE_LIMIT:,} a GPU machine's copy takes"


def test_tracked_results_weigh_at_most_64_mb():
    sizes = tracked_sizes()
    results = sum(size for name, size in sizes.items() if name.startswith("results/"))
    largest = sorted(((s, n) for n, s in sizes.items() if n.startswith("results/")), reverse=True)[:5]
    assert results <= RESULTS_LIMIT, f"results/ tracks {results:,} bytes; largest: {largest}"


def test_results_keep_weights_only_where_a_figure_needs_them():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "prune_weights.py")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    dropped, copies = proc.stdout.splitlines()[:2]
    assert dropped.startswith("0 of "), f"drop them with scripts/prune_weights.py --apply:\n{proc.stdout}"
    assert copies.startswith("0 runs"), f"link them with scripts/prune_weights.py --apply:\n{proc.stdout}"


def test_tracked_links_lead_to_a_tracked_file_of_the_checkout():
    """Weights kept once are linked from their copies (scripts/prune_weights.py): relative links that a
    clone, and the copy sent to a GPU machine, keep working."""
    tracked = set(tracked_sizes())
    links = [name for name in tracked if (ROOT / name).is_symlink()]
    for name in links:
        target = os.readlink(ROOT / name)
        assert not os.path.isabs(target), f"{name} links to an absolute path: {target}"
        resolved = os.path.relpath(os.path.realpath(ROOT / name), os.path.realpath(ROOT))
        assert resolved in tracked and not (ROOT / resolved).is_symlink(), f"{name} -> {target}: not a tracked file"


def test_no_figures_are_tracked_under_results():
    figures = [n for n in tracked_sizes() if n.startswith("results/")
               and n.rsplit(".", 1)[-1] in {"png", "html", "jpg", "webp", "pt"}]
    assert not figures, f"drawn again by `normlab report`, so not tracked: {figures[:10]}"


def test_importing_normlab_leaves_the_matplotlib_backend_alone():
    # A notebook user's backend must survive `import normlab`: no matplotlib.use, no pyplot at import time.
    code = ("import sys, matplotlib; matplotlib.use('pdf'); "
            "import normlab, normlab.reports, normlab.study, normlab.cli; "
            "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend(); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


# Markdown links between the docs: `[text](path#anchor)`. Headings get renamed; a link to the old anchor
# then still renders, but lands at the top of the page. Anchors follow GitHub's rule: the heading's text
# (a link in it counts as its text) lower-cased, punctuation but hyphens and underscores dropped, spaces as
# hyphens, and -1, -2 ... after a repeated heading.
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def heading_anchors(text: str):  # yields each heading's anchor
    seen: dict[str, int] = {}
    for line in FENCE.sub("", text).splitlines():
        if m := re.match(r"#{1,6} (.*)", line):
            heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).strip().lower()
            slug = re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            yield slug if n == 0 else f"{slug}-{n}"


def test_heading_anchors_follow_github():
    text = "# Top\n## `speedrun` (GN), `speedrun-ln` and [x](y.md)\n```\n# not a heading\n```\n## Top\n"
    assert list(heading_anchors(text)) == ["top", "speedrun-gn-speedrun-ln-and-x", "top-1"]


def test_links_between_docs_lead_to_a_file_and_heading():
    """README, docs/ and results/README.md: every relative link names a file or folder of the checkout, and
    an anchor a heading in it (reports under results/<study>/ link to figures `normlab report` draws, so
    they are left out)."""
    names = [n for n in tracked_sizes() if n.endswith(".md") and not (n.startswith("results/") and n.count("/") > 1)]
    assert "README.md" in names
    broken = []
    for name in names:
        source = ROOT / name
        for target in LINK.findall(FENCE.sub("", source.read_text())):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (source.parent / path) if path else source
            if not dest.exists():
                broken.append(f"{name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in set(heading_anchors(dest.read_text())):
                broken.append(f"{name}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)
