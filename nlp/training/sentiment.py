"""Recipe for the Chinese BERT sentiment model: vocabulary, masked-LM, fine-tuning.

Each stage writes a ``save_pretrained`` directory under ``--work`` and checkpoints
every few minutes, so a run killed by a session end resumes where it stopped, on a
GPU when one is at hand and on the CPU otherwise (same command, same results for
the same seed and device).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tqdm import tqdm
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertTokenizerFast,
    get_linear_schedule_with_warmup,
)

from churnsignal.nlp.corpus import LabelledText
from churnsignal.nlp.ngram import NgramSentiment
from churnsignal.nlp.normalize import normalize
from churnsignal.nlp.sentiment import BLEND, CARD, Blend, SentimentModel
from churnsignal.nlp.training.text import pretraining_text, train_and_dev

CHECKPOINT = "checkpoint.pt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Emoji are rare in review text but strong signal in chat; keep them out of [UNK].
EMOJI = "😡😠🤬😤😞😔😢😭😩😫😒🙄🤮💔👎😓😰😱🤔😐😑🙂😊😄😁😂🤣😍🥰😘😋👍👏👌🎉💯❤🌹🙏💪😃😆😅😉😎🤗"


@dataclass
class Recipe:
    """Every knob of a training run; stored next to the model it produced."""

    seed: int = 0
    vocab_size: int = 8000
    layers: int = 4
    hidden: int = 256
    mlm_steps: int = 700
    mlm_batch: int = 64
    mlm_block: int = 128
    mlm_lr: float = 1e-3
    mlm_mask: float = 0.15
    ft_epochs: float = 1.0
    ft_batch: int = 32
    ft_max_tokens: int = 96
    ft_lr: float = 1.5e-4
    checkpoint_minutes: float = 5.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def progress(total: int, initial: int, desc: str) -> tqdm:
    """A progress bar on stderr; redrawn every 30 s when stderr is a log file, not a terminal."""
    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30)


def build_tokenizer(texts: Sequence[str], out_dir: Path, vocab_size: int, min_frequency: int = 2) -> BertTokenizerFast:
    """Build a character-level Chinese WordPiece vocabulary that ``BertTokenizerFast`` loads.

    Words come from BERT's own normaliser and pre-tokeniser, which cut CJK text into
    single characters. The vocabulary is every character seen ``min_frequency`` times
    (and its ``##`` continuation form), then the most frequent Latin/digit words up to
    ``vocab_size``. Written here rather than with ``tokenizers``' WordPiece trainer
    because that trainer orders ties by hash and gives a different vocabulary each run.
    """
    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=True)
    pre_tokenizer = BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    starts: Counter[str] = Counter()
    inner: Counter[str] = Counter()
    for word, count in words.items():
        starts[word[0]] += count
        for char in word[1:]:
            inner["##" + char] += count
    def frequent(counts: Counter[str]) -> list[str]:
        return sorted((t for t, c in counts.items() if c >= min_frequency), key=lambda t: (-counts[t], t))
    vocab = list(SPECIAL_TOKENS) + frequent(starts) + frequent(inner)
    whole = [w for w in frequent(words) if len(w) > 1]
    vocab += whole[: max(0, vocab_size - len(vocab))]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(out_dir / "vocab.txt"), do_lower_case=True,
                                  tokenize_chinese_chars=True, strip_accents=False, model_max_length=512)
    # Added tokens are cut out before WordPiece, so "好评👍👍" keeps its emoji.
    tokenizer.add_tokens(list(EMOJI))
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def mlm_blocks(tokenizer: BertTokenizerFast, texts: Sequence[str], block: int) -> torch.Tensor:
    """Pack the texts, separated by [SEP], into ``[CLS] ... [SEP]`` blocks without padding."""
    stream: list[int] = []
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(tokenizer.sep_token_id)
    body = block - 2
    rows = len(stream) // body
    data = torch.tensor(stream[: rows * body], dtype=torch.long).view(rows, body)
    cls = torch.full((rows, 1), tokenizer.cls_token_id)
    sep = torch.full((rows, 1), tokenizer.sep_token_id)
    return torch.cat([cls, data, sep], dim=1)


def mask_tokens(batch: torch.Tensor, tokenizer: BertTokenizerFast, rate: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masking; returns (inputs, labels) with -100 on unmasked positions."""
    labels = batch.clone()
    special = (batch == tokenizer.cls_token_id) | (batch == tokenizer.sep_token_id)
    chosen = (torch.rand(batch.shape, generator=generator) < rate) & ~special
    labels[~chosen] = -100
    inputs = batch.clone()
    roll = torch.rand(batch.shape, generator=generator)
    inputs[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    random_ids = torch.randint(len(tokenizer), batch.shape, generator=generator)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_ids[swap]
    return inputs, labels


def masked_lm_loss(model: BertForMaskedLM, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on masked positions only: the vocabulary projection of the other
    85 % of positions is a third of a small model's compute and teaches nothing."""
    hidden = model.bert(input_ids=inputs).last_hidden_state
    picked = labels != -100
    logits = model.cls(hidden[picked])
    return torch.nn.functional.cross_entropy(logits, labels[picked])


class Checkpointer:
    """Saves model, optimiser, schedule and step every few minutes; loads them back."""

    def __init__(self, path: Path, minutes: float) -> None:
        self.path, self.seconds, self.last = path, minutes * 60, time.monotonic()

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> int:
        if not self.path.exists():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        return int(state["step"])

    def maybe_save(self, model, optimizer, scheduler, step: int, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < self.seconds:
            return
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "step": step}, tmp)
        tmp.replace(self.path)
        self.last = time.monotonic()


def pretrain(work: Path, corpus_dir: Path | None, recipe: Recipe) -> Path:
    """Stage 1+2: vocabulary and masked-LM. Returns the masked-LM model directory."""
    out = work / "mlm"
    if (out / "model.safetensors").exists():
        return out
    seed_everything(recipe.seed)
    texts = pretraining_text(corpus_dir)
    vocab_dir = work / "vocab"
    tokenizer = (BertTokenizerFast.from_pretrained(vocab_dir) if (vocab_dir / "tokenizer.json").exists()
                 else build_tokenizer(texts, vocab_dir, recipe.vocab_size))
    blocks = mlm_blocks(tokenizer, texts, recipe.mlm_block)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=recipe.hidden, num_hidden_layers=recipe.layers,
                        num_attention_heads=recipe.hidden // 64, intermediate_size=4 * recipe.hidden,
                        max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config).to(device())
    masked_lm(model, tokenizer, blocks, Checkpointer(work / f"mlm.{CHECKPOINT}", recipe.checkpoint_minutes),
              steps=recipe.mlm_steps, batch=recipe.mlm_batch, lr=recipe.mlm_lr, mask=recipe.mlm_mask,
              seed=recipe.seed, desc=f"masked-LM ({blocks.numel() / 1e6:.1f}M tokens)")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def masked_lm(model: BertForMaskedLM, tokenizer: BertTokenizerFast, blocks: torch.Tensor, checkpoints: Checkpointer,
              *, steps: int, batch: int, lr: float, mask: float, seed: int, desc: str) -> None:
    """Masked-LM over packed blocks, AdamW with 5 % warm-up and linear decay, resumable.

    The batch order and masks are functions of the seed and the step, so a run resumed
    from its checkpoint takes the same steps as one that never stopped.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.05 * steps), steps)
    step = checkpoints.load(model, optimizer, scheduler)
    per_epoch = len(blocks) // batch
    bar = progress(steps, step, desc)
    model.train()
    while step < steps:
        epoch, index = divmod(step, per_epoch)
        order = torch.randperm(len(blocks), generator=torch.Generator().manual_seed(seed + epoch))
        inputs, labels = mask_tokens(blocks[order[index * batch:(index + 1) * batch]], tokenizer, mask,
                                     torch.Generator().manual_seed(seed * 100003 + step))
        with torch.autocast(device().type, dtype=torch.bfloat16, enabled=device().type == "cuda"):
            loss = masked_lm_loss(model, inputs.to(device()), labels.to(device()))
        step = optimisation_step(loss, model, optimizer, scheduler, step, bar)
        checkpoints.maybe_save(model, optimizer, scheduler, step, force=step == steps)
    bar.close()


def batches_by_length(lengths: Sequence[int], batch: int, generator: random.Random) -> list[list[int]]:
    """Group similar lengths into batches (little padding), then shuffle the batches."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], generator.random()))
    groups = [order[i:i + batch] for i in range(0, len(order), batch)]
    generator.shuffle(groups)
    return groups


def optimisation_step(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      scheduler, step: int, bar: tqdm) -> int:
    """Backward, clip, step; returns the new step count."""
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    bar.update(1)
    bar.set_postfix(loss=f"{loss.item():.3f}")
    return step + 1


def finetune(work: Path, corpus_dir: Path | None, recipe: Recipe, mlm_dir: Path) -> Path:
    """Stage 3: fine-tune for negative/positive on the train split minus the dev slice."""
    out = work / "sentiment"
    if (out / "model.safetensors").exists():
        return out
    seed_everything(recipe.seed)
    fit, dev = train_and_dev(corpus_dir)
    tokenizer = BertTokenizerFast.from_pretrained(mlm_dir)
    texts = [normalize(i.text) for i in fit]
    labels = torch.tensor([i.negative for i in fit])
    encoded = tokenizer(texts, truncation=True, max_length=recipe.ft_max_tokens)["input_ids"]
    model = BertForSequenceClassification.from_pretrained(mlm_dir, num_labels=2, id2label={0: "positive", 1: "negative"},
                                                          label2id={"positive": 0, "negative": 1}).to(device())
    steps_per_epoch = math.ceil(len(texts) / recipe.ft_batch)
    total = int(recipe.ft_epochs * steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.ft_lr, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * total), total)
    checkpoints = Checkpointer(work / f"sentiment.{CHECKPOINT}", recipe.checkpoint_minutes)
    step = checkpoints.load(model, optimizer, scheduler)
    bar = progress(total, step, f"fine-tune ({len(texts)} texts)")
    lengths = [len(e) for e in encoded]
    batches, batches_epoch = [], -1
    while step < total:
        epoch, index = divmod(step, steps_per_epoch)
        if epoch != batches_epoch:  # one shuffle per epoch, not per step
            batches, batches_epoch = batches_by_length(lengths, recipe.ft_batch, random.Random(recipe.seed + epoch)), epoch
        ids = batches[index]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in ids]}, return_tensors="pt").to(device())
        model.train()
        with torch.autocast(device().type, dtype=torch.bfloat16, enabled=device().type == "cuda"):
            loss = model(**batch, labels=labels[ids].to(device())).loss
        step = optimisation_step(loss, model, optimizer, scheduler, step, bar)
        checkpoints.maybe_save(model, optimizer, scheduler, step, force=step == total)
    bar.close()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
    return out


