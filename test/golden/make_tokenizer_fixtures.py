#!/usr/bin/env python3
"""
make_tokenizer_fixtures.py -- reference data for the engine's GPT-2 byte-level
BPE tokenizer (src/core/tokenizer.c) and the Unicode tables it uses
(src/core/unicode_tables.h).

Run from the repository root:

    python3 test/golden/make_tokenizer_fixtures.py --gpt2-dir DIR

Needs (developer machines only; neither the build nor the tests run this):
    tokenizers          the reference tokenizer (HF's Rust implementation)
    regex               OpenAI's encoder.py regex, for the cross-check
    unicodedata2==16.0.0
                        Unicode 16.0 character data (see "Unicode" below)
    transformers        optional: GPT2TokenizerFast, cross-checked against
                        the plain `tokenizers` pipeline for GPT-2

GPT-2's vocabulary
------------------
GPT-2's vocab.json and merges.txt are not shipped by transformers or
tiktoken, but the openai-whisper sdist up to 20230124 carries them in
whisper/assets/gpt2/.  To get them without the hub:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install "setuptools<70" wheel
    /tmp/v/bin/pip download --no-deps --no-build-isolation -d /tmp/w openai-whisper==20230124
    tar xzf /tmp/w/openai-whisper-20230124.tar.gz -C /tmp/w
    --gpt2-dir /tmp/w/openai-whisper-20230124/whisper/assets/gpt2

The script checks their md5 sums, copies them to test/fixtures/tokenizer/gpt2/
and checks the structural facts of GPT-2's tokenizer (50257 tokens, 50000
merges, merge r makes token 256 + r, "Hello world" -> 15496 995).  Without
--gpt2-dir the GPT-2 cases are recomputed from the committed copy.

Fixtures written (test/fixtures/tokenizer/)
-------------------------------------------
small/      a 1000-token byte-level BPE trained here with HF tokenizers
            (ByteLevel pre-tokenizer, GPT-2 regex, "<|endoftext|>" special,
            id 0 -- so nothing may assume GPT-2's id layout) on a generated
            multi-script corpus:
              vocab.json, merges.txt         the OpenAI/HF "slow" files
              tokenizer.json                 merges as [a, b] pairs (new form)
              tokenizer_legacy.json          merges as "a b" strings (old form)
              cases.tsv                      reference encodings (below)
specials/   the small model plus more added tokens: special "<|end" (a
            prefix of "<|endoftext|>": leftmost-longest matching) and
            "<|pad|>", non-special "xyzzy" and " hello" (with a space):
              tokenizer.json, cases.tsv
gpt2/       GPT-2's vocab.json + merges.txt (see above), cases.tsv

cases.tsv: '#' lines are comments; every other line is one case,
    input_hex <TAB> ids <TAB> str_tokens
input_hex is the UTF-8 input as hex, ids the reference ids (comma
separated), str_tokens the comma separated hex of each token decoded alone
(`decode([id])`, i.e. TransformerLens's to_str_tokens: bytes decoded as
UTF-8 with invalid sequences replaced by U+FFFD).  The reference also
decodes every case back to its input exactly (checked here).

Unicode
-------
The pre-tokenizer regex needs \\p{L}, \\p{N} and \\s.  Three Unicode versions
are in play: Python 3.11's unicodedata is Unicode 14.0, HF tokenizers 0.23
(Oniguruma) classifies by Unicode 16.0, and the `regex` module (2026.x) by
Unicode 17.0 or later.  All three agree on every code point assigned in
Unicode 14.0; they differ only on letters and numbers added since (CJK
Ext. H/I, Kawi, Garay, ...).  We match the reference tokenizer, so the committed tables are
generated from unicodedata2 16.0.0 (Python's unicodedata module with Unicode
16.0 data) and then checked code point by code point against HF tokenizers'
own regex; the script prints how many code points differ from the `regex`
module and from this Python's unicodedata.  \\s is Unicode White_Space (the
same set in all three; note Python's str.isspace() is wider: it includes
U+001C..U+001F, which neither regex engine treats as space).
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sys

import regex
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "test", "fixtures", "tokenizer")
TABLES = os.path.join(ROOT, "src", "core", "unicode_tables.h")

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_MD5 = {
    "vocab.json": "22377f841debacb023848b3468ea3281",
    "merges.txt": "093ecf3f30371012f2e96fcfb10ea6ab",
}

# Unicode White_Space (PropList.txt; unchanged since Unicode 6.3).
WHITE_SPACE = [(0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680),
               (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F),
               (0x3000, 0x3000)]


# --------------------------------------------------------------------------
# Unicode tables
# --------------------------------------------------------------------------

def is_space(cp):
    return any(lo <= cp <= hi for lo, hi in WHITE_SPACE)


def class_of(ud, cp):
    """'L', 'N', 'S' or 'O' for one code point, by the data in module ud."""
    if is_space(cp):
        return "S"
    cat = ud.category(chr(cp))
    return cat[0] if cat[0] in "LN" else "O"


def ranges_of(ud, want):
    """Maximal ranges of code points of class `want`."""
    out, start = [], None
    for cp in range(0x110001):
        inside = cp < 0x110000 and not (0xD800 <= cp < 0xE000) and class_of(ud, cp) == want
        if inside and start is None:
            start = cp
        elif not inside and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def hf_class(splitter, cp):
    """How HF tokenizers' copy of the GPT-2 regex classifies one code point."""
    ch = chr(cp)
    parts = [p for p, _ in splitter.pre_tokenize_str("a" + ch + ch + "0")]
    if parts == ["a" + ch + ch, "0"]:
        return "L"
    if parts == ["a", ch + ch + "0"]:
        return "N"
    if parts == ["a", ch + ch, "0"]:
        return "O"
    if parts in (["a", ch, ch, "0"], ["a", ch, ch + "0"]):     # the second: U+0020
        return "S"
    raise SystemExit("unexpected split of U+%04X: %r" % (cp, parts))


