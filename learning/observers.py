"""Simulated 2AFC observers: a metric's distances → a Thurstonian choice, lapses, response times.

``observer_metric(spec)`` is any entry of the metric registry (``psnr``, ``ms-ssim``, ``lpips-alex``,
``ciede2000``, ``dpl:FILE`` ...) or ``observer:FILE``, a DPL weight file acting as the observer (as
``dpl:FILE``; a ``@BACKBONE`` suffix names the backbone). ``parse_observer(spec)`` also takes a weighted
sum of them, ``0.5*lpips-vgg+0.3*ciede2000+0.2*ms-ssim``: each term's distance is divided by its spread over
the study's trials (``ObserverDistance.calibrate``) before the weights apply, so a weight says how much the
term counts whatever its units. ``Observer`` turns the distances of two images to a reference into an
answer:

* P(choose p1) = Φ((d0 − d1) / (τ·s)), d the metric's distance (smaller = closer; similarity metrics are
  negated) and s its spread (std of d0 − d1 over the study's trials, ``spread``); τ = 0 is a noiseless
  observer (ties 50/50);
* with probability ``lapse`` the answer is a *fast guess* (Yellott's fast-guess model): a coin flip with a
  response time drawn around ``lapse_rt_median_ms``;
* otherwise the response time is lognormal around ``rt_median_ms`` (log-sd ``rt_sigma``).

No Django here: the web side (``simulate_crowd``) feeds served pixels in and posts the answers.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from learning.errors import LearningError
from learning.metrics.registry import Metric, get_metric

OBSERVER_PREFIX = "observer:"


def observer_metric(spec: str, device: torch.device | None = None) -> Metric:
    """The metric behind an observer ``spec``, its network on ``device`` (None: the CPU); LearningError
    (one line) for an unknown or broken spec."""
    spec = spec.strip()
    if spec.startswith(OBSERVER_PREFIX):
        path = spec[len(OBSERVER_PREFIX):]
        if not path:
            raise LearningError("observer:FILE needs a DPL weight file")
        return get_metric(f"dpl:{path}", device)
    return get_metric(spec, device)


def parse_observer(spec: str, device: torch.device | None = None) -> ObserverDistance:
    """The observer's distance for ``spec``: one metric, or ``W*METRIC+W*METRIC+...`` (weights positive
    numbers, a bare term weighs 1), deep metrics on ``device`` (None: the CPU). LearningError (one line)
    for an empty spec or term, a bad weight or an unknown metric. A term's name may not itself contain
    ``+`` or ``*``."""
    text = spec.strip()
    if not text:
        raise LearningError("the observer is empty: name a metric (psnr) or a weighted sum "
                            "(0.5*lpips-alex+0.5*ciede2000)")
    if "+" not in text and "*" not in text:
        return ObserverDistance(text, [(1.0, observer_metric(text, device))])
    terms = []
    for part in text.split("+"):
        part = part.strip()
        if not part:
            raise LearningError(f"observer {text!r}: an empty term (a '+' with nothing beside it)")
        weight, star, name = part.partition("*")
        if not star:
            weight, name = "1", part
        try:
            w = float(weight)
        except ValueError:
            raise LearningError(f"observer {text!r}: weight {weight.strip()!r} of {part!r} is not a number") \
                from None
        if not (math.isfinite(w) and w > 0):
            raise LearningError(f"observer {text!r}: weight {weight.strip()!r} of {part!r} must be a "
                                "positive number")
        if not name.strip():
            raise LearningError(f"observer {text!r}: term {part!r} names no metric")
        terms.append((w, observer_metric(name.strip(), device)))
    return ObserverDistance(text, terms)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 (or H×W gray) pixels → 1×3×H×W float in [0, 1]."""
    a = np.asarray(pixels)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise LearningError(f"expected H×W×3 pixels, got shape {a.shape}")
    t = torch.from_numpy(np.array(a[:, :, :3], dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    return t.unsqueeze(0)


class DistanceCache:
    """``metric.distance(ref, img)`` memoised on the pixels' content (same pixels, same distance)."""

    def __init__(self, metric: Metric):
        self.metric = metric
        self._d: dict[tuple[str, str], float] = {}

    @staticmethod
    def key(pixels: np.ndarray) -> str:
        a = np.ascontiguousarray(pixels)
        return hashlib.blake2b(a.tobytes() + str(a.shape).encode(), digest_size=16).hexdigest()

    def distance(self, ref: np.ndarray, img: np.ndarray) -> float:
        """The metric's distance (smaller = closer) of ``img`` to ``ref``; LearningError if unreadable."""
        k = (self.key(ref), self.key(img))
        if k not in self._d:
            if np.shape(ref) != np.shape(img):
                raise LearningError(f"{self.metric.name}: image {np.shape(img)} differs in size from its "
                                    f"reference {np.shape(ref)}")
            try:
                with torch.inference_mode():
                    d = float(self.metric.distance(to_tensor(ref), to_tensor(img))[0])
            except LearningError:
                raise
            except Exception as exc:  # e.g. ms-ssim on images smaller than its five scales need
                raise LearningError(f"{self.metric.name} cannot score {np.shape(img)[1]}×{np.shape(img)[0]} "
                                    f"images: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                                    ) from None
            self._d[k] = d
        return self._d[k]


class ObserverDistance:
    """What a simulated observer judges by: the weighted sum of its terms' distances, each divided by its
    scale (1 until ``calibrate`` sets it to the term's spread over the study's trials). One term of weight 1
    is that metric's distance itself. Every term's distances are memoised (``DistanceCache``)."""

    def __init__(self, name: str, terms: list[tuple[float, Metric]]):
        self.name = name
        self.weights = [w for w, _ in terms]
        self.caches = [DistanceCache(m) for _, m in terms]
        self.scales = [1.0] * len(terms)

    def term_distances(self, ref: np.ndarray, img: np.ndarray) -> list[float]:
        """Each term's own distance of ``img`` to ``ref`` (LearningError if a term cannot score them)."""
        return [c.distance(ref, img) for c in self.caches]

    def combine(self, distances: list[float]) -> float:
        """The observer's distance from the terms' own distances."""
        if len(distances) == 1 and self.weights[0] == 1.0 and self.scales[0] == 1.0:
            return distances[0]
        return float(sum(w * d / s for w, d, s in zip(self.weights, distances, self.scales)))

    def calibrate(self, differences: list[list[float]]) -> None:
        """Scale each term by its spread: ``differences[i]`` holds term i's d0 − d1 over the study's trials.
        A single metric keeps its own units."""
        if len(self.caches) > 1:
            self.scales = [spread(d) for d in differences]

    def distance(self, ref: np.ndarray, img: np.ndarray) -> float:
        return self.combine(self.term_distances(ref, img))


def spread(differences: list[float]) -> float:
    """s: the std of d0 − d1 over trials (infinite differences, e.g. an exact copy under PSNR, left out);
    1.0 when fewer than two finite differences exist or they are all equal."""
    finite = np.array([x for x in differences if math.isfinite(x)], dtype=np.float64)
    s = float(finite.std()) if finite.size >= 2 else 0.0
    return s if s > 0 else 1.0


def phi(x: float) -> float:
    """The standard normal CDF (±inf allowed)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@dataclass
class Observer:
    """One simulated participant's answering rule (see the module docstring); ``rng`` makes it
    reproducible. Every answer draws the same random numbers in the same order, whatever the images."""

    noise: float = 0.5  # τ
    scale: float = 1.0  # s
    lapse: float = 0.0
    rt_median_ms: float = 1200.0
    rt_sigma: float = 0.35
    lapse_rt_median_ms: float = 150.0
    lapse_rt_sigma: float = 0.25
    rng: np.random.Generator = field(default_factory=np.random.default_rng)

    def __post_init__(self) -> None:
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise LearningError(f"noise must be a finite number ≥ 0, not {self.noise}")
        if not 0 <= self.lapse <= 1:
            raise LearningError(f"lapse must be a probability in [0, 1], not {self.lapse}")
        if not (self.rt_median_ms > 0 and self.lapse_rt_median_ms > 0):
            raise LearningError("response-time medians must be positive")

    def p_choose_second(self, d0: float, d1: float) -> float:
        """P(choose the second image) for distances d0, d1 to the reference, without lapses."""
        diff = d0 - d1
        if math.isnan(diff) or diff == 0:  # equal, or both infinite the same way
            return 0.5
        if self.noise == 0 or math.isinf(diff):
            return 1.0 if diff > 0 else 0.0
        return phi(diff / (self.noise * self.scale))

    def p_choose_second_with_lapses(self, d0: float, d1: float) -> float:
        return (1 - self.lapse) * self.p_choose_second(d0, d1) + self.lapse * 0.5

    def answer(self, d0: float, d1: float) -> tuple[int, int]:
        """(choice, response_ms): choice 1 = the second image. Draws lapse, choice, RT in that order."""
        u_lapse, u_choice, z = self.rng.random(), self.rng.random(), self.rng.standard_normal()
        if u_lapse < self.lapse:
            choice = int(u_choice < 0.5)
            ms = self.lapse_rt_median_ms * math.exp(self.lapse_rt_sigma * z)
        else:
            choice = int(u_choice < self.p_choose_second(d0, d1))
            ms = self.rt_median_ms * math.exp(self.rt_sigma * z)
        return choice, max(1, int(round(ms)))
