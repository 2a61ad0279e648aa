"""``churnsignal train entities`` on a few sentences: where its weak labels come from, and what it saves."""

from __future__ import annotations

import json
from pathlib import Path

from churnsignal.nlp import entity_training
from churnsignal.nlp.entities import PATTERNS_FILE

SENTENCES = [("快递太慢了，等了两个小时", "food_delivery", 0), ("质量很差，用了一天就坏了", "ecommerce", 0),
             ("前台服务态度不好", "hotels", 0)] * 4


def test_weak_labels_come_from_the_given_patterns_and_the_saved_ruler_holds_the_shipped_ones(tmp_path: Path,
                                                                                            monkeypatch) -> None:
    monkeypatch.setattr(entity_training, "train_sentences", lambda corpus_dir: SENTENCES)
    # An earlier pattern file that knew only one word, and knew it as a price word.
    earlier = tmp_path / "patterns.jsonl"
    earlier.write_text(json.dumps({"label": "PRICE", "pattern": [{"LOWER": "快递"}], "id": "old"}) + "\n")
    runs = {name: entity_training.train_entities(tmp_path, tmp_path / name, max_sentences=12, epochs=1, weak_patterns=given)
            for name, given in (("earlier", earlier), ("shipped", None))}
    assert runs["earlier"]["weak_entities"].get("PRICE", 0) >= 1 and "LOGISTICS" not in runs["earlier"]["weak_entities"]
    assert runs["shipped"]["weak_entities"].get("LOGISTICS", 0) >= 1 and runs["shipped"]["weak_entities"] != runs["earlier"]["weak_entities"]
    with PATTERNS_FILE.open(encoding="utf-8") as shipped:
        ids = {json.loads(line)["id"] for line in shipped if line.strip()}
    saved = tmp_path / "earlier" / "entity_ruler" / "patterns.jsonl"
    assert {json.loads(line)["id"] for line in saved.read_text(encoding="utf-8").splitlines() if line.strip()} == ids
