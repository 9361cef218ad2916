"""Each job's parameters are declared once, as one dataclass (sharpdarts.engine.job_params),
and every other place reads that declaration: the gin entry's signature, the validation, the
job's constructor (``job.params``) and the record (the operative config of a run).

The checks below fail when a parameter is declared but missing elsewhere: a job entry that
declares its parameters some other way, a parameter gin does not bind or record, a kind the
validation does not check by binding name, a parameter the job never reads.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import textwrap
from pathlib import Path

import gin
import pytest
import torch
from gin import config as gin_config

from sharpdarts.core import config, validate
from sharpdarts.engine import job_params
from sharpdarts.engine.data.bundle import build_datasets
from sharpdarts.engine.job_params import REQUIRED, UNCHECKED
from sharpdarts.errors import UserError
from sharpdarts.face import runner  # imports (and registers) every job

REPO = Path(__file__).resolve().parents[1]


def _configurable(selector: str):
    return gin_config._REGISTRY.get_match(selector)  # noqa: SLF001


def _job_entries() -> dict[str, object]:
    """Every gin configurable of the engine that builds a job (it takes ``build_only``)."""
    found = {}
    for selector, configurable in gin_config._REGISTRY.items():  # noqa: SLF001
        wrapped = configurable.wrapped
        if (
            selector.startswith("sharpdarts.engine.")
            and inspect.isfunction(wrapped)
            and "build_only" in inspect.signature(wrapped).parameters
        ):
            found[configurable.name] = configurable.wrapper
    return found


JOBS = sorted(_job_entries())


def test_the_jobs_are_found():
    assert {
        "search",
        "train",
        "evaluate_checkpoint",
        "lm_search",
        "lm_train",
        "lm_evaluate_checkpoint",
        "random_search",
    } <= set(JOBS)


@pytest.mark.parametrize("name", JOBS)
def test_a_job_declares_its_parameters_in_one_dataclass(name):
    entry = _job_entries()[name]
    params_class = job_params.params_of(entry)
    assert params_class is not None, f"{name} does not declare its parameters with @job_entry"
    assert dataclasses.is_dataclass(params_class)
    assert params_class.__dataclass_params__.frozen
    fields = dataclasses.fields(params_class)
    # The gin signature is the declaration: every field, keyword-only, with its default.
    signature = inspect.signature(entry).parameters
    keyword_only = {n: p.default for n, p in signature.items() if p.kind is p.KEYWORD_ONLY}
    assert keyword_only == job_params.defaults(params_class)
    # Each one has a kind (or is explicitly unchecked) and its documentation.
    for f in fields:
        kind = f.metadata.get("kind")
        assert kind is UNCHECKED or isinstance(kind, validate.Kind), (name, f.name)
        assert f.metadata["doc"].strip(), (name, f.name)
        assert f"    {f.name} (" in entry.__doc__, (name, f.name)
    # The entry's own parameters (run, seed, data, ...) are the caller's, never a binding's.
    for own in set(signature) - set(keyword_only):
        with pytest.raises(ValueError, match="denylisted"):
            gin.parse_config(f"{name}.{own} = 1")


@pytest.mark.parametrize("name", JOBS)
def test_each_checked_parameter_is_refused_by_its_binding_name(name):
    entry = _job_entries()[name]
    kinds = job_params.kinds(job_params.params_of(entry))
    checked = {n: k for n, k in kinds.items() if k is not UNCHECKED}
    assert validate.declared()[_configurable(name).wrapped] == checked
    for param, kind in checked.items():
        assert kind.problem("x") is not None  # no job parameter is a free-form string
        gin.clear_config()
        gin.parse_config(f"{name}.{param} = 'x'")
        with pytest.raises(UserError, match=f"The binding {name}.{param} = 'x' is refused"):
            validate.check_config()


def _reads(job_class: type) -> set[str]:
    """The attributes read off a job's parameters (``p.X``, ``params.X``, ``self.params.X``)
    in the job's class and its bases."""
    reads = set()
    for cls in job_class.__mro__:
        if cls is object or not cls.__module__.startswith(("sharpdarts.", "test_job_params")):
            continue
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(cls)))):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id in ("p", "params")) or (
                isinstance(owner, ast.Attribute) and owner.attr == "params"
            ):
                reads.add(node.attr)
    return reads


def test_the_read_check_sees_a_parameter_no_one_reads():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Params:
        used: int = job_params.param(validate.COUNT, 1, "read in the constructor.")
        later: int = job_params.param(validate.COUNT, 1, "read while fitting.")
        dead: int = job_params.param(UNCHECKED, 0, "read by nothing.")

    class Job:
        def __init__(self, params):
            self.params = p = params
            self.n = p.used

        def fit(self):
            return self.params.later

    assert {f.name for f in dataclasses.fields(Params)} - _reads(Job) == {"dead"}