def fit_ngram(work: Path, fit: Sequence[LabelledText], C: float) -> NgramSentiment:
    """Stage 4: the n-gram half, on the same fit split as the BERT."""
    out = work / "ngram"
    if NgramSentiment.saved_in(out):
        return NgramSentiment.load(out)
    model = NgramSentiment(C=C).fit([normalize(i.text) for i in fit], [i.negative for i in fit])
    model.save(out)
    return model


def assemble(work: Path, corpus_dir: Path | None, out: Path, name: str, version: str) -> dict:
    """Stage 5: write one shippable model directory and fit the blend.

    The BERT is stored in fp16 (half the repository size; it is loaded back as fp32).
    The blend — a logistic regression on BERT and n-gram log-odds fitted on dev, which
    also calibrates the probability — is fitted on the BERT exactly as it will run:
    from those fp16 weights, quantised to int8.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score

    if out.exists():
        shutil.rmtree(out)
    BertForSequenceClassification.from_pretrained(work / "sentiment").to(torch.float16).save_pretrained(out)
    BertTokenizerFast.from_pretrained(work / "sentiment").save_pretrained(out)
    fit, dev = train_and_dev(corpus_dir)
    texts, y = [normalize(i.text) for i in dev], np.array([i.negative for i in dev])
    bert = SentimentModel(out).bert_logits(texts)
    ngram_model = fit_ngram(work, fit, C=8.0)
    ngram = ngram_model.decision_function(texts)
    stack = LogisticRegression(C=1.0).fit(np.column_stack([bert, ngram]), y)
    blend = Blend(bert=float(stack.coef_[0][0]), ngram=float(stack.coef_[0][1]), bias=float(stack.intercept_[0]))
    blended = blend.bert * bert + blend.ngram * ngram + blend.bias
    dev_figures = {part: {"accuracy": round(accuracy_score(y, z > 0), 4), "auc": round(roc_auc_score(y, z), 4)}
                   for part, z in (("bert", bert), ("ngram", ngram), ("blend", blended))}
    ngram_model.save(out)
    (out / BLEND).write_text(json.dumps(asdict(blend), indent=2))
    shutil.copy(work / "sentiment" / "recipe.json", out / "recipe.json")
    card = {"name": name, "version": version, "dev": dev_figures, "dev_texts": len(dev)}
    (out / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False))
    return card


def train_sentiment(work: Path, corpus_dir: Path | None, recipe: Recipe) -> Path:
    """Run (or resume) the BERT stages; returns the fine-tuned model directory."""
    work.mkdir(parents=True, exist_ok=True)
    return finetune(work, corpus_dir, recipe, pretrain(work, corpus_dir, recipe))