def regex_class(cp):
    ch = chr(cp)
    if regex.match(r"\p{L}", ch):
        return "L"
    if regex.match(r"\p{N}", ch):
        return "N"
    if regex.match(r"\s", ch):
        return "S"
    return "O"


def check_unicode(ud):
    """Compare our classes with HF (must agree) and report the others."""
    import unicodedata as py_ud
    splitter = pre_tokenizers.Split(Regex(GPT2_PATTERN), "isolated")
    bad_hf, diff_rx, diff_py, old_rx, old_py = [], 0, 0, 0, 0
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ours = class_of(ud, cp)
        if ours != hf_class(splitter, cp):
            bad_hf.append(cp)
        if ours != regex_class(cp):
            diff_rx += 1
            old_rx += ud.category(chr(cp)) != "Cn"
        if ours != class_of(py_ud, cp):
            diff_py += 1
            old_py += py_ud.category(chr(cp)) != "Cn"
    print("unicode: %s tables: %d code points differ from HF tokenizers %s, %d from the regex "
          "module %s (%d of them assigned in %s), %d from Python's unicodedata %s (%d of them "
          "assigned in %s)"
          % (ud.unidata_version, len(bad_hf), tokenizers.__version__, diff_rx, regex.__version__,
             old_rx, ud.unidata_version, diff_py, py_ud.unidata_version, old_py,
             py_ud.unidata_version))
    if bad_hf:
        raise SystemExit("tables disagree with HF tokenizers at %s" %
                         ", ".join("U+%04X" % c for c in bad_hf[:20]))


