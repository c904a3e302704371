"""results.json: round trip, the exact JSON layout, atomic writes, load errors."""

import json

import pytest

from lightning_dnas.app import results
from lightning_dnas.app.results import FORMAT, ResultsError, RunResult, make_search_id
from tests.app.runs import make_run


def run() -> RunResult:
    return make_run(search_id="abc", params=100, metrics={"acc": 0.9, "loss": 0.3})


def test_round_trip_and_layout(tmp_path):
    path = tmp_path / "results.json"
    original = run()
    original.save(path)
    assert RunResult.load(path) == original
    data = json.loads(path.read_text())
    assert next(iter(data)) == "format" and data["format"] == FORMAT
    assert set(data) == {"format", "method", "task", "data", "model", "lambdas", "icv",
                         "softmax", "seed", "finetune_seed", "search_id", "stages", "final",
                         "reference", "arch", "wall_s"}  # fmt: skip
    assert data["final"] == {"params": 100, "macs": 1000, "val": {"acc": 0.9, "loss": 0.3},
                             "test": {"acc": 0.9, "loss": 0.3}}  # fmt: skip
    assert data["stages"][1] == {
        "name": "finetune", "kind": "finetune", "epochs": 2, "params": 100, "macs": 1000,
        "val": {"acc": 0.9, "loss": 0.3}, "test": {"acc": 0.9, "loss": 0.3},
    }  # fmt: skip
    assert data["lambdas"] == {"pit": {"params": 1e-6}}


def test_save_leaves_no_temp_file(tmp_path):
    run().save(tmp_path / "results.json")
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.json"
    run().save(path)
    before = path.read_bytes()
    # json.dump streams: the "finetune" stage's metric is reached after part of the file has
    # been written, so this fails mid-write.
    broken = make_run(search_id="new", params=7, metrics={"acc": object()})
    with pytest.raises(TypeError):
        broken.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_failure_at_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    run().save(path)
    before = path.read_bytes()

    def crash(*_args):
        raise OSError("disk gone")

    monkeypatch.setattr(results.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        make_run(search_id="new", params=7, metrics={"acc": 0.1}).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["final"].pop("test"), "missing key `final.test`"),
        (lambda d: d.pop("search_id"), "missing key `search_id`"),
        (lambda d: d["stages"][1].pop("kind"), "missing key `stages[1].kind`"),
        (lambda d: d.update(format="other/1"), "format 'other/1', expected"),
        (lambda d: d.update(method="darts"), "`method` is 'darts', expected one of pit"),
        (lambda d: d["final"].update(params=1.5), "`final.params` must be an integer"),
        (lambda d: d["final"]["val"].update(acc="high"), "`final.val.acc` must be a number"),
        (lambda d: d["lambdas"]["pit"].update(params=None), "`lambdas.pit.params` must be"),
        (lambda d: d.update(seed=True), "`seed` must be an integer"),
    ],
)
def test_load_error_names_file_and_key(tmp_path, edit, message):
    path = tmp_path / "results.json"
    data = run().to_dict()
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError) as err:
        RunResult.load(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)


def test_load_error_on_broken_json(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"format": "lightning_dnas.res')
    with pytest.raises(ResultsError, match=f"{path}: cannot read"):
        RunResult.load(path)


def test_nullable_fields_load(tmp_path):
    path = tmp_path / "results.json"
    data = run().to_dict() | {"finetune_seed": None, "arch": None, "icv": 0}
    path.write_text(json.dumps(data))
    loaded = RunResult.load(path)
    assert loaded.finetune_seed is None and loaded.arch is None and loaded.icv == 0.0


def test_search_id_ignores_key_order():
    a = make_search_id({"lambdas": {"pit": {"params": 1e-6}}, "seed": 0})
    b = make_search_id({"seed": 0, "lambdas": {"pit": {"params": 1e-6}}})
    assert a == b and len(a) == 12
    assert make_search_id({"seed": 1, "lambdas": {"pit": {"params": 1e-6}}}) != a
