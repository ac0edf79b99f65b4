"""Make tests/data/pii_set.jsonl: a labelled PII test set (synthetic, seeded; every value is fake and generated here).

Each line: {"text": ..., "spans": [{"start", "end", "type"}]}. Types: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD,
US_SSN, UK_NINO, IP_ADDRESS, IBAN_CODE (structured) and PERSON. Sentences without PII (order numbers, dates,
versions, prices) measure false positives. A second set (`"set": "no_cue"`) puts the structured kinds in sentences with
no word naming them, with harder negatives (`"set": "hard_negative"`). Run: python tests/data/make_pii_set.py
"""
import json, random
from pathlib import Path

rng = random.Random(20261130)
FIRST = ["maria", "john", "wei", "aisha", "oliver", "lena", "carlos", "yuki", "fatima", "pierre", "noah", "sofia", "ivan", "amara"]
LAST = ["garcia", "smith", "zhang", "khan", "brown", "mueller", "lopez", "tanaka", "ali", "dubois", "kim", "rossi", "petrov", "okafor"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "example.net", "uni.example.edu", "example.io"]

def email():
    f, l = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([f"{f}.{l}", f"{f[0]}{l}", f"{f}_{l}{rng.randint(1, 99)}", f"{l}.{f}+news", f"{f}{rng.randint(1970, 2005)}"])
    return f"{local}@{rng.choice(DOMAINS)}"

def phone():
    # assigned US area codes (a number in an unassigned one is no phone number: phonenumbers rightly rejects it)
    a = rng.choice([212, 213, 206, 303, 305, 312, 404, 415, 503, 512, 617, 646, 702, 713, 718, 808, 917, 919, 949, 971])
    b, c = rng.randint(200, 999), rng.randint(1000, 9999)
    return rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}", f"+1-{a}-{b}-{c}", f"{a}.{b}.{c}",
                       f"+44 20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}", f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
                       f"+49 30 {rng.randint(1000000, 9999999)}", f"+33 1 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"])

def luhn_complete(digits):
    s = 0
    for i, d in enumerate(reversed(digits)):
        d = int(d)
        if i % 2 == 0: d = d * 2; d = d - 9 if d > 9 else d
        s += d
    return digits + str((10 - s % 10) % 10)

def card():
    prefix, n = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
    num = luhn_complete(prefix + "".join(str(rng.randint(0, 9)) for _ in range(n - len(prefix) - 1)))
    if n == 16: return rng.choice([num, " ".join(num[i:i + 4] for i in range(0, 16, 4)), "-".join(num[i:i + 4] for i in range(0, 16, 4))])
    return rng.choice([num, f"{num[:4]} {num[4:10]} {num[10:]}"])

def ssn():
    area = rng.choice([x for x in range(1, 900) if x != 666])
    return rng.choice(["{:03d}-{:02d}-{:04d}", "{:03d} {:02d} {:04d}"]).format(area, rng.randint(1, 99), rng.randint(1, 9999))

def nino():
    letters = "ABCEGHJKLMNPRSTWXYZ"
    while (a := rng.choice(letters)) + (b := rng.choice(letters)) in ("BG", "GB", "NK", "KN", "NT", "TN", "ZZ"): pass  # never issued
    n, suffix = f"{rng.randint(0, 999999):06d}", rng.choice("ABCD")
    return rng.choice([f"{a}{b}{n}{suffix}", f"{a}{b} {n[:2]} {n[2:4]} {n[4:]} {suffix}"])

def ip():
    if rng.random() < 0.75: return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return ":".join(f"{rng.randint(0, 65535):x}" for _ in range(8))

def iban():
    # a German IBAN with valid check digits (ISO 13616 mod 97)
    bban = "".join(str(rng.randint(0, 9)) for _ in range(18))
    num = int("".join(str(int(ch, 36)) for ch in bban + "DE00"))
    code = f"DE{98 - num % 97:02d}{bban}"
    return rng.choice([code, " ".join(code[i:i + 4] for i in range(0, len(code), 4))])

def person(): return f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}"

