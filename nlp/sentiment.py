"""The sentiment model: a Chinese BERT, optionally blended with the n-gram model.

A model directory is whatever ``save_pretrained`` wrote for a
``BertForSequenceClassification`` — ours or any Hugging Face BERT fine-tune a user
points us at. If it also holds ``ngram.safetensors`` and ``blend.json`` (ours does),
the BERT's and the n-gram model's log-odds (and a chat n-gram's, ``chat_ngram.*``) are
combined by a logistic regression fitted on dev text, which is also what calibrates
``negative_prob``. Reviews have a reading of their own when the directory holds a review
n-gram (``review_ngram.*``) and the blend a review part.
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
from transformers import AutoTokenizer, BertForSequenceClassification, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from churnsignal.nlp.ngram import NgramSentiment
# The turns before a message that are read with it: as many as the chat gold set's labellers saw.
from churnsignal.nlp.support_chat import CONTEXT_TURNS

BLEND = "blend.json"
CARD = "churnsignal.json"
# The second n-gram part, trained on support chat and questions only (``chat_ngram.*``).
CHAT_NGRAM = "chat_ngram"
# The chat n-gram is read on texts up to this long: 96 % of the turns and questions it
# learned from. Longer texts (reviews, ticket bodies) are read by the other parts only.
CHAT_NGRAM_CHARS = 40
# The n-gram part that knows only reviews, read with the BERT on messages from the review channel.
REVIEW_NGRAM = "review_ngram"
# The n-gram part that reads the turns before a message (customers' and agents'), not the
# message: it learned which dialogues complaints come in (``context_ngram.*``).
CONTEXT_NGRAM = "context_ngram"
# The channel whose messages are read as reviews; every other channel is read as dialogue.
REVIEW = "review"
# Overlap between consecutive windows of a long text, as a share of the window.
WINDOW_OVERLAP = 0.25
# A message read with the turns before it as the BERT's second segment (:meth:`SentimentModel.bert_pair_log_probs`)
# keeps at most this many of its own tokens and the newest this many of theirs: how it was fine-tuned.
PAIR_TEXT_TOKENS = 96
PAIR_CONTEXT_TOKENS = 48


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
class ReviewBlend:
    """negative log-odds of a review = coef · [BERT class log-probabilities, review n-gram
    log-odds] + intercept, fitted on the reviews' dev slice (which it also calibrates on).

    Reviews are a register of their own: long opinions, rarely a question. The parts that
    learned chat read them less well (the chat-adapted n-gram and blend lost about 0.01 of
    review accuracy against the review-only 0.1.0); an n-gram that knows only reviews, read
    with the BERT, reads them as well as 0.1.0 did. The helpdesk says which messages are
    reviews, so nothing has to guess.
    """

    coef: tuple[float, ...]
    intercept: float

    def negative(self, bert: np.ndarray, review_ngram: np.ndarray) -> np.ndarray:
        return _sigmoid(np.column_stack([bert, review_ngram]) @ np.asarray(self.coef) + self.intercept)


@dataclass(frozen=True)
class ClassBlend:
    """A multinomial logistic regression over the BERT's class log-probabilities, the
    n-gram log-odds, and the n-gram's interactions with the BERT's neutral probability and
    with the text's length; with ``chat_ngram``, also over the chat n-gram's log-odds and
    their product with the length, on texts of up to ``CHAT_NGRAM_CHARS``; with
    ``context``, also over what the customer said earlier in the ticket
    (:func:`earlier_features`); with ``context_ngram``, also over the context n-gram's
    log-odds for the turns before the message (:func:`context_text`).

    The interactions are what let one blend serve reviews and chat: the n-gram, strong on
    reviews, reads many calm questions as negative, and the BERT's neutral probability and
    the length (a chat turn is short, a review long) say how far to listen to it. The
    earlier turns are what make "看了吗" chasing after a complaint and a question after a
    question; the context n-gram adds the agents' side ("请您稍等" and then "看了吗" is
    chasing). The chat n-gram knows the chat register that the review-heavy parts blur.
    Fitted on a dev slice holding reviews and chat; it also calibrates the probabilities.
    ``review``, when set, is how a message from the review channel is read instead. With
    ``bert_pair`` (0.2.6), also over the BERT's class log-probabilities for the message read
    with the turns before it as its second segment (:func:`pair_context`), zeros without
    one: the BERT learned chat both ways, and the two readings disagree usefully.
    """

    classes: tuple[str, ...]
    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    context: bool = False
    chat_ngram: bool = False
    review: ReviewBlend | None = None
    context_ngram: bool = False
    bert_pair: bool = False

    @staticmethod
    def features(bert: np.ndarray, ngram: np.ndarray, classes: Sequence[str], lengths: np.ndarray,
                 earlier: np.ndarray | None = None, chat: np.ndarray | None = None,
                 context_odds: np.ndarray | None = None, pair: np.ndarray | None = None) -> np.ndarray:
        """One row per text; ``chat`` (chat n-gram log-odds), ``earlier`` (from
        :func:`earlier_features`), ``context_odds`` (context n-gram log-odds, zero for a text
        with no turns before it) and ``pair`` (BERT class log-probabilities read with those
        turns, zeros without) add their columns."""
        neutral = np.exp(bert[:, classes.index("neutral")])
        size = np.log1p(np.asarray(lengths, dtype=np.float64))
        columns = [bert, ngram, ngram * neutral, size, ngram * size]
        if chat is not None:
            short = np.asarray(lengths) <= CHAT_NGRAM_CHARS
            columns += [chat * short, chat * short * size]
        if earlier is not None:
            columns.append(earlier)
        if context_odds is not None:
            columns.append(context_odds)
        if pair is not None:
            columns.append(pair)
        return np.column_stack(columns)

    def probabilities(self, bert: np.ndarray, ngram: np.ndarray, classes: Sequence[str],
                      lengths: np.ndarray, earlier: np.ndarray | None = None,
                      chat: np.ndarray | None = None, context_odds: np.ndarray | None = None,
                      pair: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``earlier``, ``context_odds`` and ``pair`` are read only by a blend fitted with them;
        none means no turns before. ``chat`` is required by a blend fitted with the chat n-gram."""
        if self.context and earlier is None:
            earlier = np.zeros((len(bert), EARLIER_COLUMNS))
        if self.context_ngram and context_odds is None:
            context_odds = np.zeros(len(bert))
        if self.bert_pair and pair is None:
            pair = np.zeros_like(bert)
        if self.chat_ngram and chat is None:
            raise ValueError("this blend reads the chat n-gram's log-odds: pass chat")
        x = self.features(bert, ngram, classes, lengths, earlier if self.context else None,
                          chat if self.chat_ngram else None, context_odds if self.context_ngram else None,
                          pair if self.bert_pair else None)
        z = x @ np.asarray(self.coef).T + np.asarray(self.intercept)
        p = np.exp(z - np.logaddexp.reduce(z, axis=1, keepdims=True))
        return {name: p[:, i] for i, name in enumerate(self.classes)}


