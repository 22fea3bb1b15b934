"""Long-context probes written for this experiment alone: retrieval, tracking, aggregation and passage QA.

Every item is a single user turn (`prompt`), the scorer's name and its answers, all decided by code. The haystack
is real text (Perl's documentation, see `corpus.py`), which no lcsynth training run reads; needle wording, keys,
question styles and the answer format (a bare value, no box) are this module's own.

Tasks:
- `needle_single`: one numbered fact in the haystack; asked for its number.
- `needle_multikey`: four facts of the same form under different labels; asked for one label's number.
- `needle_multivalue`: one label holds three numbers (two other labels hold decoys); asked for all three.
- `variable_tracking`: registers copied one into another along a chain, next to a decoy chain; asked which
  registers end up holding a value.
- `word_frequency`: a numbered list of words; asked for the three most frequent.
- `passage_qa`: three short profiles at one controlled depth; asked one attribute of one person.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Counter_ = Callable[[Sequence[str]], list[int]]
"""Token counts of several texts, in the tokenizer of the model under test."""

LONG_TASKS = ("needle_single", "needle_multikey", "needle_multivalue", "variable_tracking", "word_frequency",
              "passage_qa")
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)

ADJECTIVES = ("amber", "brisk", "cobalt", "dusty", "eager", "frosty", "gentle", "hollow", "ivory", "jolly",
              "kindly", "lunar", "mellow", "nimble", "olive", "placid", "quiet", "rustic", "silver", "tawny",
              "umber", "velvet", "wintry", "young", "zesty", "crimson", "golden", "misty", "sandy", "stormy")
NOUNS = ("harbor", "orchard", "lantern", "meadow", "quarry", "canyon", "glacier", "pavilion", "granary", "beacon",
         "cellar", "chapel", "foundry", "garrison", "hamlet", "island", "junction", "kiln", "lagoon", "mill",
         "observatory", "pier", "rampart", "stable", "terrace", "tunnel", "vineyard", "warehouse", "wharf", "yard")
FIRST = ("Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Keiko", "Lars",
         "Mira", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Soren", "Tamsin", "Uma", "Viktor", "Wren", "Yusuf")
LAST = ("Albright", "Brennan", "Castell", "Dunmore", "Ellery", "Fairbank", "Galloway", "Hartwell", "Ingram",
        "Jessop", "Kendrick", "Lockhart", "Merriman", "Northcott", "Osgood", "Pemberton", "Quarrie", "Radcliffe")
CITIES = ("Lisbon", "Krakow", "Nairobi", "Osaka", "Quito", "Tallinn", "Adelaide", "Bergen", "Cordoba", "Dakar",
          "Porto", "Ghent", "Hobart", "Izmir", "Jaipur", "Kyoto", "Leipzig", "Mombasa", "Nantes", "Oaxaca")
CRAFTS = ("glassblowing", "bookbinding", "clockmaking", "beekeeping", "violin making", "cartography",
          "stonemasonry", "weaving", "pottery", "rope making", "boat building", "lacquerwork")
CAPITALS = (("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
            ("Egypt", "Cairo"), ("Canada", "Ottawa"), ("Russia", "Moscow"), ("China", "Beijing"),
            ("Greece", "Athens"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Portugal", "Lisbon"),
            ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Kenya", "Nairobi"),
            ("Peru", "Lima"), ("Cuba", "Havana"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
            ("Hungary", "Budapest"), ("Thailand", "Bangkok"), ("England", "London"), ("Argentina", "Buenos Aires"))
ORDINALS = ("first", "second", "third", "fourth", "fifth")
INTRO = "Read the material below carefully; a question about it follows.\n\n"


@dataclass
class Haystack:
    """Sentences of real text with their token counts; spans of it fill a context to a token budget."""

    sentences: list[str]
    tokens: list[int]

    @classmethod
    def from_texts(cls, texts: Iterable[str], count: Counter_) -> Haystack:
        """Split `texts` into sentences (paragraph breaks kept as their own pieces) and count them."""
        sentences = [s for text in texts for s in split_sentences(text)]
        return cls(sentences, count(sentences))

    def span(self, rng: random.Random, budget: int) -> list[str]:
        """Consecutive sentences from a random start (wrapping round) whose counts add up to about `budget`."""
        i, used, out = rng.randrange(len(self.sentences)), 0, []
        while used < budget:
            out.append(self.sentences[i])
            used += self.tokens[i]
            i = (i + 1) % len(self.sentences)
        if out and used - budget > self.tokens[(i - 1) % len(self.sentences)] // 2:
            out.pop()  # closer to the budget without the last sentence
        return out


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`, short ones merged, whitespace normalised."""
    pieces = re.split(r"(?<=[.!?])\s+|\n\s*\n", text)
    out: list[str] = []
    for piece in pieces:
        piece = " ".join(piece.split())
        if not piece:
            continue
        if out and len(out[-1]) < 40:
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out


