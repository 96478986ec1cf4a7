"""The simulated crowd's HTTP participant: one participant driving the site over HTTP the way
``webapp/crowd/static/crowd/task.js`` does (the only such client; ``bench/locustfile.py`` is Locust's user).

Entry link with the experiment's platform parameters → consent form (CSRF token, hidden fields) → the task
page (its ``data-*`` URLs) → ``device`` → ``state`` → per item: the served PNGs (left, right, ref) decoded,
the observer's answer, one ``judge`` POST with a fresh uuid, re-sent with the same body until the server
answers (5xx, 429, network errors; a 200 replay is an acknowledgement) → ``complete`` → the done page.
What the page fetches by itself (the task page on reload, the state, the images) and ``complete`` are
retried in the same way, as the page retries them (a database restart or a lost worker answers 5xx or
drops the connection for a moment).
Now and then the page is reloaded (task page + state, resuming at the first unanswered item) and an
acknowledged answer is sent again (as the page's retry queue does after a lost response).

No ORM here: the caller's hooks mark the participant (``on_enter``) and supply the reference of a pair-mode
item (``reference``). ``stop`` is checked before each new answer, never inside one: an interrupted
participant leaves only judgments whose POST was answered.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

import numpy as np
import requests
from PIL import Image

from learning.errors import LearningError
from learning.observers import Observer, ObserverDistance
from webapp.crowd import platforms

USER_AGENT = "perceptual-lab simulate_crowd (simulated participant)"
DEVICE = {"viewport": [1920, 1080], "dpr": 1, "screen": [1920, 1080]}


class SimulationError(Exception):
    """A refusal or an abort of the whole simulation, said in one line; nothing was judged unless the
    message says so."""


class SimulationAbort(Exception):
    """Something every participant would hit (the study closed, a metric cannot read the images)."""


@dataclass
class Behaviour:
    """How the simulated page behaves besides answering."""

    reload_rate: float = 0.05  # per answer: reload the page (task page + state) afterwards
    resend_rate: float = 0.02  # per answer: send the acknowledged body again (a lost response)
    pace: bool = False  # wait each response time for real
    max_attempts: int = 8  # per POST before the participant gives up
    timeout_s: float = 30.0


@dataclass
class RunStats:
    """Counters shared by the participant threads (``lock`` guards them)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    entered: int = 0
    completed: int = 0
    no_trials: int = 0
    acknowledged: set[str] = field(default_factory=set)  # uuids the server said it stores
    created: int = 0
    replays: int = 0
    rejected: int = 0
    retries: int = 0
    reloads: int = 0
    rate_limited: int = 0
    failures: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


class _FormParser(HTMLParser):
    """Collects ``<input>`` fields of the consent form and the ``data-*`` attributes of ``#app``."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: dict[str, str] = {}
        self.app: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("type") in ("hidden", None) and a.get("name"):
            self.inputs[a["name"]] = a.get("value", "")
        if a.get("id") == "app":
            self.app = {k[5:]: v for k, v in a.items() if k.startswith("data-")}


def _parse(html: str) -> _FormParser:
    p = _FormParser()
    p.feed(html)
    return p


def decode_png(data: bytes) -> np.ndarray:
    """The served bytes as H×W×3 uint8 pixels (any padding after the image data is ignored by Pillow)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


