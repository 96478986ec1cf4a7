/* 2AFC judging page: preloads, 1:1 device-pixel display, keyboard/touch, a localStorage retry queue, the
   study's viewing conditions (the trials pause while they are not met; what happened during each trial is
   sent with its judgment), texts through the study language's JavaScript catalog. In a researcher's
   preview (data-preview) nothing is sent: answers stay in the page. */
(function () {
  "use strict";
  // the catalog script defines gettext/interpolate; without it the page still works, in English
  var _ = window.gettext || function (s) { return s; };
  var fmt = window.interpolate || function (s, o) {
    return s.replace(/%\((\w+)\)s/g, function (m, k) { return o[k]; });
  };
  var app = document.getElementById("app");
  var token = app.dataset.token;
  var preview = app.dataset.preview === "1";
  var QKEY = "afc-queue:" + token;
  var st = null, items = [], idx = 0, shownAt = 0, busy = true, backoff = 500, flushing = false;
  var withdrawing = false, hiddenForConfirm = [];
  var cache = {}, current = null;
  var $ = function (id) { return document.getElementById(id); };

  function uuid4() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var b = new Uint8Array(16); crypto.getRandomValues(b);
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function loadQueue() {
    if (preview) { return []; }
    try { return JSON.parse(localStorage.getItem(QKEY) || "[]"); } catch (e) { return []; }
  }
  function saveQueue(q) {
    if (preview) { return; }
    try { localStorage.setItem(QKEY, JSON.stringify(q)); } catch (e) { /* private mode */ }
  }
  var queue = loadQueue();
  // positions the server acknowledged: the state embedded in the page may predate an ack that arrived while
  // the page reloaded (after the answer had left the queue)
  var AKEY = "afc-acked:" + token;
  function loadAcked() {
    if (preview) { return {}; }
    try { return JSON.parse(localStorage.getItem(AKEY) || "{}"); } catch (e) { return {}; }
  }
  function remember(j) {
    var a = loadAcked(); a[j.position] = j.choice;
    try { localStorage.setItem(AKEY, JSON.stringify(a)); } catch (e) { /* private mode */ }
  }

  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin", body: JSON.stringify(body || {}),
      headers: { "Content-Type": "application/json", "X-Assignment-Token": token } });
  }

  function flush() {
    if (preview) { queue = []; return Promise.resolve(); }
    if (withdrawing || flushing || !queue.length) { return Promise.resolve(); }
    flushing = true;
    var j = queue[0];
    return post(app.dataset.judge, j).then(function (r) {
      flushing = false;
      if (r.status === 200 || r.status === 201 || r.status === 400 || r.status === 409) {
        if (r.status < 300) { remember(j); }
        queue.shift(); saveQueue(queue); backoff = 500;
        $("status").textContent = r.status >= 400
          ? fmt(_("One answer was rejected by the server (%(status)s)."), { status: r.status }, true) : "";
        return flush();
      }
      if (r.status === 403 || r.status === 404) {
        $("status").textContent = _("This assignment is no longer open."); queue = []; saveQueue(queue); return;
      }
      throw new Error("HTTP " + r.status);
    }).catch(function () {
      flushing = false;
      $("status").textContent = _("Connection problem: your answers are kept and will be re-sent.");
      setTimeout(flush, backoff); backoff = Math.min(backoff * 2, 30000);
    });
  }

  function preload(i) {
    if (i >= items.length || cache[i]) { return cache[i]; }
    var it = items[i];
    var urls = [it.left, it.right]; if (it.ref) { urls.push(it.ref); }
    cache[i] = Promise.all(urls.map(function (u) {
      return new Promise(function (ok, fail) {
        var im = new Image(); im.onload = function () { ok(im); }; im.onerror = fail; im.src = u;
      });
    }));
    return cache[i];
  }

  function place(el, im) {
    var dpr = window.devicePixelRatio || 1;
    el.src = im.src;
    el.style.width = (im.naturalWidth / dpr) + "px";
    el.style.height = (im.naturalHeight / dpr) + "px";
  }

  function placeAll(imgs) {
    place($("left").querySelector("img"), imgs[0]);
    place($("right").querySelector("img"), imgs[1]);
    if (imgs[2]) { place($("ref"), imgs[2]); }
    checkSize(imgs);
  }

  function checkSize(imgs) {
    var dpr = window.devicePixelRatio || 1;
    var w = (imgs[0].naturalWidth + imgs[1].naturalWidth) / dpr + 80;
    var h = (imgs[0].naturalHeight + (imgs[2] ? imgs[2].naturalHeight : 0)) / dpr + 120;
    $("size-warning").hidden = window.innerWidth >= w && window.innerHeight >= h;
  }

  // ----- viewing conditions during the trials -----
  // Counted per trial and sent with its judgment: the page lost focus (another window or tab), left
  // fullscreen, became smaller than the study's minimum, or changed to a pixel ratio it does not allow
  // (browser zoom). Each counts once per occurrence; while a condition is not met the trial pauses: no answer
  // is taken and the time does not count as response time.
  var cond = null, ev = null, focusLost = false, pauses = {}, pausedAt = 0, windowTimer = null;
  function freshEvents() { return { focus_lost: 0, fullscreen_exits: 0, too_small: 0, ratio_changed: 0 }; }
  function inTrials() { return !$("trial").hidden && idx < items.length; }
  function isPaused() { return !!(pauses.fullscreen || pauses.small || pauses.ratio); }
  function fullscreenElement() { return document.fullscreenElement || document.webkitFullscreenElement || null; }
  function requestFullscreen() {
    var el = document.documentElement;
    var go = el.requestFullscreen || el.webkitRequestFullscreen;
    if (!go) { return Promise.reject(new Error("no fullscreen")); }
    try { return Promise.resolve(go.call(el)); } catch (e) { return Promise.reject(e); }
  }

  function setPause(reason, on) {
    var was = isPaused();
    pauses[reason] = on;
    var now = isPaused();
    if (!was && now) { pausedAt = performance.now(); }
    if (was && !now) {
      if (!busy) { shownAt += performance.now() - Math.max(pausedAt, shownAt); }
      if (current) { placeAll(current); }  // the pixel ratio may have changed meanwhile
    }
    var text = "";
    if (pauses.fullscreen) {
      text = _("This study shows its trials in fullscreen. Press the button to go on.");
    } else if (pauses.small) {
      text = fmt(_("Your window is smaller than this study needs (%(width)s × %(height)s pixels). Please enlarge it to go on."),
        { width: cond.min_viewport[0], height: cond.min_viewport[1] }, true);
    } else if (pauses.ratio) {
      text = _("The page's zoom changed. Please set the browser's zoom back to 100 % to go on.");
    }
    $("paused").hidden = !now;
    $("paused-text").textContent = text;
    $("fullscreen-again").hidden = !pauses.fullscreen;
    $("choices").style.visibility = now ? "hidden" : "";
    $("trial").dataset.paused = now ? "1" : "0";
  }

  function checkWindow() {
    windowTimer = null;
    if (!cond || !inTrials()) { return; }
    // outside the fullscreen the study asks for, the window's size is not what the trials are shown in
    var away = cond.fullscreen && !fullscreenElement();
    if (cond.min_viewport) {
      var small = window.innerWidth < cond.min_viewport[0] || window.innerHeight < cond.min_viewport[1];
      if (small && !pauses.small && !away && ev) { ev.too_small++; }
      setPause("small", small && !away);
    }
    if (cond.pixel_ratios) {
      var dpr = window.devicePixelRatio || 1;
      var ok = cond.pixel_ratios.some(function (r) { return Math.abs(r - dpr) < 0.01; });
      if (!ok && !pauses.ratio && ev) { ev.ratio_changed++; }
      setPause("ratio", !ok);
    }
  }
  // after the resize that entering or leaving fullscreen makes, once the fullscreen state has settled
  function laterCheckWindow() { if (windowTimer) { clearTimeout(windowTimer); } windowTimer = setTimeout(checkWindow, 150); }

  function checkFullscreen(counting) {
    if (!cond || !cond.fullscreen) { return; }
    var out = !fullscreenElement() && inTrials();
    if (out && counting && !pauses.fullscreen && ev) { ev.fullscreen_exits++; }
    setPause("fullscreen", out);
  }

  function startTrials() {
    $("instructions").hidden = true; $("trial").hidden = false;
    ev = freshEvents();
    if (cond && cond.fullscreen && !fullscreenElement()) {
      checkFullscreen(false);
      requestFullscreen().catch(function () { /* the button asks again */ });
    }
    checkWindow();
    show(0);
  }

  function lostFocus() {
    if (!focusLost && inTrials() && ev) { ev.focus_lost++; }
    focusLost = true;
  }
  window.addEventListener("blur", lostFocus);
  window.addEventListener("focus", function () { focusLost = false; });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { lostFocus(); } else { focusLost = false; }
  });
  ["fullscreenchange", "webkitfullscreenchange"].forEach(function (name) {
    document.addEventListener(name, function () { checkFullscreen(true); laterCheckWindow(); });
  });
  window.addEventListener("resize", laterCheckWindow);
  $("fullscreen-again").addEventListener("click", function () {
    requestFullscreen().catch(function () { /* stays paused */ });
  });

  // ----- trials -----
  function nextIndex(from) {
    var i = from;
    while (i < items.length && items[i].answered) { i++; }
    return i;
  }

  function show(i) {
    idx = nextIndex(i);
    $("bar").style.width = (100 * idx / items.length) + "%";
    if (idx >= items.length) { return finish(); }
    busy = true;
    var it = items[idx];
    $("phase").textContent = it.practice ? _("Practice:") : "";
    preload(idx).then(function (imgs) {
      current = imgs;
      placeAll(imgs);
      $("feedback").textContent = "";
      shownAt = performance.now(); busy = false;
      $("trial").dataset.position = it.position; $("trial").dataset.ready = "1";
      preload(idx + 1);
    }).catch(function () {
      $("status").textContent = _("Could not load images; retrying…");
      delete cache[idx]; setTimeout(function () { show(idx); }, 2000);
    });
  }

  function answer(side) {
    if (busy || isPaused() || idx >= items.length) { return; }
    busy = true; $("trial").dataset.ready = "0";
    var it = items[idx];
    var j = { uuid: uuid4(), position: it.position, choice: side,
      response_ms: Math.max(0, Math.round(performance.now() - shownAt)), client_time: new Date().toISOString(),
      events: ev || freshEvents() };
    ev = freshEvents();
    it.answered = side;
    if (!preview) { queue.push(j); saveQueue(queue); flush(); }
    if (it.practice && it.correct) {
      $("feedback").textContent = side === it.correct ? _("Correct!") : _("Not quite: the other image was the right answer.");
      setTimeout(function () { show(idx + 1); }, 900);
    } else {
      show(idx + 1);
    }
  }

  function finish() {
    $("trial").hidden = true; $("finishing").hidden = false;
    setPause("fullscreen", false); setPause("small", false); setPause("ratio", false);
    if (preview) { window.location.href = app.dataset.done; return; }
    var tryComplete = function () {
      if (withdrawing) { return; }
      if (queue.length) { flush(); setTimeout(tryComplete, 500); return; }
      post(app.dataset.complete).then(function (r) { return r.json().then(function (d) { return [r, d]; }); })
        .then(function (rd) {
          if (rd[0].ok) { window.location.href = rd[1].done_url; return; }
          $("finish-status").textContent = _("Could not finish yet; retrying…");
          if (rd[0].status === 409) { return start(); }
          setTimeout(tryComplete, 2000);
        }).catch(function () { setTimeout(tryComplete, 2000); });
    };
    tryComplete();
  }

  document.addEventListener("keydown", function (e) {
    if ($("trial").hidden) { return; }
    if (e.key === "ArrowLeft") { e.preventDefault(); answer("left"); }
    if (e.key === "ArrowRight") { e.preventDefault(); answer("right"); }
  });
  ["left", "right"].forEach(function (side) {
    $(side).addEventListener("click", function (e) { e.preventDefault(); answer(side); });
  });
  window.addEventListener("online", flush);

  function start() {
    // the page carries the state it was rendered with; the state URL gives it afresh
    var embedded = $("state");
    var got = embedded ? Promise.resolve(JSON.parse(embedded.textContent))
      : fetch(app.dataset.state, { credentials: "same-origin" }).then(function (r) { return r.json(); });
    if (embedded) { embedded.remove(); }
    return got
      .then(function (data) {
        st = data; items = data.items; cond = data.viewing || null;
        var pending = loadAcked();
        queue.forEach(function (j) { pending[j.position] = j.choice; });
        items.forEach(function (it) { if (!it.answered && pending[it.position]) { it.answered = pending[it.position]; } });
        flush();
        var resumed = items.some(function (it) { return it.answered; });
        $("finishing").hidden = true;
        if (resumed) { startTrials(); return; }
        $("begin").disabled = false; $("begin").textContent = _("Start");
        preload(0);
      });
  }

  // Withdrawal: a confirm step in the page, then one POST that erases everything stored of the participant
  // in this study; the answers still queued here are dropped, not sent.
  var SECTIONS = ["instructions", "trial", "finishing"];
  $("withdraw").addEventListener("click", function () {
    hiddenForConfirm = SECTIONS.filter(function (id) { return !$(id).hidden; });
    SECTIONS.forEach(function (id) { $(id).hidden = true; });
    $("withdraw").hidden = true; $("withdraw-confirm").hidden = false; $("withdraw-no").focus();
  });
  $("withdraw-no").addEventListener("click", function () {
    $("withdraw-confirm").hidden = true; $("withdraw").hidden = false;
    hiddenForConfirm.forEach(function (id) { $(id).hidden = false; });
    shownAt = performance.now();  // the time spent on the question is not a response time
  });
  $("withdraw-yes").addEventListener("click", function () {
    withdrawing = true;
    $("withdraw-yes").disabled = true; $("withdraw-no").disabled = true;
    $("withdraw-status").textContent = _("Withdrawing…");
    if (preview) {
      var n = items.filter(function (it) { return it.answered; }).length;
      window.location.href = app.dataset.withdrawn + "?n=" + n;
      return;
    }
    var send = function () {
      if (flushing) { setTimeout(send, 100); return; }  // an answer in flight lands first, then is erased too
      post(app.dataset.withdraw, { confirm: true })
        .then(function (r) { return r.json().then(function (d) { return [r, d]; }); })
        .then(function (rd) {
          if (rd[0].ok || rd[0].status === 404) {  // 404: gone already (an earlier try whose answer was lost)
            try { localStorage.removeItem(QKEY); localStorage.removeItem(AKEY); } catch (e) { /* private mode */ }
          }
          if (rd[0].ok) { window.location.href = rd[1].page; return; }
          if (rd[0].status === 404) {
            $("withdraw-status").textContent = _("You have withdrawn: nothing of your participation is stored.");
            return;
          }
          throw new Error("HTTP " + rd[0].status);
        }).catch(function () {
          withdrawing = false;
          $("withdraw-status").textContent = _("Could not withdraw. Please try again.");
          $("withdraw-yes").disabled = false; $("withdraw-no").disabled = false;
        });
    };
    send();
  });

  $("begin").addEventListener("click", startTrials);
  if (!preview) {
    post(app.dataset.device, { viewport: [window.innerWidth, window.innerHeight], dpr: window.devicePixelRatio || 1,
      screen: [screen.width, screen.height] }).catch(function () {});
  }
  start().catch(function () { $("begin").textContent = _("Could not load the study; please reload."); });
})();
