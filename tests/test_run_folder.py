"""A run folder must never run code, break a run or lie (issue 15, items 1-7), checked on a real small run folder
through the real `lth` entry point. Each test names the item it covers.

The reference run is made once; each test works on a copy. Copies that must train again lose their level 2,
so that resuming reads the level-1 files (mask, trained ticket, θ_0) and trains level 2 from them.
"""

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_results

from lth.cli import main

TINY = ["--preset", "mnist1d_mlp", "--data.dataset", "synthetic", "--model.name", "lenet_300_100",
        "--model.hidden", "16", "--train.budget", "40it", "--train.eval_every", "20it", "--train.batch_size", "50",
        "--device", "cpu", "--quiet", "--compute.threads", "1", "--lottery.levels", "2", "--checkpoint_seconds", "0"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    assert main(["run", *TINY, "--no-report", "--out", str(out / "runs"), "--data-dir", str(out / "data")]) == 0
    [run] = (out / "runs").iterdir()
    return run


class Run:
    """A copy of the reference run, and the `lth` commands that resume, show and report it."""

    def __init__(self, reference: Path, tmp: Path, without_level2: bool = False):
        self.out, self.data = tmp / "runs", reference.parent.parent / "data"
        self.root = self.out / reference.name
        shutil.copytree(reference, self.root)
        if without_level2:
            shutil.rmtree(self.root / "rep0" / "level02")

    def run(self, *extra: str) -> int:
        return main(["run", *TINY, "--no-report", "--out", str(self.out), "--data-dir", str(self.data), *extra])

    def show(self) -> int:
        return main(["show", str(self.root)])

    def report(self) -> int:
        return main(["report", str(self.root)])


def one_line(capsys) -> str:
    """The single line on stderr, with no traceback anywhere."""
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def same_results(a: Path, b: Path) -> None:
    ra, rb = run_results(a), run_results(b)
    assert set(ra) == set(rb)
    for key in ra:
        assert ra[key] == rb[key], key


# -- item 1: a planted resume.pt must not run code ---------------------------------------------------------

class Planted:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def test_a_resume_state_that_holds_code_is_refused_not_run(reference, tmp_path, capsys):  # item 1
    run = Run(reference, tmp_path, without_level2=True)
    marker = tmp_path / "code-ran"
    resume = run.root / "rep0" / "level02" / "ticket" / "resume.pt"
    resume.parent.mkdir(parents=True)
    torch.save({"step": 20, "model": {}, "optimizer": {}, "metrics": [], "note": Planted(str(marker))}, resume)
    capsys.readouterr()
    assert run.run() == 2
    line = one_line(capsys)
    assert "resume.pt" in line and "run code" in line
    assert not marker.exists()


# -- item 2: no write goes through a link planted in a run folder -------------------------------------------

@pytest.mark.parametrize("link, command", [
    ("report/report.html", "report"),
    ("report/summary.md", "report"),
    ("report/summary.csv", "report"),
    ("report", "report"),  # the report folder itself
    (".lock", "run"),
    ("rep0/level02", "run"),  # a folder the run writes into (sibling: only the last part was checked)
    ("rep0/level02/ticket/summary.json", "run"),
])
def test_links_planted_in_a_run_folder_are_refused(link, command, reference, tmp_path, capsys):  # item 2
    run = Run(reference, tmp_path, without_level2=link.startswith("rep0/level02"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("precious")
    target = outside if "." not in Path(link).name and link != ".lock" else outside / "precious"
    path = run.root / link
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    path.symlink_to(target)
    capsys.readouterr()
    assert getattr(run, command)() == 2
    line = one_line(capsys)
    assert "symbolic link" in line and link.split("/")[-1] in line
    assert [p.name for p in outside.iterdir()] == ["precious"] and (outside / "precious").read_text() == "precious"


# -- item 3: one mode for every file, following the umask --------------------------------------------------

def test_every_file_gets_the_mode_the_umask_gives(tmp_path):  # item 3
    umask = 0o027  # neither the usual 022 nor the 0600 that safetensors files got
    old = os.umask(umask)
    try:
        assert main(["run", *TINY, "--lottery.levels", "1", "--out", str(tmp_path / "runs"), "--data-dir",
                     str(tmp_path / "data")]) == 0
        [run] = (tmp_path / "runs").iterdir()
        assert main(["export", str(run), "--level", "1", "--format", "dense"]) == 0
    finally:
        os.umask(old)
    files = [p for p in run.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".safetensors", ".json", ".csv", ".html", ".md", ".png", ".svg", ""} <= kinds  # "": .lock
    modes = {p.relative_to(run).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


# -- items 4 and 6: a full disk is one line, leaves no temporary file, and rerunning resumes ----------------

class FullDisk:
    """Writes half of what it is given, then fails as a full disk does."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def flush(self):
        self.f.flush()


@pytest.fixture
def disk_fills_at(monkeypatch):
    """disk_fills_at(name): the disk fills up while lth writes the first file called `name` (through lth's
    atomic writer, which writes a temporary file beside it first)."""
    real_open, real_fdopen = os.open, os.fdopen
    state = {"name": None, "fds": set(), "fired": False}

    def fake_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        name = Path(path).name
        if not state["fired"] and state["name"] and name.startswith(f".{state['name']}.") and name.endswith(".tmp"):
            state["fds"].add(fd)
        return fd

    def fake_fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        if fd in state["fds"]:
            state["fds"].discard(fd)
            state["fired"] = True
            return FullDisk(f)
        return f

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "fdopen", fake_fdopen)

    def arm(name: str):
        state["name"] = name
        return state

    return arm


@pytest.mark.parametrize("name", ["mask.json", "mask.safetensors", "resume.pt", "final.safetensors", "metrics.csv",
                                  "summary.json", "config.json", "report.html", "fig-accuracy_vs_pm.png"])
def test_a_full_disk_is_one_line_and_rerunning_resumes(name, reference, tmp_path, capsys, disk_fills_at):  # 4, 6
    run = Run(reference, tmp_path, without_level2=True)
    state = disk_fills_at(name)
    capsys.readouterr()
    code = run.report() if name.startswith(("report", "fig-")) else run.run()
    assert state["fired"] or name.startswith("fig-")  # a figure may be written by a forked child of the report
    assert code == 2
    line = one_line(capsys)
    assert "disk is full" in line and name in line and "rerun" in line
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left
    state["name"] = None  # space freed
    assert run.run() == 0
    same_results(run.root, reference)


# -- item 5: a damaged file is named, with the fix ---------------------------------------------------------

DAMAGED = [  # (file, the command that reads it)
    ("config.json", "show"),
    ("plan.json", "report"),
    ("rep0/level01/ticket/summary.json", "show"),
    ("rep0/level01/ticket/metrics.csv", "report"),
    ("rep0/level01/mask.json", "run"),
    ("rep0/level01/mask.safetensors", "run"),
    ("rep0/init.safetensors", "run"),
    ("rep0/level01/ticket/final.safetensors", "run"),
]


@pytest.mark.parametrize("how", ["emptied", "truncated"])
@pytest.mark.parametrize("name, command", DAMAGED)
def test_a_damaged_file_is_named_with_the_fix(name, command, how, reference, tmp_path, capsys):  # item 5
    run = Run(reference, tmp_path, without_level2=command == "run")
    path = run.root / name
    data = path.read_bytes()
    path.write_bytes(b"" if how == "emptied" else data[: len(data) // 2])
    capsys.readouterr()
    assert getattr(run, command)() == 2
    line = one_line(capsys)
    assert str(path) in line and "damaged" in line
    assert any(fix in line.lower() for fix in ("delete", "restore", "rerun")), line


@pytest.mark.parametrize("how", ["emptied", "truncated"])
def test_a_damaged_resume_state_is_set_aside_and_its_training_restarts(how, reference, tmp_path, capsys):  # 5
    run = Run(reference, tmp_path, without_level2=True)
    resume = run.root / "rep0" / "level02" / "ticket" / "resume.pt"
    resume.parent.mkdir(parents=True)
    torch.save({"step": 20, "model": {"w": torch.zeros(100)}, "optimizer": {}, "metrics": []}, resume)
    resume.write_bytes(b"" if how == "emptied" else resume.read_bytes()[:300])
    capsys.readouterr()
    assert run.run() == 0
    line = one_line(capsys)
    assert "warning" in line and str(resume) in line and "resume.pt.damaged" in line
    assert resume.with_name("resume.pt.damaged").exists() and not resume.exists()
    same_results(run.root, reference)


# -- item 7: every file's identity is checked against its place --------------------------------------------

def test_a_summary_copied_into_another_place_is_refused(reference, tmp_path, capsys):  # item 7
    run = Run(reference, tmp_path)
    source = run.root / "rep0" / "level01" / "ticket" / "summary.json"
    for place in ("rep0/level02/ticket", "rep0/level01/reinit", "rep1/level01/ticket"):
        copy = run.root / place / "summary.json"
        original = copy.read_bytes() if copy.exists() else None
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, copy)
        assert run.show() == 2
        line = one_line(capsys)
        assert str(copy) in line and "copied" in line
        copy.write_bytes(original) if original is not None else shutil.rmtree(run.root / "rep1")


def test_a_mask_copied_from_another_level_is_refused(reference, tmp_path, capsys):  # item 7
    run = Run(reference, tmp_path, without_level2=True)
    (run.root / "rep0" / "level02").mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(run.root / "rep0" / "level01" / f"mask{suffix}", run.root / "rep0" / "level02" / f"mask{suffix}")
    capsys.readouterr()
    assert run.run() == 2
    line = one_line(capsys)
    assert "level02/mask.safetensors" in line and "level 2" in line
    assert not (run.root / "rep0" / "level02" / "ticket").exists()  # nothing trained at the wrong sparsity


def test_a_file_with_the_right_counts_from_another_place_is_refused(reference, tmp_path, capsys):  # item 7
    """The random-pruning control's mask has the ticket mask's counts; its recorded place tells them apart."""
    run = Run(reference, tmp_path, without_level2=True)
    level = run.root / "rep0" / "level01"
    for suffix in (".safetensors", ".json"):
        shutil.copy(level / "random_prune" / f"mask{suffix}", level / f"mask{suffix}")
    capsys.readouterr()
    assert run.run() == 2
    line = one_line(capsys)
    assert str(level / "mask.safetensors") in line and "branch random_prune" in line and "copied" in line


def test_a_config_that_does_not_match_the_folder_name_is_refused(reference, tmp_path, capsys):  # item 7
    run = Run(reference, tmp_path)
    path = run.root / "config.json"
    record = json.loads(path.read_text())
    record["config"]["train"]["lr"] = 0.5
    record["hash"] = "0123abcd"
    path.write_text(json.dumps(record))
    capsys.readouterr()
    for command in (run.show, run.report, run.run):
        assert command() == 2
        line = one_line(capsys)
        assert str(path) in line and "0123abcd" in line


def test_a_summary_whose_sparsity_is_not_its_levels_is_refused(reference, tmp_path, capsys):  # item 7 sibling
    run = Run(reference, tmp_path)
    path = run.root / "rep0" / "level01" / "reinit" / "summary.json"
    summary = json.loads(path.read_text())
    summary["remaining_percent"] = 24.52
    path.write_text(json.dumps(summary))
    capsys.readouterr()
    assert run.run() == 2
    line = one_line(capsys)
    assert str(path) in line and "P_m 24.52%" in line


def test_metrics_that_do_not_end_where_the_summary_says_are_refused(reference, tmp_path, capsys):  # 5 sibling
    run = Run(reference, tmp_path)
    path = run.root / "rep0" / "level01" / "ticket" / "metrics.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # cut at a row's end: a valid CSV, one evaluation short
    capsys.readouterr()
    assert run.report() == 2
    line = one_line(capsys)
    assert str(path) in line and "ends at step 20" in line