def write_tables(ud):
    rows = [(lo, hi, "L") for lo, hi in ranges_of(ud, "L")]
    rows += [(lo, hi, "N") for lo, hi in ranges_of(ud, "N")]
    rows.sort()
    with open(TABLES, "w") as f:
        f.write("/*\n * unicode_tables.h -- Unicode %s letter (\\p{L}) and number (\\p{N})\n"
                " * ranges and White_Space, for the GPT-2 pre-tokenizer in tokenizer.c.\n *\n"
                " * Generated by test/golden/make_tokenizer_fixtures.py from unicodedata2 %s\n"
                " * (general categories L* and N*); do not edit.  Unicode %s is what HF\n"
                " * tokenizers' regex engine uses (checked code point by code point); the\n"
                " * `regex` module and Python's own unicodedata may be on another version,\n"
                " * and differ only on code points assigned after Unicode 14.0.\n */\n"
                % (ud.unidata_version, ud.unidata_version, ud.unidata_version))
        f.write("#ifndef SAE_UNICODE_TABLES_H\n#define SAE_UNICODE_TABLES_H\n\n#include <stdint.h>\n\n")
        f.write("#define SAE_UNI_LETTER 1\n#define SAE_UNI_NUMBER 2\n\n")
        f.write("typedef struct SaeUniRange\n{\n\tuint32_t\tlo;\n\tuint32_t\thi;\n\tuint8_t\t\tcls;\n"
                "} SaeUniRange;\n\n")
        f.write("/* %d sorted, disjoint ranges (first, last, class) */\n" % len(rows))
        f.write("static const SaeUniRange sae_uni_ranges[] = {\n")
        for lo, hi, c in rows:
            f.write("\t{0x%04X, 0x%04X, SAE_UNI_%s},\n" % (lo, hi, "LETTER" if c == "L" else "NUMBER"))
        f.write("};\n\n/* Unicode White_Space (\\s) */\n")
        f.write("static const SaeUniRange sae_uni_space[] = {\n")
        for lo, hi in WHITE_SPACE:
            f.write("\t{0x%04X, 0x%04X, 0},\n" % (lo, hi))
        f.write("};\n\n#endif\n")
    print("wrote %s (%d ranges)" % (os.path.relpath(TABLES, ROOT), len(rows)))


# --------------------------------------------------------------------------
# OpenAI's encoder.py, re-implemented from its description (models.md §6),
# as a second reference for text without special tokens.
# --------------------------------------------------------------------------

def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class OpenAIEncoder:
    def __init__(self, vocab, merges):
        self.encoder = vocab
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()
        self.pat = regex.compile(GPT2_PATTERN)

    def bpe(self, token):
        word = list(token)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    new.append(word[i] + word[i + 1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        return word

    def encode(self, text):
        ids = []
        for tok in regex.findall(self.pat, text):
            mapped = "".join(self.byte_map[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(mapped))
        return ids


# --------------------------------------------------------------------------
# Training corpus and test strings
# --------------------------------------------------------------------------

WORDS = """the of and to in is was that for it with as his on be at by had are but from or
have an they which one you were her all she there would their we him been has when who will
more no if out so said what up its about into than them can only other new some could time
these two may then do first any my now such like our over man me even most made after also
did many before must through back years where much your way well down should because each
just those people how too little state good very make world still own see men work long get
here between both life being under never day same another know while last might us great old
year off come since against go came right used take three once upon there was a girl named
Lily she lived in big happy house one day found shiny toy played with her friend Tom dog cat
sun tree park ball red blue green said mom dad smiled laughed wanted went asked loved""".split()

SCRIPTS = [
    "Καλημέρα κόσμε η γλώσσα μου έδωσαν ελληνική",
    "Привет мир как дела это тест русский язык",
    "你好世界 我们的 中文 测试 一二三 东西南北",
    "こんにちは世界 ひらがな カタカナ 日本語のテスト",
    "안녕하세요 세계 한국어 테스트",
    "مرحبا بالعالم هذا اختبار للغة العربية",
    "שלום עולם זה מבחן",
    "नमस्ते दुनिया यह एक परीक्षण है",
    "สวัสดีชาวโลก นี่คือการทดสอบ",
    "Hola señor ¿qué tal? ¡Muy bien! niño año",
    "naïve café résumé über Straße façade",
    "١٢٣ ٤٥٦ ७८९ ½ ¾ ² ³ Ⅻ ①②",
    "😀 👍🏽 👨‍👩‍👧‍👦 🇺🇸 ❤️ ✈︎ 🎉",
]

PUNCT = list(".,;:!?\"'()[]{}<>-_=+*/\\|@#$%^&~`") + ["...", "--", "—", "“", "”", "’"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "n't"]


def make_corpus(rng, n_lines=6000):
    """A deterministic, mostly-English multi-script corpus for training."""
    lines = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(3, 16)):
            r = rng.random()
            if r < 0.62:
                w = rng.choice(WORDS)
                parts.append(w.capitalize() if rng.random() < 0.15 else w)
            elif r < 0.70:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 6))))
            elif r < 0.80:
                parts[-1:] = [(parts[-1] if parts else "") + rng.choice(PUNCT)]
            elif r < 0.86:
                parts[-1:] = [(parts[-1] if parts else "I") + rng.choice(CONTRACTIONS)]
            else:
                parts.append(rng.choice(rng.choice(SCRIPTS).split()))
        sep = rng.choice(["\n", "\n", " ", "\n\n", "  \n", "\t"])
        lines.append(" ".join(parts) + sep)
    return lines


