#!/usr/bin/python3
"""Extra tokenizer reference ids for Unicode corner cases -> tests/data/tokenizer_unicode.json.

transformers is not installed here, so this is a line-by-line Python transcription of the path
transformers 4.33's slow CLIPTokenizer takes without ftfy (the added-token split,
BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize, the CLIP regex, bpe()).
What it checks in the C port is the Unicode data: it uses Python's own unicodedata (categories,
NFC) and str.lower(), where the C code uses generated range tables. The regex classes are
emulated with unicodedata categories (\\p{L} = L*, \\p{N} = N*), as the `regex` module defines
them. Run: /usr/bin/python3 dev/tokenizer_unicode_ref.py ../shared/fixtures/clip
"""
import json
import re
import sys
import unicodedata

SPECIAL = ["<|startoftext|>", "<|endoftext|>"]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def is_cjk(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or
            0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF or
            0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text):
    out = []
    for ch in text:
        cp = ord(ch)
        cat = unicodedata.category(ch)
        if cp == 0 or cp == 0xFFFD or (ch not in "\t\n\r" and cat.startswith("C")):
            continue
        out.append(" " if (ch in " \t\n\r" or cat == "Zs") else ch)
    text = "".join(" " + c + " " if is_cjk(ord(c)) else c for c in out)
    text = unicodedata.normalize("NFC", text)
    tokens = [t.lower() for t in text.strip().split()]
    return " ".join(tokens).strip().split()


def is_l(c):
    return unicodedata.category(c)[0] == "L"


def is_n(c):
    return unicodedata.category(c)[0] == "N"


def clip_findall(text):
    """<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+ (IGNORECASE)"""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
            continue
        m = None
        for s in SPECIAL:
            if text[i:i + len(s)].lower() == s:
                m = text[i:i + len(s)]
                break
        if m is None and c == "'":
            for k in ("s", "t", "re", "ve", "m", "ll", "d"):
                w = text[i + 1:i + 1 + len(k)]
                if len(w) == len(k) and all(a == b or (b == "s" and a == "\u017f") or a.lower() == b for a, b in zip(w, k)):
                    m = "'" + w
                    break
        if m is None:
            j = i + 1
            if is_l(c):
                while j < len(text) and is_l(text[j]):
                    j += 1
            elif not is_n(c):
                while j < len(text) and not (is_l(text[j]) or is_n(text[j]) or text[j].isspace()):
                    j += 1
            m = text[i:j]
        out.append(m)
        i += len(m)
    return out


class Tok:
    def __init__(self, folder):
        self.encoder = json.load(open(folder + "/vocab.json", encoding="utf-8"))
        merges = open(folder + "/merges.txt", encoding="utf-8").read().strip().split("\n")[1:49152 - 256 - 2 + 1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.be = bytes_to_unicode()
        self.cache = {s: s for s in SPECIAL}

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == best[0] and word[i + 1] == best[1]:
                    new.append(best[0] + best[1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
        return " ".join(word)

    def ids(self, text):
        unk = self.encoder["<|endoftext|>"]
        out = [self.encoder["<|startoftext|>"]]
        for piece in re.split("(<\\|startoftext\\|>|<\\|endoftext\\|>)", text):
            if piece in SPECIAL:
                out.append(self.encoder[piece])
                continue
            for tok in clip_findall(" ".join(basic_tokenize(piece))):
                tok = "".join(self.be[b] for b in tok.encode("utf-8"))
                out += [self.encoder.get(t, unk) for t in self.bpe(tok).split(" ")]
        return out + [self.encoder["<|endoftext|>"]]


PROMPTS = [
    "Ελληνικά: ΟΔΟΣ, ΣΟΦΙΑ, ΑΣ ΚΑΙ",
    "Α'Σ Α.Σ Α\u0301Σ ΑΣ\u0301Α \u00adΣ Α\u00adΣ ͅΣ ΑΣ'Α Σ",
    "İstanbul ISTANBUL ıi",
    "cafe\u0301 vs caf\u00e9, A\u030a vs \u00c5, \u212b",
    "\u1100\u1161\u11a8 \ud55c\uad6d\uc5b4 \u1112\u1161\u11ab",
    "हिन्दी में लिखा हुआ पाठ",
    "\u0b47\u0b3e \u0bc6\u0bbe \u0d46\u0d3e \u1025\u102e \u0dd9\u0dcf\u0dca ଓଡ଼ିଆ தமிழ்",
    "\u0b47\u0b3e \u0bc6\u0bbe \u1025\u102e",
    "العربية لغة جميلة ١٢٣",
    "ภาษาไทย สวัสดี",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "Ⅻ ½ ² ³ ⁴ ① ②",
    "𝐁𝐨𝐥𝐝 𝔉𝔯𝔞𝔨𝔱𝔲𝔯",
    "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag",
    "zero\u200bwidth\u200djoiner\u2060word\ufeffbom",
    "soft\u00adhyphen",
    "line\u2028sep\u2029para\u0085nel",
    "tab\tvtab\x0bff\x0cfs\x1cgs\x1dus\x1f",
    "Ǆemal ǅ ǆ Ǉ ǈ ǉ",
    "ẞ straße STRASSE",
    "ŉ ǰ ΐ",
    "\u0041\u0323\u0307 \u1e0a\u0323 \u0071\u0307\u0323",
    "\u00c5\u0301\u0323 ḕ ệ",
    "한국어 텍스트 日本語 中文 \u3400 \U00020000 \uf900\uf901",
    "ｶﾀｶﾅ カタカナ ひらがな",
    "Кириллица ЁЖИК Ёлка",
    "Ἀθῆναι ᾼ ᾳ ῼ",
    "Ոսկե Հայաստան",
    "ⓐⓑⓒ ⒶⒷⒸ",
    "'S 'T 'RE 'VE 'M 'LL 'D 'ſ",
    "x<|ENDOFTEXT|>y <|startoftext|>z",
    "!!<|endoftext|>!! <<|endoftext|>>",
    "\ue000private\U000f0000use \U000e0041tag",
    "unassigned\u0378\u0379 \U0001fbff",
    "a\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308 z\u0315\u0300",
    "Ω Ω K K Å",
    "ﬁ ﬂ ﬃ ǅ ᾈ",
    "1,000,000.00€ £5 ¥100 ₹20 ₿",
    "Ⅰ ⅰ Ⓐ ⓐ Ａ ａ",
    "ⲀⲁⳀ Ꙁꙁ Ꝺꝺ ꞵ",
    "Ꭰꭰ Ᏸᏸ",
    "𐐀𐐨 𖹀 𞤀𞤢",
    "     ",
]


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "../shared/fixtures/clip"
    tok = Tok(folder)
    out = {"generator": "dev/tokenizer_unicode_ref.py (Python %s, unicodedata %s)" % (sys.version.split()[0], unicodedata.unidata_version),
           "prompts": [{"text": p, "ids": tok.ids(p)} for p in PROMPTS]}
    # self-check against the transformers fixture
    ref = json.load(open(folder + "/../diffusers/tokenizer/tokenizer_ref.json", encoding="utf-8"))
    for p in ref["prompts"]:
        assert tok.ids(p["text"]) == p["ids"], p["text"]
    with open("tests/data/tokenizer_unicode.json", "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=True, indent=0)


main()
