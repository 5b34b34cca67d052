"""FSDP beyond the strategy contract, and what every strategy's checkpoints share: bf16 compute over fp32 master
weights with CPU offload, checkpoints of earlier versions (``model.pt``), ``strategy = "auto"`` on CPUs, mistakes.

tests/test_train_strategies.py runs the contract (kills, two processes, resumes on 1 and 3, the export).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from overton.cli import main
from overton.train.checkpoint import MARKER, CheckpointManager
from tests import test_train_run
from tests.test_train_run import checkpoint_state, losses, run, weights, workspace
from tests.test_train_strategies import SETTINGS

base = test_train_run.base


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> Path:
    """The default strategy on one process, fp32: what the others are compared with."""
    ws = workspace(base, tmp_path_factory.mktemp("ddp") / "ws", **SETTINGS)
    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert "\nstrategy auto takes ddp (on CPUs: no GPU memory to plan for)\n" in done.stdout
    return ws


def test_bf16_compute_over_fp32_shards_offloaded_to_the_cpu(base, reference, tmp_path: Path):
    ws = workspace(base, tmp_path / "ws", strategy="fsdp", precision="bf16", offload=True, **SETTINGS)
    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert "; bf16 on cpu; fsdp (sharded over 1, bf16 compute, fp32 master weights, CPU offload); attention sdpa\n" \
        in done.stdout
    got, fp32 = losses(ws), losses(reference)
    assert all(got[s] == pytest.approx(fp32[s], rel=0.02) for s in fp32)  # bf16 matmuls: close to fp32
    assert any(got[s] != fp32[s] for s in fp32)  # and computed in bf16 indeed
    # the checkpoint holds the fp32 master weights and fp32 AdamW moments; the export is bf16
    state = checkpoint_state(ws / "train" / "checkpoints" / "step-000012")
    assert {t.dtype for t in state["model"].values()} == {torch.float32}
    assert {m["exp_avg"].dtype for m in state["optimizer"]["state"].values()} == {torch.float32}
    config = json.loads((ws / "train" / "model" / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and {t.dtype for t in weights(ws).values()} == {torch.bfloat16}
    exported = weights(ws)
    assert all(torch.equal(exported[k], v.to(torch.bfloat16)) for k, v in state["model"].items() if k in exported)


def _to_earlier_format(folder: Path) -> None:
    """Rewrite a committed checkpoint as earlier versions wrote it: model.pt and optimizer.pt (torch.save of the
    whole states, the optimizer's keyed by parameter index), committed again with the same meta."""
    state = checkpoint_state(folder)
    groups = state["optimizer"]["param_groups"]
    index = {name: i for i, name in enumerate(name for group in groups for name in group["params"])}
    optimizer = {"state": {index[name]: value for name, value in state["optimizer"]["state"].items()},
                 "param_groups": [{**group, "params": [index[n] for n in group["params"]]} for group in groups]}
    meta = json.loads((folder / MARKER).read_text())["meta"]
    step = int(folder.name[5:])

    def write(tmp: Path) -> None:
        torch.save(state["model"], tmp / "model.pt")
        torch.save(optimizer, tmp / "optimizer.pt")
        for small in ("scheduler.pt", "rng-rank0.pt"):
            shutil.copy(folder / small, tmp / small)

    CheckpointManager(folder.parent).save(step, write, meta)


def test_a_checkpoint_of_an_earlier_version_resumes_exactly_and_fsdp_says_how(reference, tmp_path: Path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(reference, ws)
    for later in ("step-000008", "step-000012"):
        shutil.rmtree(ws / "train" / "checkpoints" / later)
    shutil.rmtree(ws / "train" / "model")
    checkpoint = ws / "train" / "checkpoints" / "step-000004"
    _to_earlier_format(checkpoint)
    assert sorted(p.name for p in checkpoint.iterdir()) == [MARKER, "model.pt", "optimizer.pt", "rng-rank0.pt",
                                                            "scheduler.pt"]

    toml = (ws / "overton.toml").read_text()
    (ws / "overton.toml").write_text(toml + 'strategy = "fsdp"\n')
    assert main(["train", "-w", str(ws), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error == (f"overton: error: {checkpoint}: a checkpoint of an earlier version (model.pt); resume it with "
                     "[train] strategy = \"ddp\" until its next save, then fsdp can go on from there\n")

    (ws / "overton.toml").write_text(toml)
    done = run(ws)
    assert done.returncode == 0, done.stderr
    assert "resuming at step 4:" in done.stdout
    assert losses(ws) == losses(reference)
    expected, got = weights(reference), weights(ws)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)


def test_a_strategy_that_is_not_there_is_one_line(base, tmp_path: Path, capsys, monkeypatch):
    from overton.train import strategies

    monkeypatch.setattr(strategies, "STRATEGIES", {"ddp": strategies.STRATEGIES["ddp"]})
    ws = workspace(base, tmp_path / "ws", strategy="fsdp", steps=2)
    assert main(["train", "-w", str(ws), "--quiet"]) == 2
    assert capsys.readouterr().err == ("overton: error: [train] strategy 'fsdp' is not available in this version "
                                       "(available: auto, ddp)\n")
    (ws / "overton.toml").write_text((ws / "overton.toml").read_text().replace('"fsdp"', '"zero"'))
    assert main(["train", "-w", str(ws), "--quiet"]) == 2
    assert capsys.readouterr().err == (f"overton: error: {ws}/overton.toml: setting 'train.strategy': String should "
                                       "match pattern '^(auto|ddp|fsdp|lora)$' (got 'zero')\n")