def place(filler: list[str], inserts: Sequence[tuple[float, str]]) -> str:
    """Join `filler` sentences with each insert put at its relative depth (0 = first, 1 = last)."""
    slots: dict[int, list[str]] = {}
    for depth, text in inserts:
        slots.setdefault(round(depth * len(filler)), []).append(text)
    out: list[str] = []
    for i in range(len(filler) + 1):
        out.extend(slots.get(i, []))
        if i < len(filler):
            out.append(filler[i])
    return " ".join(out)


def number(rng: random.Random, taken: set[str], digits: int = 7) -> str:
    """A fresh number of `digits` digits, not in `taken`."""
    while True:
        value = str(rng.randrange(10 ** (digits - 1), 10**digits))
        if value not in taken:
            taken.add(value)
            return value


def label(rng: random.Random, taken: set[str]) -> str:
    """A fresh two-word label such as 'cobalt lantern'."""
    while True:
        value = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        if value not in taken:
            taken.add(value)
            return value


def register(rng: random.Random, taken: set[str]) -> str:
    """A fresh register name of five capital letters."""
    while True:
        value = "".join(rng.choice(string.ascii_uppercase) for _ in range(5))
        if value not in taken:
            taken.add(value)
            return value


def fact(name: str, value: str) -> str:
    """The needle sentence: one labelled number."""
    return f"Logbook entry: the {name} shipment carries the dispatch number {value}."


def item(task: str, length: int, prompt: str, answers: list[str], scorer: str, **extra: Any) -> dict[str, Any]:
    """One probe item."""
    return {"task": task, "length": length, "prompt": prompt, "answers": answers, "scorer": scorer, **extra}


