"""The sentiment model: a Chinese BERT, optionally blended with the n-gram model.

A model directory is whatever ``save_pretrained`` wrote for a
``BertForSequenceClassification`` — ours or any Hugging Face BERT fine-tune a user
points us at. If it also holds ``ngram.safetensors`` and ``blend.json`` (ours does),
the BERT's and the n-gram model's log-odds are combined by a logistic regression
fitted on dev text, which is also what calibrates ``negative_prob``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertForSequenceClassification
from transformers.utils import logging as transformers_logging

from churnsignal.nlp.ngram import CONFIG as NGRAM_CONFIG
from churnsignal.nlp.ngram import NgramSentiment

BLEND = "blend.json"
CARD = "churnsignal.json"
# Overlap between consecutive windows of a long text, as a share of the window.
WINDOW_OVERLAP = 0.25


class ModelLoadError(RuntimeError):
    """A model directory is missing, incomplete or not a BERT sequence classifier."""


def shipped_model_dir() -> Path:
    return Path(str(resources.files("churnsignal.nlp") / "models" / "sentiment"))


@dataclass(frozen=True)
class Blend:
    """negative log-odds = bert * bert_logit + ngram * ngram_logit + bias (fitted on dev).

    The blend of two-class models (0.1.0): BERT and n-gram log-odds of negative.
    """

    bert: float
    ngram: float
    bias: float

    def probabilities(self, bert: np.ndarray, ngram: np.ndarray, classes: Sequence[str],
                      lengths: np.ndarray) -> dict[str, np.ndarray]:
        negative_index = classes.index("negative")
        others = np.delete(bert, negative_index, axis=1)
        logit = self.bert * (bert[:, negative_index] - np.logaddexp.reduce(others, axis=1)) + self.ngram * ngram + self.bias
        return {"negative": _sigmoid(logit)}


@dataclass(frozen=True)
class ClassBlend:
    """A multinomial logistic regression over the BERT's class log-probabilities, the
    n-gram log-odds, and the n-gram's interactions with the BERT's neutral probability and
    with the text's length.

    The interactions are what let one blend serve reviews and chat: the n-gram, strong on
    reviews, reads many calm questions as negative, and the BERT's neutral probability and
    the length (a chat turn is short, a review long) say how far to listen to it. Fitted on
    a dev slice holding reviews and chat; it also calibrates the probabilities.
    """

    classes: tuple[str, ...]
    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]

    @staticmethod
    def features(bert: np.ndarray, ngram: np.ndarray, classes: Sequence[str], lengths: np.ndarray) -> np.ndarray:
        neutral = np.exp(bert[:, classes.index("neutral")])
        size = np.log1p(np.asarray(lengths, dtype=np.float64))
        return np.column_stack([bert, ngram, ngram * neutral, size, ngram * size])

    def probabilities(self, bert: np.ndarray, ngram: np.ndarray, classes: Sequence[str],
                      lengths: np.ndarray) -> dict[str, np.ndarray]:
        z = self.features(bert, ngram, classes, lengths) @ np.asarray(self.coef).T + np.asarray(self.intercept)
        p = np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True))
        return {name: p[:, i] for i, name in enumerate(self.classes)}


def read_blend(path: Path) -> Blend | ClassBlend | None:
    if not path.is_file():
        return None
    fields = json.loads(path.read_text())
    if "classes" in fields:
        return ClassBlend(tuple(fields["classes"]), tuple(map(tuple, fields["coef"])), tuple(fields["intercept"]))
    return Blend(**fields)


def _class_names(model: BertForSequenceClassification, directory: Path, negative_label: int | None) -> list[str]:
    """Name each output ``negative``, ``neutral``, ``positive`` or ``other`` from id2label.

    A user's checkpoint may say NEGATIVE/Neutral/pos or LABEL_0/LABEL_1; only the
    negative class is required, and ``negative_label`` names it when id2label cannot.
    """
    labels = {int(i): str(n).lower() for i, n in model.config.id2label.items()}
    names = ["other"] * len(labels)
    for i, label in labels.items():
        for name in ("negative", "neutral", "positive"):
            if label.startswith(name[:3]):
                names[i] = name
    if negative_label is not None:
        names = ["other" if n == "negative" else n for n in names]
        names[negative_label] = "negative"
    if names.count("negative") != 1:
        raise ModelLoadError(f"{directory}: cannot tell which label is negative from id2label={model.config.id2label}; "
                             "set sentiment.negative_label to its index")
    return names


class SentimentModel:
    """Calibrated probability that a support message is negative (and neutral, positive
    when the model has those classes)."""

    def __init__(self, directory: Path, *, max_tokens: int = 128, batch_size: int = 64,
                 negative_label: int | None = None, quantize: bool = True, context_tokens: int = 48) -> None:
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise ModelLoadError(f"{directory}: not a model directory (no config.json); expected what save_pretrained writes")
        # A CLI that streams JSON must not draw transformers' loading bar on every start.
        transformers_logging.disable_progress_bar()
        try:
            # fp32 whatever the stored dtype: fp16 matrix products are slow on CPUs.
            model = BertForSequenceClassification.from_pretrained(directory, local_files_only=True, dtype=torch.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{directory}: cannot load a BERT sequence classifier: {exc}") from exc
        self.classes = _class_names(model, directory, negative_label)
        self.negative_index = self.classes.index("negative")
        self.model = _int8(model.eval()) if quantize else model.eval()
        self.max_tokens, self.batch_size, self.context_tokens = max_tokens, batch_size, context_tokens
        self.ngram = NgramSentiment.load(directory) if (directory / NGRAM_CONFIG).is_file() else None
        self.blend = read_blend(directory / BLEND) if self.ngram is not None else None
        if isinstance(self.blend, ClassBlend) and "neutral" not in self.classes:
            raise ModelLoadError(f"{directory}: {BLEND} blends three classes but the BERT has no neutral class")
        card = json.loads((directory / CARD).read_text()) if (directory / CARD).is_file() else {}
        self.info = {"name": card.get("name", directory.name), "version": card.get("version", "unversioned"),
                     "fingerprint": fingerprint(directory), "quantized": quantize}

    @property
    def has_neutral(self) -> bool:
        return "neutral" in self.classes

    @torch.inference_mode()
    def bert_log_probs(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        """BERT class log-probabilities per text, shape (texts, classes).

        Long texts are split into overlapping windows whose log-probabilities are
        averaged, so a ticket is read whole. A context (the turns before a chat turn,
        oldest first) is read after the turn as a second segment, newest tokens kept, for
        turns that fit one window; the model was trained to read turns both with and
        without one.
        """
        if not texts:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens,
                             stride=int(self.max_tokens * WINDOW_OVERLAP), return_overflowing_tokens=True)
        owners = np.asarray(enc["overflow_to_sample_mapping"])
        ids = [list(i) for i in enc["input_ids"]]
        segments = [[0] * len(i) for i in ids]
        if contexts is not None:
            self._add_contexts(ids, segments, owners, contexts)
        window = np.empty((len(ids), len(self.classes)), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chunk], "token_type_ids": [segments[i] for i in chunk]},
                                       return_tensors="pt")
            logits = self.model(**batch).logits
            window[chunk] = torch.log_softmax(logits.float(), dim=-1).numpy()
        sums = np.stack([np.bincount(owners, weights=window[:, k], minlength=len(texts)) for k in range(window.shape[1])], 1)
        mean = sums / np.bincount(owners, minlength=len(texts))[:, None]
        return (mean - np.logaddexp.reduce(mean, axis=1, keepdims=True)).astype(np.float32)

    def _add_contexts(self, ids: list[list[int]], segments: list[list[int]], owners: np.ndarray,
                      contexts: Sequence[str]) -> None:
        if len(contexts) != len(set(owners.tolist())):
            raise ValueError(f"{len(contexts)} contexts for {len(set(owners.tolist()))} texts")
        windows_per_text = np.bincount(owners)
        for i, owner in enumerate(owners):
            if windows_per_text[owner] == 1 and contexts[owner]:
                extra = self.tokenizer(contexts[owner], add_special_tokens=False)["input_ids"][-self.context_tokens:]
                extra.append(self.tokenizer.sep_token_id)
                ids[i].extend(extra)
                segments[i].extend([1] * len(extra))

    def bert_logits(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        """BERT log-odds of negative against every other class, per text."""
        log_probs = self.bert_log_probs(texts, contexts)
        others = np.delete(log_probs, self.negative_index, axis=1)
        return (log_probs[:, self.negative_index] - np.logaddexp.reduce(others, axis=1)).astype(np.float32)

    def probabilities(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Calibrated class probabilities: always ``negative``; ``neutral`` and ``positive``
        too when the model has those classes. Without a blend, the BERT's own."""
        bert = self.bert_log_probs(texts, contexts)
        if self.blend is not None:
            lengths = np.array([len(t) for t in texts])
            return self.blend.probabilities(bert, self.ngram.decision_function(texts), self.classes, lengths)
        return {name: np.exp(bert[:, i]) for i, name in enumerate(self.classes) if name != "other"}

    def negative_probs(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
        return self.probabilities(texts, contexts)["negative"]


def fingerprint(directory: Path) -> str:
    """A short hash of every file in the model directory.

    Signals cached on disk are keyed by the model's info; a model retrained under the same
    version must not be served its predecessor's cached probabilities.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _int8(model: BertForSequenceClassification) -> torch.nn.Module:
    """Dynamic int8 for the linear layers: ~1.5x faster on CPU for ~0.004 accuracy (SPEC)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch 2.10+ flags eager quantisation as moving to torchao; it still works and is
        # the only CPU int8 path without another dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


@cache
def load_sentiment(directory: Path | None = None, max_tokens: int = 128, batch_size: int = 64,
                   negative_label: int | None = None, quantize: bool = True) -> SentimentModel:
    """Load (once per process and arguments) the shipped model or the one in ``directory``."""
    return SentimentModel(directory or shipped_model_dir(), max_tokens=max_tokens, batch_size=batch_size,
                          negative_label=negative_label, quantize=quantize)
