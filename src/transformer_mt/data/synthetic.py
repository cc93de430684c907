"""A deterministic synthetic parallel corpus: two made-up languages, one rule-based translation.

For tests, smoke runs and demos that must not depend on a downloaded corpus. The source
language is subject-verb-object with adjectives before nouns (like English); the target is
subject-object-verb with adjectives after nouns and a plural suffix (so a model must reorder,
not copy word by word). Sentences are 3-16 words, like image captions. The lexicons have a few
dozen words each, so a tiny model learns the mapping to a measurable BLEU in seconds.

    >>> pairs = synthetic_pairs(3, seed=0)
    >>> len(pairs)
    3
"""

from __future__ import annotations

import random

# source word -> target word; nouns take the plural suffix in the target
NOUNS = {
    "dog": "hund", "cat": "mika", "man": "toru", "woman": "sela", "child": "kiri",
    "ball": "pola", "house": "domu", "tree": "arbo", "car": "veko", "bird": "avi",
    "river": "fluo", "street": "vojo", "horse": "ceva", "boat": "sipo", "hat": "capo",
}  # fmt: skip
ADJECTIVES = {
    "red": "ruza", "big": "granu", "small": "eta", "old": "mala", "young": "juna",
    "white": "blanu", "black": "nigra", "happy": "gaja",
}  # fmt: skip
VERBS = {
    "sees": "vidas", "holds": "tenas", "follows": "sekvas", "finds": "trovas",
    "likes": "sxatas", "carries": "portas", "watches": "rigardas",
}  # fmt: skip
PREPOSITIONS = {"near": "apud", "under": "sub", "behind": "malantau", "on": "sur"}
DETERMINERS = {"the": "la", "a": "un"}
PLURAL_SUFFIX = "oj"


def _noun_phrase(rng: random.Random) -> tuple[list[str], list[str]]:
    """(source words, target words): det adj* noun -> det noun(+oj) adj*."""
    det = rng.choice(sorted(DETERMINERS))
    adjectives = rng.sample(sorted(ADJECTIVES), rng.choice((0, 0, 1, 1, 2)))
    noun = rng.choice(sorted(NOUNS))
    plural = det == "the" and rng.random() < 0.3
    src = [det, *adjectives, noun + ("s" if plural else "")]
    tgt = [DETERMINERS[det], NOUNS[noun] + (PLURAL_SUFFIX if plural else "")]
    tgt += [ADJECTIVES[a] for a in adjectives]
    return src, tgt


def synthetic_pair(rng: random.Random) -> tuple[str, str]:
    """One sentence pair: subject verb object [preposition noun-phrase]."""
    subj_src, subj_tgt = _noun_phrase(rng)
    verb = rng.choice(sorted(VERBS))
    obj_src, obj_tgt = _noun_phrase(rng)
    src = [*subj_src, verb, *obj_src]
    tgt = [*subj_tgt, *obj_tgt]
    if rng.random() < 0.5:
        prep = rng.choice(sorted(PREPOSITIONS))
        pp_src, pp_tgt = _noun_phrase(rng)
        src += [prep, *pp_src]
        tgt += [PREPOSITIONS[prep], *pp_tgt]
    tgt.append(VERBS[verb])  # the verb goes last (subject-object-verb)
    return " ".join(src).capitalize() + ".", " ".join(tgt).capitalize() + "."


def synthetic_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` pairs, the same for the same seed."""
    rng = random.Random(seed)
    return [synthetic_pair(rng) for _ in range(n)]