class SimulatedParticipant:
    """Runs one participant from the entry link to the done page (``run``)."""

    def __init__(self, base_url: str, slug: str, platform: str, index: int, run_id: str, observer: Observer,
                 distances: ObserverDistance, stats: RunStats, stop: threading.Event,
                 on_enter: Callable[[str], None],
                 reference: Callable[[str, int], np.ndarray] | None = None,
                 behaviour: Behaviour | None = None) -> None:
        self.base, self.slug, self.platform, self.index, self.run_id = base_url.rstrip("/"), slug, platform, \
            index, run_id
        self.observer, self.distances, self.stats, self.stop = observer, distances, stats, stop
        self.on_enter, self.reference = on_enter, reference
        self.b = behaviour or Behaviour()
        self.http = requests.Session()
        self.http.headers["User-Agent"] = USER_AGENT
        if urlsplit(self.base).hostname in ("127.0.0.1", "localhost", "::1"):
            self.http.trust_env = False  # no proxy look-ups in the environment on every request
        self.token = ""
        self.urls: dict[str, str] = {}
        self.on_scored: Callable[[], None] | None = None  # called once the first item is scored

    # ----- HTTP helpers -----
    def _url(self, path: str) -> str:
        return urljoin(self.base + "/", path.lstrip("/")) if not path.startswith("http") else path

    def _get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self._url(path), timeout=self.b.timeout_s, **kw)

    def _attempts(self) -> Iterator[int]:
        """``max_attempts`` attempt numbers; before each retry, count it and back off (0.2 s, doubling, at
        most 5 s)."""
        backoff = 0.2
        for attempt in range(self.b.max_attempts):
            if attempt:
                self.stats.add(retries=1)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            yield attempt

    def _get_retried(self, path: str) -> requests.Response:
        """GET sent again after a network error, 429 or a 5xx with the judge POST's backoff; the last
        response, or the last network error raised, after ``max_attempts``."""
        last = None
        for _ in self._attempts():
            try:
                last = self._get(path)
            except requests.RequestException as exc:
                last = exc
                continue
            if last.status_code < 500 and last.status_code != 429:
                break
        if isinstance(last, Exception):
            raise last
        return last

    def _post_json(self, path: str, body: dict) -> requests.Response:
        return self.http.post(self._url(path), json=body, timeout=self.b.timeout_s,
                              headers={"X-Assignment-Token": self.token})

    def _rng(self) -> np.random.Generator:
        return self.observer.rng

    # ----- the page -----
    def run(self) -> None:
        try:
            if self._enter():
                self._judge_all()
        except SimulationAbort:
            raise
        except requests.RequestException as exc:
            self._fail(f"network error: {type(exc).__name__}")
        finally:
            self.http.close()

    def _fail(self, why: str) -> None:
        with self.stats.lock:
            self.stats.failures.append(f"participant {self.index}: {why}")

    def _enter(self) -> bool:
        """Consent through the entry link; True with ``self.token`` set, False if no assignment."""
        params = platforms.get(self.platform).simulated_link(self.run_id, self.index)
        link = f"/p/{self.slug}/" + (f"?{urlencode(params)}" if params else "")
        for _ in range(self.b.max_attempts * 4):
            r = self._get(link)
            if r.status_code != 429:
                break
            self.stats.add(rate_limited=1)
            time.sleep(float(r.headers.get("Retry-After", 0) or 0) or 5.0)
        if r.status_code == 403:
            raise SimulationAbort(f"the site refused the entry link ({r.status_code}): the study is not live")
        if r.status_code != 200:
            self._fail(f"entry link answered {r.status_code}")
            return False
        form = _parse(r.text).inputs
        if not form:  # every consent form carries hidden fields (CSRF token, signed entry, link parameters)
            self._fail("the entry page has no consent form")
            return False
        data = {**form, "consent": "yes"}
        if "viewing" in form:  # a study with viewing conditions: what entry.js measures, a desktop browser
            data["viewing"] = json.dumps({**DEVICE, "mobile": False, "fullscreen": True})
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(r.url))
        headers = {"Referer": r.url, "Origin": origin}  # as a browser's form POST sends them
        for _ in range(self.b.max_attempts * 4):
            r = self.http.post(r.url, data=data, headers=headers, timeout=self.b.timeout_s)
            if r.status_code != 429:
                break
            self.stats.add(rate_limited=1)
            time.sleep(5.0)
        if r.status_code == 410:
            self.stats.add(no_trials=1)
            return False
        parts = urlsplit(r.url).path.rstrip("/").split("/")
        if r.status_code != 200 or len(parts) < 2 or parts[-2] != "a":
            self._fail(f"consent answered {r.status_code} at {urlsplit(r.url).path}")
            return False
        self.token = parts[-1]
        self.on_enter(self.token)  # marked simulated before anything is judged
        with self.stats.lock:
            self.stats.entered += 1
            self.stats.tokens.append(self.token)
        self.urls = _parse(r.text).app
        try:
            self._post_json(self.urls["device"], DEVICE)
        except requests.RequestException:
            pass  # the page ignores the answer, and a failure; so do we
        return True

    def _reload(self) -> list[dict]:
        """What the page does on load: the task page, then the state (answered items are skipped)."""
        page = self._get_retried(f"/a/{self.token}/")
        if page.status_code == 200:
            self.urls = _parse(page.text).app or self.urls
        r = self._get_retried(self.urls.get("state", f"/a/{self.token}/state"))
        r.raise_for_status()
        return r.json()["items"]

    def _judge_all(self) -> None:
        items = self._reload()
        while True:
            todo = [it for it in items if not it["answered"]]
            if not todo:
                self._complete()
                return
            for it in todo:
                if self.stop.is_set():
                    return
                if not self._answer(it):
                    return
                it["answered"] = True
                if self._rng().random() < self.b.reload_rate:
                    self.stats.add(reloads=1)
                    items = self._reload()
                    break

    def _pixels(self, it: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = []
        for key in ("left", "right", "ref"):
            if not it.get(key):
                got.append(None)
                continue
            r = self._get_retried(it[key])
            r.raise_for_status()
            try:
                got.append(decode_png(r.content))
            except Exception as exc:
                raise SimulationAbort(f"cannot decode the served {key} image: {type(exc).__name__}") from None
        left, right, ref = got
        if ref is None:
            if self.reference is None:
                raise SimulationAbort("pair mode needs the trial's reference image")
            ref = self.reference(self.token, it["position"])
        return left, right, ref

    def _answer(self, it: dict) -> bool:
        """Judge one item; False when the participant has to stop (assignment closed, POST failed)."""
        left, right, ref = self._pixels(it)
        try:
            d_left, d_right = self.distances.distance(ref, left), self.distances.distance(ref, right)
        except LearningError as exc:
            raise SimulationAbort(str(exc)) from None
        if self.on_scored is not None:
            self.on_scored()
            self.on_scored = None
        choice, ms = self.observer.answer(d_left, d_right)
        if self.b.pace:
            time.sleep(ms / 1000)
        body = {"uuid": str(uuid.uuid4()), "position": it["position"],
                "choice": "right" if choice else "left", "response_ms": ms,
                "client_time": datetime.now(UTC).isoformat(timespec="milliseconds")}
        ok = self._send(body)
        if ok and self._rng().random() < self.b.resend_rate:
            ok = self._send(body)
        return ok

    def _send(self, body: dict) -> bool:
        """POST one judgment, re-sending the same body until acknowledged (or definitely refused)."""
        for _ in self._attempts():
            try:
                r = self._post_json(self.urls["judge"], body)
            except requests.RequestException:
                continue
            if r.status_code in (200, 201):
                stored = r.json().get("judgment", {}).get("uuid", body["uuid"])
                with self.stats.lock:
                    self.stats.acknowledged.add(stored)
                    if r.status_code == 201:
                        self.stats.created += 1
                    else:
                        self.stats.replays += 1
                return True
            if r.status_code in (400, 409):
                self.stats.add(rejected=1)
                self._fail(f"judgment refused ({r.status_code}): {r.text[:120]}")
                return True  # the page drops it and goes on
            if r.status_code in (403, 404):
                self._fail(f"assignment closed ({r.status_code})")
                return False
        self._fail(f"judgment not acknowledged after {self.b.max_attempts} attempts")
        return False

    def _complete(self) -> None:
        for _ in range(self.b.max_attempts):
            try:
                r = self.http.post(self._url(self.urls["complete"]), timeout=self.b.timeout_s,
                                   headers={"X-Assignment-Token": self.token})
            except requests.RequestException:  # as a 5xx: try again
                time.sleep(1.0)
                continue
            if r.ok:
                self._get_retried(r.json()["done_url"])
                self.stats.add(completed=1)
                return
            if r.status_code == 409:  # items still unjudged: the page starts again
                self._judge_all()
                return
            if r.status_code in (403, 404):
                self._fail(f"complete answered {r.status_code}")
                return
            time.sleep(1.0)
        self._fail("could not complete the assignment")