class ProbeBuilder:
    """Builds items of every task at a token length; all randomness comes from `rng`."""

    def __init__(self, haystack: Haystack, count: Counter_, words: Sequence[str]) -> None:
        self.haystack, self.count, self.words = haystack, count, list(words)

    def filled(self, rng: random.Random, length: int, question: str, inserts: Sequence[tuple[float, str]]) -> str:
        """The prompt at about `length` tokens: intro, haystack with inserts, question."""
        fixed = self.count([INTRO + "\n\n" + question, *[text for _, text in inserts]])
        budget = max(0, length - sum(fixed) - 24)  # 24: the chat template's own tokens
        return INTRO + place(self.haystack.span(rng, budget), inserts) + "\n\n" + question

    def needle_single(self, rng: random.Random, length: int, index: int) -> dict[str, Any]:
        """One fact at a stratified depth."""
        depth = DEPTHS[index % len(DEPTHS)]
        name, value = label(rng, set()), number(rng, set())
        question = f"Question: what is the dispatch number of the {name} shipment? Reply with the number alone."
        prompt = self.filled(rng, length, question, [(depth, fact(name, value))])
        return item("needle_single", length, prompt, [value], "one_of", candidates=[value], depth=depth)

    def needle_multikey(self, rng: random.Random, length: int, index: int) -> dict[str, Any]:
        """Four facts; the asked one at a stratified depth, the others anywhere."""
        depth = DEPTHS[index % len(DEPTHS)]
        names, values = set(), set()
        facts = [(label(rng, names), number(rng, values)) for _ in range(4)]
        inserts = [(depth, fact(*facts[0]))] + [(rng.random(), fact(*f)) for f in facts[1:]]
        question = (f"Question: what is the dispatch number of the {facts[0][0]} shipment? "
                    "Reply with the number alone.")
        prompt = self.filled(rng, length, question, inserts)
        return item("needle_multikey", length, prompt, [facts[0][1]], "one_of",
                    candidates=[v for _, v in facts], depth=depth)

    def needle_multivalue(self, rng: random.Random, length: int, index: int) -> dict[str, Any]:
        """One label with three numbers, two decoy labels with one each."""
        names, values = set(), set()
        target = label(rng, names)
        gold = [number(rng, values) for _ in range(3)]
        decoys = [(label(rng, names), number(rng, values)) for _ in range(2)]
        inserts = [(rng.random(), fact(target, v)) for v in gold] + [(rng.random(), fact(*d)) for d in decoys]
        question = (f"Question: the {target} shipment appears in several logbook entries. List every dispatch "
                    "number it carries, separated by commas.")
        prompt = self.filled(rng, length, question, inserts)
        return item("needle_multivalue", length, prompt, gold, "set", candidates=gold + [v for _, v in decoys])

    def variable_tracking(self, rng: random.Random, length: int, index: int) -> dict[str, Any]:
        """A chain of five registers holding one value, and a decoy chain of three holding another."""
        names, values = set(), set()
        chains = []
        for size in (5, 3):
            regs = [register(rng, names) for _ in range(size)]
            value = number(rng, values, digits=5)
            lines = [f"Set register {regs[0]} to {value}."]
            lines += [f"Copy register {a} into register {b}." for a, b in zip(regs, regs[1:], strict=False)]
            chains.append((regs, value, lines))
        inserts = []
        for _regs, _value, lines in chains:  # each chain in order, at increasing depths
            depths = sorted(rng.random() for _ in lines)
            inserts += list(zip(depths, lines, strict=False))
        regs, value, _ = chains[0]
        question = (f"Question: following the Set and Copy instructions in the text, which registers end up "
                    f"holding the value {value}? List all of their names, separated by commas.")
        prompt = self.filled(rng, length, question, inserts)
        return item("variable_tracking", length, prompt, regs, "set", candidates=regs + chains[1][0])

    def word_frequency(self, rng: random.Random, length: int, index: int) -> dict[str, Any]:
        """A numbered word list whose three most frequent words stand far above the rest."""
        question = ("Question: which three words occur most often in the numbered list above? "
                    "Reply with the three words, separated by commas.")
        budget = length - sum(self.count([INTRO, question])) - 24
        entries = max(30, budget // 6)
        for _ in range(2):  # estimate the entries, then correct by the measured tokens per entry
            common = max(5, entries // 20)
            rare = max(1, common // 10, -(-(entries - 3 * common) // max(1, len(self.words) - 4)))
            chosen = rng.sample(self.words, 3 + (entries - 3 * common) // rare + 1)
            top, rest = chosen[:3], chosen[3:]
            bag = [w for w in top for _ in range(common)]
            bag += [w for w in rest for _ in range(rare)][: max(0, entries - len(bag))]
            rng.shuffle(bag)
            listing = "\n".join(f"{i + 1}. {w}" for i, w in enumerate(bag))
            entries = max(30, entries * budget // max(1, self.count([listing])[0]))
        prompt = INTRO + listing + "\n\n" + question
        return item("word_frequency", length, prompt, top, "set", candidates=sorted(set(bag)))

    def passage_qa(self, rng: random.Random, length: int, index: int) -> dict[str, Any]:
        """Three short profiles together at a stratified depth; one attribute of one person asked."""
        depth = DEPTHS[index % len(DEPTHS)]
        people, cities, crafts, years = set(), rng.sample(CITIES, 3), rng.sample(CRAFTS, 3), rng.sample(
            range(1890, 1990), 3)
        names = []
        while len(names) < 3:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            if name not in people:
                people.add(name)
                names.append(name)
        profiles = [f"{n} opened a workshop for {c} in {t} in the year {y}, and ran it for the rest of a long life."
                    for n, t, c, y in zip(names, cities, crafts, years, strict=False)]
        asked = rng.randrange(3)
        kind = rng.choice(("city", "craft", "year"))
        question, answers, candidates = {
            "city": (f"Question: in which city did {names[asked]} open a workshop? Reply with the city alone.",
                     [cities[asked]], cities),
            "craft": (f"Question: what craft was {names[asked]}'s workshop for? Reply with the craft alone.",
                      [crafts[asked]], crafts),
            "year": (f"Question: in which year did {names[asked]} open a workshop? Reply with the year alone.",
                     [str(years[asked])], [str(y) for y in years]),
        }[kind]
        prompt = self.filled(rng, length, question, [(depth, " ".join(profiles))])
        return item("passage_qa", length, prompt, answers, "one_of", candidates=candidates, depth=depth,
                    asked=kind)

    def build(self, task: str, length: int, count: int, seed: int) -> list[dict[str, Any]]:
        """`count` items of `task` at `length` tokens, reproducible from `seed`."""
        rng = random.Random(f"{seed}:{task}:{length}")
        make = getattr(self, task)
        items = [make(rng, length, i) for i in range(count)]
        for i, it in enumerate(items):
            it["id"] = f"{task}-{length}-{i}"
        return items


def short_instructions(count: int, seed: int) -> list[dict[str, Any]]:
    """Short everyday prompts with one right answer each, in five kinds, about `count` in all."""
    rng = random.Random(f"{seed}:instructions")
    items = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            a, b = rng.randrange(2, 50), rng.randrange(2, 50)
            prompt, gold, task = f"What is {a} plus {b}? Answer with the number only.", str(a + b), "add"
        elif kind == 1:
            a, b = rng.sample(range(10, 100), 2)
            prompt, gold, task = (f"Which number is larger, {a} or {b}? Answer with that number only.",
                                  str(max(a, b)), "compare")
        elif kind == 2:
            country, capital = rng.choice(CAPITALS)
            prompt, gold, task = f"What is the capital city of {country}?", capital, "capital"
        elif kind == 3:
            words = rng.sample(NOUNS, 5)
            k = rng.randrange(5)
            prompt = f"Here is a list: {', '.join(words)}. Which word is in {ORDINALS[k]} place?"
            gold, task = words[k], "list_position"
        else:
            word = rng.choice(ADJECTIVES + NOUNS)
            prompt, gold, task = f"Repeat this word exactly, and nothing else: {word}", word, "repeat"
        items.append({"id": f"instruction-{i}", "task": f"instruction_{task}", "length": 0, "prompt": prompt,
                      "answers": [gold], "scorer": "one_of", "candidates": [gold]})
    return items


def build_suite(builder: ProbeBuilder, lengths: Sequence[int], per_cell: int, seed: int,
                short_length: int = 512, short_per_task: int = 50, instructions: int = 300) -> list[dict[str, Any]]:
    """Every long task at every length, the same tasks at `short_length`, and the short instructions."""
    items = [it for length in lengths for task in LONG_TASKS for it in builder.build(task, length, per_cell, seed)]
    short = [it for task in LONG_TASKS for it in builder.build(task, short_length, short_per_task, seed + 1)]
    for it in short:
        it["id"] = "short-" + it["id"]
    return items + short + short_instructions(instructions, seed)


def vocabulary(texts: Iterable[str], size: int = 4000) -> list[str]:
    """Distinct lower-case words of 4 to 10 letters, in order of first appearance, at most `size`."""
    seen: dict[str, None] = {}
    for text in texts:
        for word in re.findall(r"\b[a-z]{4,10}\b", text):
            seen.setdefault(word)
            if len(seen) >= size:
                return list(seen)
    return list(seen)
