"""The README and the documentation site: the site builds with no warning, every generated table
is what the code and the committed results make, and every command and Python example they show
runs as written (in a folder laid out as the quickstart leaves it, with the tests' tiny models).

Commands that train, or read a camera or a network stream, cannot run here in a test's time;
they are parsed by the real command-line parser instead, so a renamed or removed flag still
fails. docs/real-data.md is run block by block by tests/test_recipe.py, and the HOI page's
Python example by tests/test_hoi.py."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from mipd_edge.cli import build_parser
from mipd_edge.data.synthsitu.video import write_demo_video

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import generated  # noqa: E402

BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
# the documents whose examples this file runs (docs/real-data.md: tests/test_recipe.py)
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")
                                if p.name != "real-data.md")
# sub-commands that run in seconds on the tiny bundle; the others train or build datasets
RUNS = {"predict", "stream", "check", "predict-dataset", "eval", "benchmark", "split"}
RUN_PAGES = {"README.md", "docs/predictor.md", "docs/streams.md", "docs/serving.md", "docs/datasets.md",
             "docs/deployment.md",
             "docs/reliability.md", "docs/installation.md", "docs/contributing.md"}
LIVE = re.compile(r"--source (\d+|rtsp://\S+|http://\S+)|--sources ")  # cameras, or a file listing them


def blocks(page: str, language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall((ROOT / page).read_text(encoding="utf-8")) if lang == language]


def commands(script: str) -> list[str]:
    """The command lines of a shell block: continuations joined, comments dropped."""
    lines = script.replace("\\\n", " ").splitlines()
    return [line.split("  #")[0].strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def setup_commands(page: str) -> list[str]:
    return [c for script in blocks(page, "bash") for c in commands(script) if c.startswith("python3 -m venv")]


@pytest.fixture(scope="module")
def quickstart_layout(tiny_world, tiny_student, tiny_fp32_bundle, tiny_bundle, tmp_path_factory):
    """A folder as `mipd-edge quickstart --workdir runs/quickstart` leaves it, made of the tests'
    tiny models, with the photo, photo folder and video the examples name, and the repository's
    scripts where the examples run them from."""
    root = tmp_path_factory.mktemp("layout")
    runs = root / "runs" / "quickstart"
    runs.mkdir(parents=True)
    made = {"student-mipd": tiny_student, "bundle-fp32": tiny_fp32_bundle, "bundle-int8": tiny_bundle}
    for name in ("data", "teacher", "teacher-data", "rationales.jsonl"):
        made[name] = tiny_world / name
    for name, target in made.items():
        (runs / name).symlink_to(target)
    images = sorted((tiny_world / "data" / "images").iterdir())
    (root / "photo.jpg").write_bytes(images[0].read_bytes())
    (root / "photos").mkdir()
    for name, image in zip(("a.jpg", "b.jpg"), images[1:3]):
        (root / "photos" / name).write_bytes(image.read_bytes())
    write_demo_video(tiny_world / "data", root / "video.mp4", images=2, frames_per_image=2, fps=4)
    for folder in ("examples", "benchmarks", "docs"):
        (root / folder).symlink_to(ROOT / folder)
    return root


def workspace(layout: Path, tmp_path: Path) -> Path:
    """A fresh folder for one block, so no block finds another's outputs."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(parents=True)
    for entry in layout.iterdir():
        (cwd / entry.name).symlink_to(entry)
    return cwd


