"""CLIP's byte-level BPE tokenizer (a re-implementation of OpenAI's simple_tokenizer, MIT).

Reads the merges list that ships in models/<name>/tokenizer/bpe_simple_vocab_16e6.txt.gz.
ids: 49406 = <|startoftext|>, 49407 = <|endoftext|>; padded with 0 to 77, truncated keeping
the end token last.
"""
import gzip
import html
import os
import unicodedata
from functools import lru_cache

import regex as re

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_BPE = os.path.join(HERE, "..", "models", "imagine-shapes", "tokenizer", "bpe_simple_vocab_16e6.txt.gz")
SOT, EOT, CONTEXT = 49406, 49407, 77


@lru_cache()
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return set(zip(word[:-1], word[1:]))


def basic_clean(text):
    text = html.unescape(html.unescape(text))
    text = unicodedata.normalize("NFC", text)
    return text.strip()


def whitespace_clean(text):
    return re.sub(r"\s+", " ", text).strip()


class SimpleTokenizer:
    def __init__(self, bpe_path=DEFAULT_BPE):
        self.byte_encoder = bytes_to_unicode()
        merges = gzip.open(bpe_path).read().decode("utf-8").split("\n")
        merges = merges[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab]
        for m in merges:
            vocab.append("".join(m))
        vocab.extend(["<|startoftext|>", "<|endoftext|>"])
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.bpe_ranks = dict(zip(merges, range(len(merges))))
        self.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
        self.pat = re.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            re.IGNORECASE)
        self.text_cache = {}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = get_pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text):
        """BPE ids without start/end tokens."""
        ids = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def ids(self, text):
        """[SOT] + ids + [EOT] (no padding), as in tokenizer-reference.json."""
        return [SOT] + self.encode(text) + [EOT]

    def __call__(self, text, context_length=CONTEXT):
        """Padded/truncated list of context_length ids (pad 0, EOT kept last)."""
        r = self.text_cache.get(text)
        if r is not None:
            return r
        ids = self.ids(text)
        if len(ids) > context_length:
            ids = ids[:context_length - 1] + [EOT]
        r = ids + [0] * (context_length - len(ids))
        if len(self.text_cache) < 500000:
            self.text_cache[text] = r
        return r


_TOK = None


def get_tokenizer():
    global _TOK
    if _TOK is None:
        _TOK = SimpleTokenizer()
    return _TOK
