#!/usr/bin/python3
"""Writes a deterministic mixed JSONL corpus for shardlm prepare tests and
benchmarks: plain text, instruction/input/output, prompt/response and
messages records, with exact duplicates, near duplicates, PII (e-mail,
phones, Chinese ID numbers, card numbers, IPs), HTML, invalid UTF-8 bytes,
broken JSON lines and records without known fields. English-like and
Chinese text.

usage: gen_corpus.py --out FILE.jsonl --mb SIZE [--seed N]
Prints a JSON summary of what it wrote (counts per kind) on stdout.
"""
import argparse
import json
import random
import sys

SYL = ["ka", "lo", "mi", "ten", "ra", "shu", "vel", "on", "tri", "as", "per", "qui", "zen", "dor",
       "ul", "fin", "ge", "bra", "sto", "ny", "ex", "im", "ple", "cor", "da", "win", "ter", "pha"]
ZH = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
      "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好"
      "应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严")
ZH_PUNCT = ["，", "。", "！", "？", "；", "："]
TLDS = ["com", "org", "net", "cn", "io", "co.uk"]


def word(r):
    return "".join(r.choice(SYL) for _ in range(r.randint(1, 3)))


def en_sentence(r):
    w = [word(r) for _ in range(r.randint(5, 16))]
    w[0] = w[0].capitalize()
    return " ".join(w) + r.choice([".", ".", ".", "?", "!"])


def zh_sentence(r):
    return "".join(r.choice(ZH) for _ in range(r.randint(8, 30))) + r.choice(ZH_PUNCT)


def cn_id(r, valid=True):
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    body = "%06d%04d%02d%02d%03d" % (r.randint(110000, 659000), r.randint(1950, 2005),
                                       r.randint(1, 12), r.randint(1, 28), r.randint(0, 999))
    c = "10X98765432"[sum(int(a) * b for a, b in zip(body, w)) % 11]
    if not valid:
        c = "10X98765432"[("10X98765432".index(c) + 1) % 11]
    return body + c


def luhn_card(r, valid=True):
    digits = [4] + [r.randint(0, 9) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    check = (10 - total % 10) % 10
    if not valid:
        check = (check + 1) % 10
    return "".join(map(str, digits + [check]))


def pii(r):
    k = r.randrange(8)
    if k == 0:
        return "%s.%s@%s.%s" % (word(r), word(r), word(r), r.choice(TLDS))
    if k == 1:
        return "1%d%09d" % (r.choice([3, 5, 7, 8, 9]), r.randint(0, 999999999))
    if k == 2:
        return "+44 20 %04d %04d" % (r.randint(0, 9999), r.randint(0, 9999))
    if k == 3:
        return cn_id(r, valid=r.random() < 0.8)
    if k == 4:
        return luhn_card(r, valid=r.random() < 0.8)
    if k == 5:
        return "%d.%d.%d.%d" % tuple(r.randint(1, 254) for _ in range(4))
    if k == 6:
        return "2001:db8:%x::%x" % (r.randint(1, 65535), r.randint(1, 65535))
    return "v%d.%d.%d" % (r.randint(0, 9), r.randint(0, 20), r.randint(0, 99))  # look-alike


def paragraph(r, n_sent):
    zh = r.random() < 0.3
    out = []
    for _ in range(n_sent):
        out.append(zh_sentence(r) if zh else en_sentence(r))
        if r.random() < 0.08:
            out.append(pii(r))
    sep = "" if zh else " "
    text = sep.join(out)
    if r.random() < 0.05:
        text = "<div><p>%s</p> &amp; <b>%s</b><script>var x=1;</script></div>" % (text, word(r))
    return text


def record(r):
    k = r.random()
    if k < 0.5:
        return {"text": "\n\n".join(paragraph(r, r.randint(2, 8)) for _ in range(r.randint(1, 6)))}
    if k < 0.65:
        rec = {"instruction": paragraph(r, 1), "input": paragraph(r, r.randint(0, 2)),
               "output": paragraph(r, r.randint(1, 6))}
        return rec
    if k < 0.8:
        return {"prompt": paragraph(r, r.randint(1, 3)), "response": paragraph(r, r.randint(1, 8))}
    msgs = []
    if r.random() < 0.3:
        msgs.append({"role": "system", "content": paragraph(r, 1)})
    for _ in range(r.randint(1, 4)):
        msgs.append({"role": "user", "content": paragraph(r, r.randint(1, 3))})
        msgs.append({"role": "assistant", "content": paragraph(r, r.randint(1, 6))})
    return {"messages": msgs}


def near_copy(r, rec):
    s = json.dumps(rec, ensure_ascii=False)
    words = s.split(" ")
    for _ in range(max(1, len(words) // 50)):
        i = r.randrange(len(words))
        if '"' not in words[i] and "\\" not in words[i]:
            words[i] = word(r)
    return " ".join(words)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--mb", type=float, required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    r = random.Random(a.seed)
    target = int(a.mb * 1e6)
    recent = []
    counts = {}
    size = 0
    with open(a.out, "wb") as f:
        while size < target:
            k = r.random()
            if k < 0.05 and recent:
                line, kind = r.choice(recent).encode(), "exact_duplicate"
            elif k < 0.10 and recent:
                line, kind = near_copy(r, json.loads(r.choice(recent))).encode(), "near_duplicate"
            elif k < 0.11:
                line, kind = b'{"text": "broken', "bad_json"
            elif k < 0.12:
                line, kind = json.dumps({"title": word(r)}).encode(), "no_fields"
            elif k < 0.14:
                rec = {"text": paragraph(r, 4)}
                raw = json.dumps(rec, ensure_ascii=False).encode()
                i = raw.index(b'"text": "') + 9 + r.randint(0, 10)
                line, kind = raw[:i] + b"\xff\xc3(" + raw[i:], "invalid_utf8"
            else:
                s = json.dumps(record(r), ensure_ascii=False)
                line, kind = s.encode(), "record"
                recent.append(s)
                if len(recent) > 2000:
                    recent.pop(r.randrange(len(recent)))
            f.write(line + b"\n")
            size += len(line) + 1
            counts[kind] = counts.get(kind, 0) + 1
    json.dump({"bytes": size, "lines": sum(counts.values()), "kinds": counts}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
