"""Complaint-entity extraction: which service-experience topics a customer text names.

The pipeline is a blank Chinese spaCy pipeline (jieba segmentation) with two entity
components: a statistical ``ner`` trained on weakly labelled review sentences
(``churnsignal.nlp.entity_training``), followed by an ``entity_ruler`` holding the
high-precision patterns in ``entity_patterns.jsonl``. The ruler runs last with
``overwrite_ents`` on, so a pattern match always wins where it overlaps a model guess and the
model only contributes the spans no pattern knows (the measured choice; see
``model_cards/entities.md``). Labels and span boundaries are defined in that model card.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jieba
import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Doc

from churnsignal.nlp.dialogue_topics import DialogueTopics

# jieba's own logger prints its dictionary loading to stderr at DEBUG level; a worker must
# not write that for every process start.
jieba.setLogLevel(logging.WARNING)

LABELS = ("QUALITY", "LOGISTICS", "SERVICE", "REFUND", "PRICE", "COMPETITOR", "ORDER_ID", "MONEY", "DURATION")
PATTERNS_FILE = resources.files("churnsignal.nlp") / "entity_patterns.jsonl"
SHIPPED_MODEL = resources.files("churnsignal.nlp") / "models" / "entities"

# spaCy's default NER model with a narrower tok2vec (64 instead of 96): the shipped
# directory stays under 3 MB and one CPU core trains it in about four minutes. Chinese tokens are
# short, so PREFIX (first character) and SUFFIX (last three) carry most of the subword signal.
NER_MODEL = {
    "@architectures": "spacy.TransitionBasedParser.v2",
    "state_type": "ner",
    "extra_state_tokens": False,
    "hidden_width": 64,
    "maxout_pieces": 2,
    "use_upper": True,
    "tok2vec": {
        "@architectures": "spacy.HashEmbedCNN.v2",
        "pretrained_vectors": None,
        "width": 64,
        "depth": 4,
        "embed_size": 2000,
        "window_size": 1,
        "maxout_pieces": 3,
        "subword_features": True,
    },
}


def build_pipeline(patterns_file: Path | None = None) -> Language:
    """Build the untrained pipeline: jieba tokenizer, ``ner``, then the pattern ``entity_ruler``.

    The ``ner`` component still has to be initialised and trained
    (``entity_training.train_entities``); the ruler is ready as built.
    """
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
    ner = nlp.add_pipe("ner", config={"model": NER_MODEL})
    for label in LABELS:  # ORDER_ID is rare in reviews; the label must exist all the same
        ner.add_label(label)
    ruler = nlp.add_pipe("entity_ruler", config={"overwrite_ents": True, "validate": True})
    ruler.add_patterns(list(srsly.read_jsonl(patterns_file or PATTERNS_FILE)))
    return nlp


def load(model_dir: Path | None = None) -> Language:
    """Load a trained pipeline: the shipped one, or one written by ``train_entities``.

    Loaded pipelines are cached per resolved directory, because loading costs a second of
    jieba dictionary and pattern compilation and workers call this for every batch.
    """
    if model_dir is None:
        with resources.as_file(SHIPPED_MODEL) as shipped:
            return _load_cached(str(Path(shipped).resolve()))
    return _load_cached(str(Path(model_dir).resolve()))


@lru_cache(maxsize=4)
def _load_cached(model_dir: str) -> Language:
    if not (Path(model_dir) / "config.cfg").is_file():
        raise FileNotFoundError(f"{model_dir}: no spaCy pipeline here (config.cfg missing)")
    return spacy.load(model_dir)


def dialogue_reader(model_dir: Path | None = None) -> DialogueTopics | None:
    """The reader of topics from the dialogue saved beside a pipeline (``nlp/dialogue_topics.py``),
    or None where the directory has none (a pipeline trained elsewhere, or before 0.1.2)."""
    if model_dir is None:
        with resources.as_file(SHIPPED_MODEL) as shipped:
            return _reader_cached(str(Path(shipped).resolve()))
    return _reader_cached(str(Path(model_dir).resolve()))


@lru_cache(maxsize=4)
def _reader_cached(model_dir: str) -> DialogueTopics | None:
    return DialogueTopics.load(Path(model_dir)) if DialogueTopics.saved_in(Path(model_dir)) else None


def spans(doc: Doc, own_names: Sequence[str] = ()) -> list[dict]:
    """The entities of one processed doc as ``{"text", "label", "start", "end"}`` dicts.

    ``start``/``end`` are character offsets into ``doc.text``, so
    ``doc.text[start:end] == entity["text"]`` always holds. A COMPETITOR span naming the
    deployer's own platform (holding one of ``own_names``, ``entities.own_names``) is left
    out: the patterns mark every platform they know, the deployer's own among them.
    """
    return [{"text": e.text, "label": e.label_, "start": e.start_char, "end": e.end_char} for e in doc.ents
            if not (e.label_ == "COMPETITOR" and any(name in e.text for name in own_names))]


def info(nlp: Language) -> dict:
    """Name and version of a loaded pipeline, for recording which model produced a result."""
    return {"name": nlp.meta.get("name", "unnamed"), "version": nlp.meta.get("version", "unversioned")}


def extract(texts: list[str], nlp: Language | None = None, batch_size: int = 256,
            own_names: Sequence[str] = ()) -> list[list[dict]]:
    """Return, for each text, its entities as ``spans`` dicts (offsets index the text as given)."""
    nlp = nlp or load()
    return [spans(doc, own_names) for doc in nlp.pipe(texts, batch_size=batch_size)]
