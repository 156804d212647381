"""An optbench plugin adding a corpus: `data = { name = "counting", ... }`. A corpus entry builds its own
bench.data.Corpus from its parameters; `text_corpus` tokenizes and splits any text it makes or reads."""

from bench.axes import register
from bench.registry import Param
from bench.techniques.corpora import TOKENIZER


@register(
    "data",
    "counting",
    "numbers counted upwards in words, one per line: a corpus whose structure is known exactly",
    upto=Param(int, 5000, "the last number", low=10),
    tokenizer=TOKENIZER,
    vocab_size=Param(int, 512, "vocabulary size of the BPE tokenizer", low=64),
)
def counting(p):
    from bench.data import text_corpus

    ones = "zero one two three four five six seven eight nine".split()
    text = "".join(" ".join(ones[int(d)] for d in str(i)) + "\n" for i in range(p["upto"] + 1))
    return text_corpus("counting", text, p["tokenizer"], p["vocab_size"])
