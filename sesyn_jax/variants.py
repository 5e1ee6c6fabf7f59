"""Loss variants for ablations, named in one place.

A name is a base from ``BASES`` with optional suffixes that change the similarity of every term:
``_cos`` (cosine), ``_l2`` (squared L2, the default), ``_t<temperature>``, ``_dim`` (divide by
the embedding size). Examples: ``iden``, ``iden+devi``, ``iden+devi+intv``, ``tcc_cls``,
``tcc_reg_var``, ``iden+devi+intv_cos_t0.1``.
"""

from __future__ import annotations

import re

# TCC's similarity: squared L2 divided by the embedding size and by a temperature of 0.1.
TCC_SIM = {"similarity": "l2", "temperature": 0.1, "scale_by_dim": True}

# base name -> (term weights with mu1 / mu2 as the strings 'mu1' / 'mu2', term options)
BASES = {
    "iden": ({"identity": 1.0}, {}),
    "iden+devi": ({"identity": 1.0, "deviation": "mu1"}, {}),
    "iden+devi+intv": ({"identity": 1.0, "deviation": "mu1", "interval": "mu2"}, {}),
    "tcc_cls": ({"identity": 1.0}, {"identity": TCC_SIM}),
    "tcc_reg": ({"tcc_reg": 1.0}, {"tcc_reg": TCC_SIM}),
    "tcc_reg_var": ({"tcc_reg": 1.0}, {"tcc_reg": dict(TCC_SIM, variance=True)}),
    "tcc_reg_huber": ({"tcc_reg": 1.0}, {"tcc_reg": dict(TCC_SIM, huber_delta=1.0)}),
}
_SUFFIX = re.compile(r"_(cos|l2|dim|t[0-9.]+(?:e-?[0-9]+)?)$")


def resolve(name: str, mu1: float = 0.5, mu2: float = 0.035) -> tuple[dict, dict]:
    """Variant name -> (loss weights, loss options) for ``losses.make_loss_fn`` / a config."""
    base, suffixes = name, []
    while base not in BASES:
        m = _SUFFIX.search(base)
        if m is None:
            raise ValueError(
                f"unknown loss variant {name!r}; bases: {sorted(BASES)}, suffixes: "
                f"_cos, _l2, _dim, _t<temperature>"
            )
        suffixes.insert(0, m.group(1))
        base = base[: m.start()]
    weights, options = BASES[base]
    weights = {k: {"mu1": mu1, "mu2": mu2}.get(v, v) for k, v in weights.items()}
    options = {k: dict(v) for k, v in options.items()}
    sim = {}
    for sfx in suffixes:
        if sfx == "cos":
            sim["similarity"] = "cosine"
        elif sfx == "l2":
            sim["similarity"] = "l2"
        elif sfx == "dim":
            sim["scale_by_dim"] = True
        else:
            sim["temperature"] = float(sfx[1:])
    for term in weights:
        options.setdefault(term, {}).update(sim)
    return dict(weights), {k: v for k, v in options.items() if v}