def bash(command: str, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def parses(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"mipd-edge {shlex.join(args)} does not parse") from exc


def check_command(command: str, cwd: Path, after_training: bool = False) -> str:
    """Run or parse one documented command; returns what was done with it, for the test's record.
    ``after_training``: an earlier command of the block trained or made data (and was only parsed),
    so this one, which may read what that made, is only parsed too."""
    words = shlex.split(command)
    if command.startswith("python3 -m venv"):
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for named in re.findall(r'-e "\.\[([\w,]+)\]"', command):
            assert set(named.split(",")) <= set(extras), command
        return "install checked"
    if words[:3] == [".venv/bin/python", "-m", "pytest"]:
        assert set(words[3:]) <= {"-q", "-m", "not slow"}, command  # the suite itself is CI's to run
        return "test command checked"
    if words[0].startswith(".venv/bin/"):  # the development loop, in the repository
        words[0] = str(Path(sys.executable).parent / Path(words[0]).name)
        r = bash(shlex.join(words), ROOT)
        assert r.returncode == 0, (command, r.stdout[-2000:], r.stderr[-2000:])
        return "ran in the repository"
    if words[0] == "torchrun":
        parses(words[words.index("mipd_edge.cli") + 1:])
        return "parsed"
    if words[0] == "mipd-edge":
        sub = words[2] if words[1] == "data" else words[1]
        if sub not in RUNS or LIVE.search(command) or after_training:
            parses(words[1:])
            return "parsed live source" if LIVE.search(command) else "parsed"
    r = bash(command, cwd)
    assert r.returncode == 0, (command, r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr, (command, r.stderr[-3000:])
    return "ran"


def test_the_site_builds_with_no_warning(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # Material's notice about its successor
    assert r.returncode == 0, r.stderr[-4000:]
    assert "WARNING" not in r.stderr, r.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_the_api_reference_covers_the_public_api():
    import hooks  # docs/ is on the path (above)

    assert hooks.problems((ROOT / "docs" / "api.md").read_text()) == []
    assert hooks.problems("::: mipd_edge.Predictor\n") != []  # an incomplete page is caught


@pytest.mark.parametrize("page", generated.markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_parts_are_current(page):
    text = page.read_text(encoding="utf-8")
    assert generated.render(text) == text, f"run: python docs/generated.py ({page.relative_to(ROOT)} is out of date)"


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = readme.splitlines()
    assert len(lines) <= 250
    first = "\n".join(lines[:80])
    assert 'Predictor("runs/quickstart/bundle-int8")' in first and 'cv2.VideoCapture("video.mp4")' in first
    assert generated.backends() in readme  # the backends table is the registry's
    setup = setup_commands("README.md")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert len(setup) == 2 and setup[1] == ci and "-m pytest" in ci
    assert setup[0].endswith("mipd-edge quickstart --workdir runs/quickstart")
    for word in ("target", "not met", "issue ", "sitting"):
        assert word not in readme.lower(), word


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_every_command_runs_as_written(page, quickstart_layout, tmp_path, cache_dir):
    done = []
    for i, script in enumerate(blocks(page, "bash")):
        cwd = workspace(quickstart_layout, tmp_path / f"bash-{i}")
        if any(command.endswith(" &") for command in commands(script)):  # a server, then its clients: one shell
            r = bash(script, cwd, timeout=300)
            assert r.returncode == 0 and "Traceback" not in r.stderr, (script, r.stdout[-2000:], r.stderr[-3000:])
            done.append("ran")
            continue
        block: list[str] = []
        for command in commands(script):
            block.append(check_command(command, cwd, after_training="parsed" in block))
        done += block
    for i, code in enumerate(blocks(page, "python")):
        if page == "docs/hoi.md":
            continue  # an HOI bundle: tests/test_hoi.py
        cwd = workspace(quickstart_layout, tmp_path / f"python-{i}")
        (cwd / "example.py").write_text(code)
        r = bash(f"{shlex.quote(sys.executable)} example.py", cwd)
        assert r.returncode == 0, (page, code, r.stderr[-3000:])
        done.append("ran")
    for code in blocks(page, "yaml"):
        from mipd_edge.train.config import load_config

        path = tmp_path / "config.yaml"
        path.write_text(code)
        load_config(path)
        done.append("config read")
    for code in blocks(page, "json"):
        import json

        json.loads(code)
        done.append("JSON read")
    if page in RUN_PAGES:  # the pages a user copies from run something for real, not only parse
        assert "ran" in done, (page, done)
    shown = {lang for lang, _ in BLOCK.findall((ROOT / page).read_text(encoding="utf-8"))} - {"text"}
    assert done or shown <= {"python"} and page == "docs/hoi.md" or not shown, (page, shown)
