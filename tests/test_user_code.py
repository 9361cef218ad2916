"""User code loads from config: a ``.gin`` file imports the user's module (gin's own ``import``
statement), which registers a new op, and a search through the real command line uses it."""

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sharpdarts.face import cli, experiments
from sharpdarts.nn.ops import OPS

# A user's file: a new op, registered in the default op table on import. Its parameter name
# is unlike any builtin op's, so the searched network's weights show whether it was built.
USER_OPS = textwrap.dedent('''
    import torch
    from torch import nn

    from sharpdarts.nn.ops import OPS

    BUILT = []


    class ScaledPoolConv(nn.Module):
        """Average pool (carrying the stride), 1x1 convolution, then a learned scale."""

        def __init__(self, C_in, C_out, stride, affine):
            super().__init__()
            self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
            self.conv = nn.Conv2d(C_in, C_out, 1, bias=False)
            self.bn = nn.BatchNorm2d(C_out, affine=affine)
            self.user_op_scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.bn(self.conv(self.pool(x))) * self.user_op_scale


    @OPS.register('{op}')
    def scaled_pool_conv(C_in, C_out, stride, affine, C_mid=None):
        BUILT.append(stride)
        return ScaledPoolConv(C_in, C_out, stride, affine)
''')

SEARCH_GIN = textwrap.dedent("""
    # A user's search: the shipped search protocol over a primitive set holding their op.
    import {module}
    include 'gin/protocols/search.gin'
    include 'gin/networks/search_cells.gin'
    include 'gin/datasets/digits.gin'
    SearchNetwork.primitives = ['none', 'skip_connect', '{op}']
    EPOCHS = 2
    BATCH_SIZE = 16
""")


@pytest.fixture
def user_environment(monkeypatch):
    """Leaves sys.path, the op table and the imported modules as they were."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before_ops = set(OPS)
    before_modules = set(sys.modules)
    yield
    for name in set(OPS) - before_ops:
        del OPS[name]
    for name in set(sys.modules) - before_modules:
        if not name.startswith(("sharpdarts", "torch", "gin")):
            sys.modules.pop(name, None)


def _write_user_files(folder: Path, gin_folder: Path, module: str, op: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    gin_folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(USER_OPS.replace("{op}", op))
    gin_file = gin_folder / "my_search.gin"
    gin_file.write_text(SEARCH_GIN.replace("{module}", module).replace("{op}", op))
    return gin_file


def _searched_with_user_op(run_folder: Path, module: str, op: str) -> None:
    """The search ran, its network held the user's op, and its genotype speaks of it."""
    info = json.loads((run_folder / "run.json").read_text())
    assert info["status"] == "completed"
    assert sys.modules[module].BUILT, "the user's op factory was never called"
    state = torch.load(run_folder / "checkpoint.pt", map_location="cpu", weights_only=False)
    model = state["model"]
    assert any(key.endswith("user_op_scale") for key in model), "no user op in the network"
    # One weight per primitive and edge: smoke.gin's cells of two nodes have 2 + 3 edges.
    assert tuple(model["alphas_normal"].shape) == (5, 3)
    config = (run_folder / "operative_config.gin").read_text()
    assert op in config
    genotype = info["final"]["genotype"]
    used = {name for name, _ in genotype["normal"] + genotype["reduce"]}
    assert used <= {"skip_connect", op}


def test_a_gin_file_imports_a_user_op_beside_it_and_searches_with_it(
    tmp_path, capsys, user_environment
):
    gin_file = _write_user_files(tmp_path / "mine", tmp_path / "mine", "beside_ops", "beside_op")
    results = tmp_path / "results"
    code = cli.main(["run", str(gin_file), "--smoke", "--results", str(results)])
    out = capsys.readouterr()
    assert code == 0, out.err
    _searched_with_user_op(Path(out.out.strip().splitlines()[-1]), "beside_ops", "beside_op")


def test_a_project_experiment_imports_a_user_op_from_the_project_root(
    tmp_path, capsys, user_environment
):
    project = tmp_path / "project"
    _write_user_files(project, project / "experiments" / "mine", "project_ops", "project_op")
    results = tmp_path / "results"
    code = cli.main(["--project", str(project), "list"])
    out = capsys.readouterr()
    assert code == 0 and "mine/my_search" in out.out
    code = cli.main(
        ["--project", str(project), "run", "mine/my_search", "--smoke", "--results", str(results)]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    run_folder = Path(out.out.strip().splitlines()[-1])
    assert run_folder.parent.name == "my_search" and run_folder.parent.parent.name == "mine"
    _searched_with_user_op(run_folder, "project_ops", "project_op")


def test_user_code_paths_are_the_project_root_then_each_config_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    monkeypatch.setenv("SHARPDARTS_PROJECT", str(project))
    monkeypatch.setattr(sys, "path", list(sys.path))
    configs = [project / "experiments" / "a.gin", tmp_path / "b" / "b.gin", project / "c.gin"]
    assert experiments.user_code_paths(configs) == [
        project.resolve(),
        (project / "experiments").resolve(),
        (tmp_path / "b").resolve(),
    ]
    added = experiments.make_user_code_importable(configs)
    assert sys.path[:3] == [str(p) for p in added] and len(added) == 3
    assert experiments.make_user_code_importable(configs) == []  # no repeats


def test_an_unknown_module_in_a_config_is_a_user_error(tmp_path, capsys):
    gin_file = tmp_path / "bad_import.gin"
    gin_file.write_text("import no_such_user_module\ninclude 'gin/protocols/search.gin'\n")
    code = cli.main(["run", str(gin_file), "--smoke", "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and "no_such_user_module" in err and "Traceback" not in err