def test_a_parameter_outside_the_declaration_is_refused():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Loose:
        epochs: int = 1  # not declared by param(): no kind, no doc

    with pytest.raises(TypeError, match="not declared by param"):
        job_params.job_entry(Loose)
    with pytest.raises(TypeError, match="validate.Kind or UNCHECKED"):
        job_params.param("an integer", 1, "a kind that is not one")

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Declared:
        epochs: int = job_params.param(validate.EPOCHS, REQUIRED, "epochs.")

    with pytest.raises(TypeError, match="itself and as parameters"):
        job_params.job_entry(Declared)(lambda epochs=1, **params: None)


# ---- the build and the record ------------------------------------------------------------------
def _experiment(name: str, tmp_path):
    configured = runner.configure(name, [], smoke=True, results=str(tmp_path))
    return runner.build_checked(configured, seed=0, data_root=None)


def _evaluate_cifar(tmp_path):
    from sharpdarts.engine import evaluation
    from sharpdarts.nn import models

    gin.parse_config(
        "evaluate_checkpoint.network = @NetworkCIFAR\nNetworkCIFAR.C = 8\n"
        "NetworkCIFAR.layers = 3\nNetworkCIFAR.genotype = 'SHARPSEPCONV_DARTS'"
    )
    path = tmp_path / "weights.pt"
    torch.save({"model": models.NetworkCIFAR(num_classes=10, in_channels=3).state_dict()}, path)
    data = build_datasets(name="synthetic", synthetic_size=(8, 8))
    built = evaluation.evaluate_checkpoint(checkpoint=path, build_only=True, data=data)
    config.check_bindings_used()  # the bindings above are the ones the job reads
    return built


def _evaluate_lm(tmp_path):
    from sharpdarts.engine import lm_jobs
    from sharpdarts.nn.models import RNNModel

    gin.parse_config(
        "lm_evaluate_checkpoint.network = @RNNModel\nRNNModel.ninp = 16\n"
        "RNNModel.nhid = 16\nRNNModel.nhidlast = 16"
    )
    data = build_datasets(name="synthetic_text")
    path = tmp_path / "weights.pt"
    torch.save({"model": RNNModel(ntoken=data.train.ntokens).state_dict()}, path)
    built = lm_jobs.lm_evaluate_checkpoint(checkpoint=path, build_only=True, data=data)
    config.check_bindings_used()
    return built


BUILDS = {
    "search": lambda tmp_path: _experiment("demo/search", tmp_path),
    "train": lambda tmp_path: _experiment("cifar10/darts_v2", tmp_path),
    "lm_search": lambda tmp_path: _experiment("demo/lm_search", tmp_path),
    "lm_train": lambda tmp_path: _experiment("ptb/darts_v2", tmp_path),
    "random_search": lambda tmp_path: _experiment("cifar10/darts_random_search", tmp_path),
    "evaluate_checkpoint": _evaluate_cifar,
    "lm_evaluate_checkpoint": _evaluate_lm,
}


def test_every_job_has_a_build_here():
    assert set(BUILDS) == set(JOBS)


@pytest.mark.parametrize("name", JOBS)
def test_the_built_job_and_the_record_hold_every_declared_parameter(name, tmp_path):
    built = BUILDS[name](tmp_path)
    entry = _job_entries()[name]
    params_class = job_params.params_of(entry)
    # The job's constructor took the declaration, whole.
    assert type(built.params) is params_class
    # The record: gin's operative config (operative_config.gin of a run) lists every declared
    # parameter of the job, with the value the job received.
    selector = _configurable(name).selector
    with gin_config._OPERATIVE_CONFIG_LOCK:  # noqa: SLF001
        recorded = dict(gin_config._OPERATIVE_CONFIG[("", selector)])  # noqa: SLF001
    assert set(recorded) == {f.name for f in dataclasses.fields(params_class)}
    bound = config.bound_values(selector)
    for param, value in recorded.items():
        if ("", param) in bound:
            value, macros = bound[("", param)]  # a macro followed to its value
            if macros is None:
                continue  # a reference (@fn), known only when called
        assert getattr(built.params, param) == value, param
    # And the job reads every parameter it declares (none is a binding that does nothing).
    unread = {f.name for f in dataclasses.fields(params_class)} - _reads(type(built))
    assert not unread, f"{type(built).__name__} never reads {sorted(unread)}"


def test_every_shipped_job_reference_names_a_declared_job():
    referenced = set()
    for path in [*(REPO / "experiments").rglob("*.gin"), *(REPO / "gin").rglob("*.gin")]:
        text = path.read_text(encoding="utf-8")
        referenced |= set(
            re.findall(r"^\s*(?:experiment\.job|[\w/]*\.trainer)\s*=\s*@(\w+)", text, flags=re.M)
        )
    assert referenced and referenced <= set(JOBS), referenced - set(JOBS)