FIXED_CASES = [
    # models.md §6 splits
    "Hello world", "Hello, world!", "I'm here", "DON'T", "x\n\ny", "price: $12.50!", "  lead",
    "end  ", "naïve café 123abc",
    # contractions (case-sensitive; GPT-2 matches only lowercase ASCII)
    "it's", "IT'S", "It'S", "'s", "'t'", "we're they've I'd you'll I'M", "'sup", "can't won't",
    "''s", "rock 'n' roll", "it’s", " 's", "?!'s", "'ll've'd", "'LL 'Re 'VE",
    # whitespace
    "a   b", "\t\tindent", "line1\nline2\r\nline3", "trailing   ", "   ", " ", "", "\n", "\n\n\n",
    "a \n b", "tab\tsep\tvalues", " \t \n", "x\u00a0y", "x\u00a0\u00a0y", "x\u3000y", "x\u2028y",
    "\x0b\x0c", "\x1c\x1d\x1e\x1f", "\u0085 x", "a\u2003\u2003 b", " " * 100 + "x",
    "\n" * 20, "word\n", "  \n  \n", "\r\n\r\n",
    # numbers
    "1234567890", "12345678901234567890", "3.14159", "1,000,000", "٣٤٥", "Ⅻ", "½ ¾", "²³", "१२३",
    "①②", " 42", "abc123def", "x2 y10 z100", "0x1F", "1e-5", "-7", "2024-01-15",
    # letters in many scripts
    "Καλημέρα κόσμε", "Привет, мир!", "你好，世界", "こんにちは世界 カタカナ", "안녕하세요",
    "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "გამარჯობა", "Բարեւ",
    "ሰላም", "வணக்கம்", "Ελληνικά", "𝒜𝒷𝒸 𝔘𝔫𝔦", "𐍈𐌰𐌹", "ǅungla", "ªº",
    # combining marks
    "e\u0301", "cafe\u0301", "a\u0308bc", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "\u0301", " \u0301x",
    # emoji
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇬🇧", "I ❤️ NY", "✈︎", "a😀b", " 😀😀 ",
    # punctuation and code
    "...!!!???", "—–-", "«quoted»", "“smart quotes”", "<html><body></body></html>",
    "{\"json\": [1, 2]}", "C:\\path\\to", "a@b.com", "#hashtag @mention", "!@#$%^&*()",
    "¡Hola! ¿Qué?", "def f(x):\n    return x**2\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
    "=" * 80, "a--b", "(a)", "'quoted'", "\"double\"",
    # special tokens in text
    "<|endoftext|>", "Hello<|endoftext|>world", "a <|endoftext|> b", "<|endoftext|><|endoftext|>",
    "<|endoftext", "<|endoftext|", "<<|endoftext|>>", " <|endoftext|>", "<|endoftext|> ",
    "<|ENDOFTEXT|>", "<|end|>",
    # odd characters
    "\x00", "\x7f", "null\x00byte", "\ufeffBOM", "zero\u200bwidth", "soft\u00adhyphen", "\ud7ff",
    "\ue000", "\uffff", "\U0010ffff", "\ufffd", "\U000e0041", "a\u200db",
    # long words
    "supercalifragilisticexpialidocious", "a" * 64, "ab" * 50, "Once upon a time, there was a "
    "little girl named Lily. She lived in a big, happy little girl. On her big adventure,",
]