TEMPLATES = {
    "EMAIL_ADDRESS": ["Please write to {} about the refund.", "contact: {}", "I emailed {} twice and got no answer!", "cc {} on the ticket"],
    "PHONE_NUMBER": ["Call me back at {} after 5pm.", "My number is {}.", "phone {} (mobile)", "reach the store on {} tomorrow"],
    "CREDIT_CARD": ["I paid with card {} and was charged twice.", "card number: {}", "Charge {} for the renewal.", "the card {} expired"],
    "US_SSN": ["My SSN is {} for the tax form.", "social security number {}", "SSN: {}", "verify identity, ssn {} please"],
    "UK_NINO": ["National Insurance number {} on my payslip.", "NI number: {}", "my NINO is {}", "nino {} for the claim"],
    "IP_ADDRESS": ["The login came from {} at midnight.", "blocked ip {}", "server {} is down again", "requests from {} look odd"],
    "IBAN_CODE": ["Send the refund to IBAN {} please.", "iban: {}", "Bank account {} for the transfer.", "pay into {} by Friday"],
    "PERSON": ["{} complained about the delay.", "Ask {} to sign the form.", "Order placed by {} last week.", "{} said the app crashes"],
}
MAKERS = dict(EMAIL_ADDRESS=email, PHONE_NUMBER=phone, CREDIT_CARD=card, US_SSN=ssn, UK_NINO=nino, IP_ADDRESS=ip, IBAN_CODE=iban, PERSON=person)
NEGATIVE = ["Order #{} shipped on 2024-03-{:02d}.", "Version {}.{} fixes the crash.", "It costs ${}.{:02d} per month.",
            "Ticket {} was closed after {} days.", "The box weighs {} kg and is {} cm wide.", "Meeting at {}:{:02d} in room 4."]

def sentence(kind):
    v = MAKERS[kind](); t = rng.choice(TEMPLATES[kind]); i = t.index("{}")
    return t.format(v), [dict(start=i, end=i + len(v), type=kind)]

rows = []
for kind in MAKERS:
    for _ in range(32 if kind != "PERSON" else 16): rows.append(sentence(kind))
for _ in range(24):  # two kinds in one sentence
    (a, sa), (b, sb) = sentence(rng.choice(list(MAKERS)[:7])), sentence(rng.choice(list(MAKERS)[:7]))
    off = len(a) + 1
    rows.append((a + " " + b, sa + [dict(s, start=s["start"] + off, end=s["end"] + off) for s in sb]))
for _ in range(40):
    t = rng.choice(NEGATIVE); rows.append((t.format(rng.randint(10, 99999), rng.randint(1, 28)), []))
rng.shuffle(rows)
rows = [dict(text=t, spans=sp) for t, sp in rows]  # the first set: each value beside a word that names its kind

# The second set ("no_cue"): the same kinds in sentences with no word naming them (no "SSN", "card", "phone", "IBAN"),
# so only the value itself can give it away; and harder negatives: version numbers shaped like IP addresses, long
# digit runs that fail the card checksum, times, ISBNs, hex ids. Added after the first set, which stays as it was.
NEUTRAL = ["see {} below", "{} was in the note", "it said {} and nothing else", "ref {}", "copied {} from the form", "{}"]
def no_cue(kind):
    v = MAKERS[kind](); t = rng.choice(NEUTRAL); i = t.index("{}")
    return dict(text=t.format(v), spans=[dict(start=i, end=i + len(v), type=kind)], set="no_cue")
def not_luhn():
    while True:
        d = "".join(str(rng.randint(0, 9)) for _ in range(16))
        if luhn_complete(d[:-1]) != d: return d
HARD_NEGATIVE = [lambda: f"build {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)} is out",
                 lambda: f"order {not_luhn()} arrived late", lambda: f"at {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} UTC",
                 lambda: f"isbn 978-{rng.randint(0, 9)}-{rng.randint(100, 999)}-{rng.randint(10000, 99999)}-{rng.randint(0, 9)}",
                 lambda: f"commit {rng.getrandbits(40):010x} broke the build", lambda: f"room {rng.randint(100, 999)}, floor {rng.randint(1, 30)}"]
extra = [no_cue(k) for k in list(MAKERS)[:7] for _ in range(12)] + [dict(text=rng.choice(HARD_NEGATIVE)(), spans=[], set="hard_negative") for _ in range(24)]
rng.shuffle(extra)
rows += extra
out = Path(__file__).with_name("pii_set.jsonl")
out.write_text("".join(json.dumps(r) + "\n" for r in rows))
print(f"{out}: {len(rows)} texts, {sum(len(r['spans']) for r in rows)} spans")