# Columns of earlier_features: the strongest BERT and n-gram negative log-odds among the
# customer's earlier turns, and how many there were.
EARLIER_COLUMNS = 3


def earlier_turns(turns: Sequence[tuple[str, str]]) -> list[str]:
    """The customer's own texts among the last ``CONTEXT_TURNS`` turns before a message.

    Only the customer's: an agent's apology says the agent is polite, not that this
    customer is unhappy (measured: the agent's last turn did not help on chat dev).
    """
    return [text for author, text in list(turns)[-CONTEXT_TURNS:] if author == "customer" and text.strip()]


def earlier_features(bert_logits: np.ndarray, ngram: np.ndarray, owners: Sequence[int], count: int) -> np.ndarray:
    """Per message, from the scores of the customer's earlier turns (``owners[i]`` is the
    message turn ``i`` came before): max BERT log-odds, max n-gram log-odds, log(1 + turns).

    A message with no earlier turn gets zeros, whether it opens its ticket or was given
    alone: only what the customer said before moves a reading (a column telling the two
    apart added nothing on chat dev and read calm one-message tickets as complaints).
    """
    out = np.zeros((count, EARLIER_COLUMNS))
    out[:, 0] = out[:, 1] = -np.inf
    for i, owner in enumerate(owners):
        out[owner, 0] = max(out[owner, 0], bert_logits[i])
        out[owner, 1] = max(out[owner, 1], ngram[i])
        out[owner, 2] += 1
    out[np.isinf(out)] = 0.0
    out[:, 2] = np.log1p(out[:, 2])
    return out