def post14_cases(ud):
    """Letters and numbers that Unicode added after Python 3.11's 14.0."""
    import unicodedata as py_ud
    found = {"L": [], "N": []}
    for cp in range(0x80, 0x110000):
        if 0xD800 <= cp < 0xE000 or py_ud.category(chr(cp)) != "Cn":
            continue
        c = class_of(ud, cp)
        if c in found and len(found[c]) < 3:
            found[c].append(chr(cp))
    return ["x" + "".join(found["L"]) + " " + "".join(found["N"]) + "y"]


def wide_random_cases(rng, ud, n=150):
    """Short strings of code points drawn from all of Unicode (assigned ones)."""
    assigned = [c for c in range(0x80, 0x110000)
                if not (0xD800 <= c < 0xE000) and ud.category(chr(c)) not in ("Cn", "Cs")]
    out = []
    for _ in range(n):
        out.append("".join(chr(rng.choice(assigned)) if rng.random() < 0.6 else rng.choice(" ab1'\n")
                           for _ in range(rng.randint(1, 12))))
    return out


def random_cases(rng, n=250):
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            + list("      \t\n\r'''.,!?-") + list("sStTdDmMlLrevVE")
            + list("éüñßøКжΩλ中文日本ア한١٢½²\u0301\u00a0\u3000\u2028😀👍🏽\u200d")
            + ["<|endoftext|>", "'s", "'ll", " 're"])
    out = []
    for _ in range(n):
        out.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 40))))
    return out


# --------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------

def train_small(rng):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(make_corpus(rng), trainer=trainer)
    return tok


def str_token(tok, i):
    return tok.decode([i], skip_special_tokens=False)


def write_cases(path, tok, cases, note):
    with open(path, "w") as f:
        f.write("# %s\n# reference: HF tokenizers %s; input_hex <TAB> ids <TAB> str_tokens "
                "(see test/golden/make_tokenizer_fixtures.py)\n" % (note, tokenizers.__version__))
        for text in cases:
            ids = tok.encode(text).ids
            back = tok.decode(ids, skip_special_tokens=False)
            if back != text:
                raise SystemExit("%s: reference does not round-trip %r (got %r)" % (path, text, back))
            strs = [str_token(tok, i).encode("utf-8").hex() for i in ids]
            f.write("%s\t%s\t%s\n" % (text.encode("utf-8").hex(), ",".join(map(str, ids)),
                                      ",".join(strs)))
    print("wrote %s (%d cases)" % (os.path.relpath(path, ROOT), len(cases)))


def cross_check_openai(tok, vocab, merges, cases, name):
    """encoder.py's loop must agree with HF on text without special tokens."""
    enc = OpenAIEncoder(vocab, merges)
    n = 0
    for text in cases:
        if "<|endoftext|>" in text:
            continue
        if enc.encode(text) != tok.encode(text).ids:
            raise SystemExit("%s: encoder.py and HF disagree on %r" % (name, text))
        n += 1
    print("%s: encoder.py re-implementation agrees with HF on %d cases" % (name, n))


