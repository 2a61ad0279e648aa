"""Train the statistical half of the complaint-entity pipeline from weakly labelled reviews.

Nobody has hand-labelled entity data at training scale, so the ``ner`` component learns from
train-split review sentences labelled by rule: the shipped ``entity_ruler`` patterns plus
``WEAK_LEXICON``, a wider set of cues that the shipped rules deliberately leave out because
out of context they misfire (``送`` is also "give for free", ``凉`` also a cold dish, ``退``
also hotel check-out, ``百度`` also the search engine). Where a cue is only safe in one
domain it is applied to that source only, so the model sees the same word labelled in one
context and unlabelled in another and has to learn the difference; that context is what lets
the model add recall where no pattern matches. Only ``split == "train"`` texts are used, and
the hand-labelled gold sentences are removed by text.

Run: ``python -m churnsignal.nlp.entity_training --corpus DIR --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import spacy
import srsly
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import compounding, filter_spans, fix_random_seed, minibatch
from tqdm import tqdm

from churnsignal.nlp.corpus import load_labelled
from churnsignal.nlp.entities import build_pipeline

SOURCES = ("food_delivery", "ecommerce", "hotels")
DEFAULT_GOLD = Path(__file__).resolve().parents[1] / "bench" / "data" / "entities_gold.jsonl"
MAX_CHARS = 80
SOURCE_SHARE = {"food_delivery": 0.45, "ecommerce": 0.45, "hotels": 0.10}
# Share of training sentences with at least one weak label; the rest carry none and teach
# the model where not to fire.
LABELLED_SHARE = 0.75

_SENTENCE = re.compile(r"[^。！？!?；;～~\n]+[。！？!?；;～~\n]*")
_CLAUSE = re.compile(r"[^，,]+[，,]*")

_DEGREE = "(?:太|很|非常|特别|超级|超|真的|真|挺|蛮|比较|有点|不太|不|没有|没|好)*"
_VERDICT = "(?:快|慢|好|差|棒|给力|及时|准时|辛苦|热情|一般|不错|糟糕|差劲)"

# (label, pattern, sources or None for every source). Matches become weak labels only where
# they line up with jieba token boundaries and do not overlap a longer label.
WEAK_LEXICON: list[tuple[str, str, tuple[str, ...] | None]] = [
    # Goods damaged, spilled, spoiled, smelling off or fake on arrival.
    ("QUALITY", r"洒|撒(?!谎)|漏出来|漏出|漏液|破(?=了|损|洞)|破洞|碎(?=了)|裂(?=了|开)|裂开|开裂|裂缝"
                r"|烂(?=了|掉)|烂掉|烂果|坏果|烂货|压坏|碰坏|摔坏|磕坏|烧坏|发臭|臭(?=了)|馊|霉斑"
                r"|霉味|臭味|怪味|没熟|不熟|夹生|变形|失灵|故障|不能用|用不了|假的|山寨|翻新|发黑|长毛|生虫", None),
    ("QUALITY", r"凉透|冰凉|凉(?=了)|(?<=有)(?:头发|虫子|虫|苍蝇|异物|钢丝球|钢丝|沙子|塑料)", ("food_delivery",)),
    # Couriers, riders, delivery verbs and fees.
    ("LOGISTICS", r"顺丰|圆通|中通|申通|韵达|汇通|宅急送|EMS|邮政|德邦|派件|揽件|迷路|找不到路|送错地址"
                  r"|邮费|漏发|发错货|发错", None),
    ("LOGISTICS", rf"(?:送餐|外卖|外送|快递)?(?:小哥|骑士|员)(?:{_DEGREE}{_VERDICT})?"
                  rf"|速度{_DEGREE}{_VERDICT}|(?:没有|没)?送(?:得|的){_DEGREE}{_VERDICT}"
                  r"|外送|补送|晚送|多送|忘送|送饭|送菜|送成|送上来|送上门|送回"
                  r"|(?:没有|没|少|漏)?送(?:过来|来|到|达|错|晚)?", ("food_delivery",)),
    # Agents ignoring, stalling or mistreating the customer; front desks of hotels and shops.
    ("SERVICE", r"装死|不理睬|不搭理|没人搭理|爱搭不理|不理会|不理|没人管|不回应|没回应|搪塞|刁难|傲慢|冷冰冰|嚣张"
                r"|(?:不|没|没有|没人)接听|挂断|态度生硬|门童|接待员|领班|大堂经理|接线员|在线客服|商家客服", None),
    ("SERVICE", r"前台", ("hotels", "ecommerce")),
    # Money back: bare 退 only outside hotel reviews, where it is mostly check-out.
    ("REFUND", r"退回来|退回去|退回|退掉|退还|返还|补偿|赔钱|赔付|索赔|调换|换回来|换回|包换"
               r"|退(?!房|出|休|步|化|色|烧|役|伍|订|后)", ("food_delivery", "ecommerce")),
    ("PRICE", r"优惠|满减|打折|折扣|促销|活动价|特价|收费|加钱|坑钱|宰客|物有所值|不值钱|费用|房费|服务费"
              r"|半价|掉价|低价|标价|廉价|杀价|保价|价保", None),
    ("MONEY", r"[一二两三四五六七八九十几]分钱", None),
    ("COMPETITOR", r"卓越亚马逊|卓越网|卓越|国美在线|国美|一号店|1号店|携程网|携程|艺龙|去哪儿网|大众点评"
                   r"|百度外卖|小红书|聚美优品|聚美|网易严选|别家|别的家|其他家|其它家|别的店|其他店|其它店"
                   r"|别的平台|其他平台|别的网站|其他网站|实体店|专卖店", None),
    ("COMPETITOR", r"百度", ("food_delivery",)),
    ("DURATION", r"好一会儿|好一会|一会儿|很长时间|好长时间|老长时间", None),
]
_WEAK = [(label, re.compile(pattern), sources) for label, pattern, sources in WEAK_LEXICON]


def split_sentences(review: str) -> list[str]:
    """Cut a review into sentences, and sentences longer than ``MAX_CHARS`` at commas.

    Support messages arrive a sentence or two at a time, so the model trains and is judged
    on sentence-sized text rather than on whole reviews.
    """
    sentences = []
    for sentence in _SENTENCE.findall(review):
        chunk = ""
        for clause in _CLAUSE.findall(sentence) if len(sentence) > MAX_CHARS else [sentence]:
            if chunk and len(chunk) + len(clause) > MAX_CHARS:
                sentences.append(chunk)
                chunk = ""
            chunk += clause
        if chunk:
            sentences.append(chunk)
    return [s.strip() for s in sentences if len(s.strip()) >= 4]


def train_sentences(corpus_dir: Path) -> list[tuple[str, str, int]]:
    """Return ``(sentence, source, negative)`` for every sentence of every train-split review."""
    seen: set[str] = set()
    rows = []
    for item in load_labelled(corpus_dir):
        if item.split != "train" or item.source not in SOURCES:
            continue
        for sentence in split_sentences(item.text):
            if sentence not in seen:
                seen.add(sentence)
                rows.append((sentence, item.source, item.negative))
    return rows


# Rare labels get a few gold sentences drawn among those holding a cue character or name;
# the cues are broader than the patterns (退 also means check-out, 块 also "piece"), so
# these sentences test precision as well as recall.
GOLD_CUES = (
    "退|换|赔|返",  # REFUND
    "元|块|钱|¥|￥",  # MONEY
    "京东|淘宝|天猫|当当|亚马逊|卓越|美团|饿了么|百度|携程|苏宁|国美|拼多多|唯品会"
    "|别家|其他|实体店|网站|平台|超市|商场",  # COMPETITOR
)


def draw_gold_candidates(corpus_dir: Path, seed: int = 20240601) -> list[dict]:
    """Draw the sentences of the hand-labelled gold set (before annotation).

    Uniform draws without replacement from train-split sentences of 8–80 characters, per
    stratum: mostly complaints (negative reviews) from food delivery and e-commerce, some
    hotel complaints, some sentences from positive reviews (mostly without entities), then
    20 sentences of any source and polarity per ``GOLD_CUES`` stratum, not drawn before.
    """
    quotas = {("food_delivery", 1): 150, ("ecommerce", 1): 110, ("hotels", 1): 30,
              ("food_delivery", 0): 25, ("ecommerce", 0): 25}
    rows = [r for r in train_sentences(corpus_dir) if 8 <= len(r[0]) <= MAX_CHARS]
    rng = random.Random(seed)
    drawn = [{"text": text, "source": source}
             for (source, negative), n in quotas.items()
             for text in rng.sample([s for s, src, neg in rows if (src, neg) == (source, negative)], n)]
    for cue in GOLD_CUES:
        taken = {d["text"] for d in drawn}
        pool = [(s, src) for s, src, _ in rows if s not in taken and re.search(cue, s)]
        drawn.extend({"text": text, "source": source} for text, source in rng.sample(pool, 20))
    return drawn


def weak_label(nlp: Language, sentences: list[tuple[str, str]]) -> list[Doc]:
    """Label ``(sentence, source)`` pairs with the ruler plus ``WEAK_LEXICON``.

    The longest span wins where rule and lexicon matches overlap, so a lexicon cue extends
    rather than splits a rule span.
    """
    docs = []
    with nlp.select_pipes(enable=["entity_ruler"]):
        for doc, source in nlp.pipe(sentences, as_tuples=True, batch_size=512):
            spans = list(doc.ents)
            for label, pattern, sources in _WEAK:
                if sources is None or source in sources:
                    for match in pattern.finditer(doc.text):
                        span = doc.char_span(match.start(), match.end(), label=label)
                        if span is not None:
                            spans.append(span)
            doc.ents = filter_spans(spans)
            docs.append(doc)
    return docs


def _gold_texts(gold: Path) -> set[str]:
    return {row["text"] for row in srsly.read_jsonl(gold)}


def _sample(docs: list[Doc], sources: list[str], max_sentences: int, rng: random.Random) -> list[Doc]:
    """Draw up to ``max_sentences`` docs, ``SOURCE_SHARE`` per source, ``LABELLED_SHARE`` labelled.

    E-commerce sentences outnumber food-delivery ones seven to one, but delivery complaints
    carry most of the logistics and service vocabulary, so each source gets a fixed share.
    """
    chosen: list[Doc] = []
    for source, share in SOURCE_SHARE.items():
        quota = int(max_sentences * share)
        labelled = [d for d, s in zip(docs, sources) if s == source and d.ents]
        unlabelled = [d for d, s in zip(docs, sources) if s == source and not d.ents]
        rng.shuffle(labelled)
        rng.shuffle(unlabelled)
        n_labelled = min(len(labelled), int(quota * LABELLED_SHARE))
        chosen += labelled[:n_labelled] + unlabelled[: quota - n_labelled]
    return chosen


def train_entities(corpus_dir: Path, out_dir: Path, seed: int = 0, max_sentences: int = 10000,
                   epochs: int = 4, gold: Path = DEFAULT_GOLD, weak_patterns: Path | None = None) -> dict:
    """Weak-label train-split sentences, train ``ner`` on them and save the whole pipeline.

    ``weak_patterns`` (default: the shipped patterns) are the ruler patterns the weak labels
    come from; the saved pipeline's ruler always holds the shipped ones. The shipped ``ner``
    learned from an earlier pattern file (model_cards/entities.md), which this rebuilds it from.
    Returns (and stores in the saved ``meta.json``) what was trained on and how long it took.
    """
    started = time.monotonic()
    spacy.require_cpu()
    fix_random_seed(seed)
    rng = random.Random(seed)
    excluded = _gold_texts(gold)
    rows = [(s, src) for s, src, _ in train_sentences(corpus_dir) if s not in excluded]
    # Label with a throwaway pipeline so the saved vocabulary holds only the training sentences.
    chosen = _sample(weak_label(build_pipeline(weak_patterns), rows), [src for _, src in rows], max_sentences, rng)
    nlp = build_pipeline()
    examples = [Example.from_dict(nlp.make_doc(d.text), {"entities": [(e.start_char, e.end_char, e.label_) for e in d.ents]})
                for d in chosen]

    with nlp.select_pipes(enable=["ner"]):
        optimizer = nlp.initialize(lambda: examples)
        batches_per_epoch = [list(minibatch(rng.sample(examples, len(examples)), compounding(8.0, 64.0, 1.001)))
                             for _ in range(epochs)]
        losses_per_epoch = []
        with tqdm(total=sum(len(b) for b in batches_per_epoch), desc="ner", unit="batch", file=sys.stderr) as bar:
            for epoch, batches in enumerate(batches_per_epoch, 1):
                losses: dict[str, float] = {}
                for batch in batches:
                    nlp.update(batch, drop=0.2, sgd=optimizer, losses=losses)
                    bar.update()
                bar.set_postfix(epoch=epoch, loss=round(float(losses["ner"]), 1))
                losses_per_epoch.append(round(float(losses["ner"]), 2))

    stats = {
        "seed": seed,
        "epochs": epochs,
        "sentences": len(examples),
        "sentences_with_entities": sum(1 for d in chosen if d.ents),
        "weak_entities": dict(Counter(ent.label_ for d in chosen for ent in d.ents).most_common()),
        "excluded_gold_sentences": len(excluded),
        "ner_loss_per_epoch": losses_per_epoch,
        "seconds": round(time.monotonic() - started, 1),
    }
    nlp.meta.update({
        "name": "churnsignal_entities", "version": "0.1.1",
        "description": "Complaint entities for Chinese support text; labels and figures in model_cards/entities.md",
        "license": "research use only: trained on ChineseNlpCorpus reviews, which carry no licence",
        "churnsignal_training": stats,
    })
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    nlp.to_disk(out_dir)
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="the chinese-nlp-corpus directory")
    parser.add_argument("--out", type=Path, required=True, help="where to write the trained pipeline")
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help="gold sentences to keep out of training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-sentences", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--weak-patterns", type=Path, default=None,
                        help="ruler patterns to weak-label with (default: the shipped ones)")
    args = parser.parse_args(argv)
    stats = train_entities(args.corpus, args.out, seed=args.seed, max_sentences=args.max_sentences,
                           epochs=args.epochs, gold=args.gold, weak_patterns=args.weak_patterns)
    print(json.dumps(stats, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