def context_text(turns: Sequence[tuple[str, str]]) -> str:
    """The last ``CONTEXT_TURNS`` turns before a message as the context n-gram reads them:
    ``C:`` before the customer's, ``A:`` before anyone else's; empty without a turn."""
    said = [(author, text) for author, text in list(turns)[-CONTEXT_TURNS:] if text.strip()]
    return " ".join(("C:" if author == "customer" else "A:") + text for author, text in said)


def pair_context(turns: Sequence[tuple[str, str]]) -> str:
    """The last ``CONTEXT_TURNS`` turns before a message as the BERT's second segment:
    ``customer: …`` and ``agent: …``, as the chat gold set stores them and the BERT was
    fine-tuned on them; empty without a turn."""
    said = [(author, text) for author, text in list(turns)[-CONTEXT_TURNS:] if text.strip()]
    return " ".join(f"{'customer' if author == 'customer' else 'agent'}: {text}" for author, text in said)


def pair_encoding(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], contexts: Sequence[str],
                  text_tokens: int = PAIR_TEXT_TOKENS, context_tokens: int = PAIR_CONTEXT_TOKENS,
                  ) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids and token type ids of ``[CLS] text [SEP] context [SEP]`` per text, the text cut
    to its first ``text_tokens`` tokens and the context to its newest ``context_tokens``;
    ``[CLS] text [SEP]`` where the context is empty. The one encoding the fine-tune learns
    the pair reading from and :meth:`SentimentModel.bert_pair_log_probs` reads it with."""
    first = tokenizer(list(texts), truncation=True, max_length=text_tokens)["input_ids"]
    # A token is at least one character and a chat token rarely over eight: the newest
    # 8 x context_tokens characters hold the newest tokens and stay under the BERT's 512.
    second = tokenizer([context[-8 * context_tokens:] for context in contexts], add_special_tokens=False)["input_ids"]
    ids = [list(a) + (list(b[-context_tokens:]) + [tokenizer.sep_token_id] if context else [])
           for a, b, context in zip(first, second, contexts)]
    segments = [[0] * len(a) + [1] * (len(i) - len(a)) for a, i in zip(first, ids)]
    return ids, segments


def read_blend(path: Path) -> Blend | ClassBlend | None:
    if not path.is_file():
        return None
    fields = json.loads(path.read_text())
    if "classes" in fields:
        review = fields.get("review")
        return ClassBlend(tuple(fields["classes"]), tuple(map(tuple, fields["coef"])), tuple(fields["intercept"]),
                          bool(fields.get("context", False)), bool(fields.get("chat_ngram", False)),
                          None if review is None else ReviewBlend(tuple(review["coef"]), float(review["intercept"])),
                          bool(fields.get("context_ngram", False)), bool(fields.get("bert_pair", False)))
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
                 negative_label: int | None = None, quantize: bool = True) -> None:
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
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.ngram = NgramSentiment.load(directory) if NgramSentiment.saved_in(directory) else None
        self.blend = read_blend(directory / BLEND) if self.ngram is not None else None
        if isinstance(self.blend, ClassBlend) and "neutral" not in self.classes:
            raise ModelLoadError(f"{directory}: {BLEND} blends three classes but the BERT has no neutral class")
        # Loaded whenever present: the blend that reads it is fitted after it is written.
        self.chat_ngram = NgramSentiment.load(directory, CHAT_NGRAM) if NgramSentiment.saved_in(directory, CHAT_NGRAM) else None
        if isinstance(self.blend, ClassBlend) and self.blend.chat_ngram and self.chat_ngram is None:
            raise ModelLoadError(f"{directory}: {BLEND} reads a chat n-gram but {CHAT_NGRAM}.json is missing")
        self.review_ngram = (NgramSentiment.load(directory, REVIEW_NGRAM)
                             if NgramSentiment.saved_in(directory, REVIEW_NGRAM) else None)
        if self.reads_reviews and self.review_ngram is None:
            raise ModelLoadError(f"{directory}: {BLEND} reads reviews with a review n-gram but {REVIEW_NGRAM}.json is missing")
        self.context_ngram = (NgramSentiment.load(directory, CONTEXT_NGRAM)
                              if NgramSentiment.saved_in(directory, CONTEXT_NGRAM) else None)
        if isinstance(self.blend, ClassBlend) and self.blend.context_ngram and self.context_ngram is None:
            raise ModelLoadError(f"{directory}: {BLEND} reads a context n-gram but {CONTEXT_NGRAM}.json is missing")
        card = json.loads((directory / CARD).read_text()) if (directory / CARD).is_file() else {}
        self.info = {"name": card.get("name", directory.name), "version": card.get("version", "unversioned"),
                     "fingerprint": fingerprint(directory), "quantized": quantize}

    @property
    def has_neutral(self) -> bool:
        return "neutral" in self.classes

    @property
    def reads_context(self) -> bool:
        """Whether the turns before a message change its probabilities (a blend fitted with them)."""
        return isinstance(self.blend, ClassBlend) and (self.blend.context or self.blend.context_ngram)

    @property
    def reads_reviews(self) -> bool:
        """Whether a message from the review channel has a reading of its own (:class:`ReviewBlend`)."""
        return isinstance(self.blend, ClassBlend) and self.blend.review is not None

    @torch.inference_mode()
    def bert_log_probs(self, texts: Sequence[str]) -> np.ndarray:
        """BERT class log-probabilities per text, shape (texts, classes).

        Long texts are split into overlapping windows whose log-probabilities are
        averaged, so a ticket is read whole.
        """
        if not texts:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens,
                             stride=int(self.max_tokens * WINDOW_OVERLAP), return_overflowing_tokens=True)
        owners = np.asarray(enc["overflow_to_sample_mapping"])
        window = self._forward([list(i) for i in enc["input_ids"]])
        sums = np.stack([np.bincount(owners, weights=window[:, k], minlength=len(texts)) for k in range(window.shape[1])], 1)
        mean = sums / np.bincount(owners, minlength=len(texts))[:, None]
        return (mean - np.logaddexp.reduce(mean, axis=1, keepdims=True)).astype(np.float32)

    @torch.inference_mode()
    def bert_pair_log_probs(self, texts: Sequence[str], contexts: Sequence[str]) -> np.ndarray:
        """BERT class log-probabilities per text read with ``contexts[i]`` (:func:`pair_context`)
        as its second segment, the text cut to ``PAIR_TEXT_TOKENS`` and the context to its newest
        ``PAIR_CONTEXT_TOKENS``; zeros where the context is empty."""
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        given = [i for i, context in enumerate(contexts) if context]
        if not given:
            return out
        out[given] = self._forward(*pair_encoding(self.tokenizer, [texts[i] for i in given], [contexts[i] for i in given]))
        return out

    @torch.inference_mode()
    def _forward(self, ids: list[list[int]], segments: list[list[int]] | None = None) -> np.ndarray:
        """Class log-probabilities per encoded input, in batches of similar length so that
        padding stays short; ``segments`` are token type ids (none: all zero)."""
        out = np.empty((len(ids), len(self.classes)), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            inputs = {"input_ids": [ids[i] for i in chunk]}
            if segments is not None:
                inputs["token_type_ids"] = [segments[i] for i in chunk]
            logits = self.model(**self.tokenizer.pad(inputs, return_tensors="pt")).logits
            out[chunk] = torch.log_softmax(logits.float(), dim=-1).numpy()
        return out

    def bert_logits(self, texts: Sequence[str]) -> np.ndarray:
        """BERT log-odds of negative against every other class, per text."""
        return self._logits(self.bert_log_probs(texts))

    def _logits(self, log_probs: np.ndarray) -> np.ndarray:
        others = np.delete(log_probs, self.negative_index, axis=1)
        return (log_probs[:, self.negative_index] - np.logaddexp.reduce(others, axis=1)).astype(np.float32)

    def probabilities(self, texts: Sequence[str],
                      contexts: Sequence[Sequence[tuple[str, str]]] | None = None,
                      channels: Sequence[str | None] | None = None) -> dict[str, np.ndarray]:
        """Calibrated class probabilities: always ``negative``; ``neutral`` and ``positive``
        too when the model has those classes. Without a blend, the BERT's own.

        ``contexts``, when given, holds for each text the ``(author, text)`` turns before it
        in its ticket, oldest first. A blend fitted with context reads the customer's own
        turns among the last ``CONTEXT_TURNS`` (:func:`earlier_turns`), and with a context
        n-gram every turn among them (:func:`context_text`); other models ignore them.
        ``channels``, when given, holds each text's helpdesk channel: a model that
        :attr:`reads_reviews` reads a ``"review"`` alone, as a review; other channels and
        other models read every text the same way.
        """
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"{len(contexts)} contexts for {len(texts)} texts")
        if channels is not None and len(channels) != len(texts):
            raise ValueError(f"{len(channels)} channels for {len(texts)} texts")
        reviews = np.array([c == REVIEW for c in channels] if channels is not None and self.reads_reviews
                           else [False] * len(texts), dtype=bool)
        if not self.reads_context or contexts is None:
            contexts = [()] * len(texts)
        contexts = [() if review else turns for turns, review in zip(contexts, reviews)]
        earlier = [earlier_turns(turns) for turns in contexts]
        owners = [i for i, turns in enumerate(earlier) for _ in turns]
        distinct, rows = _distinct([*texts, *(t for turns in earlier for t in turns)])
        bert = self.bert_log_probs(distinct)[rows]
        if self.blend is None:
            return {name: np.exp(bert[:len(texts), i]) for i, name in enumerate(self.classes) if name != "other"}
        ngram = self.ngram.decision_function(distinct)[rows]
        n = len(texts)
        lengths = np.array([len(t) for t in texts])
        if not isinstance(self.blend, ClassBlend):
            return self.blend.probabilities(bert[:n], ngram[:n], self.classes, lengths)
        before = earlier_features(self._logits(bert[n:]), ngram[n:], owners, n)
        chat = self.chat_ngram.decision_function(texts) if self.blend.chat_ngram else None
        pair = (self.bert_pair_log_probs(texts, [pair_context(turns) for turns in contexts])
                 if self.blend.bert_pair else None)
        probs = self.blend.probabilities(bert[:n], ngram[:n], self.classes, lengths, before, chat,
                                         self.context_log_odds(contexts) if self.blend.context_ngram else None, pair)
        if reviews.any():
            self._read_as_reviews(probs, reviews, bert[:n][reviews], [t for t, r in zip(texts, reviews) if r])
        return probs

    def context_log_odds(self, contexts: Sequence[Sequence[tuple[str, str]]]) -> np.ndarray:
        """The context n-gram's log-odds per message; zero for one with no turns before it."""
        said = [context_text(turns) for turns in contexts]
        out = np.zeros(len(said))
        given = [i for i, text in enumerate(said) if text]
        if given:
            out[given] = self.context_ngram.decision_function([said[i] for i in given])
        return out

    def _read_as_reviews(self, probs: dict[str, np.ndarray], reviews: np.ndarray, bert: np.ndarray,
                         texts: list[str]) -> None:
        """Replace the reviews' negative probability by the review blend's; neutral and
        positive share the rest as the main blend divided it (reviews teach no neutral class)."""
        negative = self.blend.review.negative(bert, self.review_ngram.decision_function(texts))
        rest = (1.0 - negative) / np.maximum(1.0 - probs["negative"][reviews], 1e-12)
        for name in probs:
            probs[name][reviews] = negative if name == "negative" else probs[name][reviews] * rest

    def negative_probs(self, texts: Sequence[str],
                       contexts: Sequence[Sequence[tuple[str, str]]] | None = None,
                       channels: Sequence[str | None] | None = None) -> np.ndarray:
        return self.probabilities(texts, contexts, channels)["negative"]


def _distinct(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Each text once, in first-seen order, and where each of ``texts`` is among them.

    In a dialogue the customer's earlier turns are mostly messages of the same batch, and
    chat repeats itself ("好的", "在吗"): reading each text once spares the BERT most of
    the work the earlier turns would cost.
    """
    first: dict[str, int] = {}
    rows = np.fromiter((first.setdefault(text, len(first)) for text in texts), dtype=np.int64, count=len(texts))
    return list(first), rows


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