def read_merges_txt(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [tuple(l.split(" ")) for l in lines if l and not l.startswith("#version")]


def make_small(rng, cases):
    d = os.path.join(OUT, "small")
    os.makedirs(d, exist_ok=True)
    tok = train_small(rng)
    tok.save(os.path.join(d, "tokenizer.json"))
    tok.model.save(d)
    with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
        j = json.load(f)
    if not isinstance(j["model"]["merges"][0], list):
        raise SystemExit("expected tokenizers to write merges as pairs")
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    with open(os.path.join(d, "tokenizer_legacy.json"), "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=2)
    # the slow files must give the same tokenizer
    slow = Tokenizer(models.BPE.from_file(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")))
    slow.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    slow.decoder = decoders.ByteLevel()
    slow.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    legacy = Tokenizer.from_file(os.path.join(d, "tokenizer_legacy.json"))
    for t in cases:
        if not (slow.encode(t).ids == tok.encode(t).ids == legacy.encode(t).ids):
            raise SystemExit("small: the three file forms disagree on %r" % t)
    write_cases(os.path.join(d, "cases.tsv"), tok, cases, "small: 1000-token BPE trained here")
    with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    cross_check_openai(tok, vocab, read_merges_txt(os.path.join(d, "merges.txt")), cases, "small")
    return tok


def make_specials(small):
    d = os.path.join(OUT, "specials")
    os.makedirs(d, exist_ok=True)
    tok = Tokenizer.from_str(small.to_str())
    tok.add_special_tokens([AddedToken("<|end", special=True), AddedToken("<|pad|>", special=True)])
    tok.add_tokens([AddedToken("xyzzy", normalized=False), AddedToken(" hello", normalized=False)])
    tok.save(os.path.join(d, "tokenizer.json"))
    cases = ["<|end", "<|endoftext|>", "<|end|>", "<|endo", "<|pad|><|pad|>", "a<|pad|>b",
             "xyzzy xyzzy", "xyzzyxyzzy", "say hello", " hello hello", "hello", "<|end<|endoftext|>",
             "<<|pad|>|>", "x <|end y <|endoftext|> z", ""]
    write_cases(os.path.join(d, "cases.tsv"), tok, cases, "specials: small + added tokens")


def gpt2_reference(d):
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    return tok


def check_gpt2_files(d):
    for name, md5 in GPT2_MD5.items():
        with open(os.path.join(d, name), "rb") as f:
            got = hashlib.md5(f.read()).hexdigest()
        if got != md5:
            raise SystemExit("%s/%s: md5 %s, want %s" % (d, name, got, md5))
    with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    merges = read_merges_txt(os.path.join(d, "merges.txt"))
    byte_map = bytes_to_unicode()
    order = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    order += [b for b in range(256) if b not in order]
    assert len(vocab) == 50257 and len(merges) == 50000 and vocab["<|endoftext|>"] == 50256
    assert all(vocab[byte_map[b]] == i for i, b in enumerate(order))
    assert all(vocab[a + b] == 256 + r for r, (a, b) in enumerate(merges))
    return vocab, merges


def make_gpt2(src, cases):
    d = os.path.join(OUT, "gpt2")
    os.makedirs(d, exist_ok=True)
    if src:
        check_gpt2_files(src)
        for name in GPT2_MD5:
            shutil.copyfile(os.path.join(src, name), os.path.join(d, name))
    vocab, merges = check_gpt2_files(d)
    tok = gpt2_reference(d)
    assert tok.encode("Hello world").ids == [15496, 995]
    try:
        from transformers import GPT2TokenizerFast
        fast = GPT2TokenizerFast.from_pretrained(d)
        for t in cases:
            if fast(t)["input_ids"] != tok.encode(t).ids:
                raise SystemExit("gpt2: GPT2TokenizerFast and tokenizers disagree on %r" % t)
            if fast("<|endoftext|>" + t)["input_ids"] != [50256] + tok.encode(t).ids:
                raise SystemExit("gpt2: BOS-prefixed text is not [50256] + ids for %r" % t)
        print("gpt2: GPT2TokenizerFast (transformers) agrees on %d cases" % len(cases))
    except ImportError:
        print("gpt2: transformers not installed; GPT2TokenizerFast cross-check skipped")
    write_cases(os.path.join(d, "cases.tsv"), tok, cases, "gpt2: GPT-2's vocab.json + merges.txt")
    cross_check_openai(tok, vocab, merges, cases, "gpt2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--gpt2-dir", help="folder with GPT-2's vocab.json and merges.txt")
    ap.add_argument("--skip-unicode-check", action="store_true",
                    help="skip the code-point-by-code-point check against HF (~1 min)")
    args = ap.parse_args()
    import unicodedata2 as ud
    if ud.unidata_version != "16.0.0":
        raise SystemExit("need unicodedata2==16.0.0 (the Unicode version of HF tokenizers' regex)")
    write_tables(ud)
    if not args.skip_unicode_check:
        check_unicode(ud)
    rng = random.Random(20240611)       # the cases
    cases = FIXED_CASES + post14_cases(ud) + random_cases(rng) + wide_random_cases(rng, ud)
    small = make_small(random.Random(1), cases)     # its own seed: more cases, same vocabulary
    make_specials(small)
    make_gpt2(args.gpt2_dir, cases)


if __name__ == "__main__":
    sys.exit(main())
