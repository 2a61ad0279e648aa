"""Chinese NLP for support messages: sentiment, complaint entities, masking.

>>> from churnsignal.nlp import analyse
>>> analyse(["快递三天都没到，客服也不回消息，我要退款"])[0]["sentiment"]["label"]
'negative'
"""

from typing import Any

__all__ = ["analyse"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import churnsignal.nlp.corpus` (training, tests) does not load torch and spaCy.
    if name == "analyse":
        from churnsignal.nlp.analysis import analyse

        return analyse
    raise AttributeError(name)
